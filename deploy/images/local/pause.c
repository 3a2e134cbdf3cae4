/* The pod sandbox ("pause") image of the local single-node cluster: holds the pod's namespaces,
   reaps nothing, and exits on SIGTERM or SIGINT. Built static by scripts/k8s-images.sh. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
