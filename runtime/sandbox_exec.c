/*
 * sandbox-exec: the last step before bubblewrap, as a tiny exec'd program instead of Python code
 * run in a fork of the supervisor.
 *
 * The supervisor is a ~100 MiB Python process. Running its set-up in a preexec_fn forces
 * fork() (copying its page tables on the event loop) for every sandbox; spawning this helper
 * lets CPython use vfork(), and the helper does the privileged set-up in its own small address
 * space:
 *
 *   sandbox-exec <parent-pid> <uid> <gid> <n-procs> <cgroup.procs>... <n-rlimits> (<resource> <soft> <hard>)...
 *                -- <program> <args>...
 *
 * 1. joins every listed cgroup (writes "0" to each cgroup.procs file),
 * 2. sets the rlimits,
 * 3. drops every group and becomes uid:gid (real, effective and saved), checking the result,
 * 4. sets PR_SET_PDEATHSIG=SIGKILL (after the uid change, which clears it) and exits if the
 *    parent is already gone (it may have died before the prctl),
 * 5. execs the program with the environment it was given (the supervisor passes an empty one).
 *
 * Any failure prints one "sandbox-exec: ..." line on stderr and exits 127 before the exec: the
 * supervisor reports it as a sandbox set-up failure. Built by runtime/sandbox_exec.py.
 *
 * The same binary (statically linked, so it runs in any sandbox, whatever libraries are bound) is
 * also the sandbox's pid 1 (`bwrap --as-pid-1`), the program's parent, which reports the program's
 * real wait status out of band:
 *
 *   sandbox-exec --init <status-fd> -- <program> <args>...
 *
 * It forks and execs the program (execvp, as bubblewrap would), reaps every process that comes
 * back to it, and when the program itself ends writes one line on <status-fd>, then exits with
 * the program's exit code (128 + n for a signal, as bubblewrap's own init does):
 *   {"wait-status": <the raw status from wait(2)>}   the program ran and ended
 *   {"exec-errno": <errno>}                          the program could not be exec'd
 * bubblewrap's `exit-code` cannot tell `exit(137)` from a SIGKILL; this line can. The program
 * cannot forge it: the fd is close-on-exec (the program never holds it), this process is not
 * dumpable (its /proc/1/fd is closed to the program), and the kernel delivers to a namespace's
 * init no signal sent from inside that it has no handler for (so the program cannot kill it).
 * A missing line means the program never started (bubblewrap failed to set up) or the run was
 * killed from outside: the supervisor knows which from its own records.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "sandbox-exec: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "",
            errno ? strerror(errno) : "invalid");
    _exit(127);
}

static long long number(const char *s, const char *what) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        errno = EINVAL;
        die(what, s);
    }
    return v;
}

static void say(int fd, const char *key, int value) {
    char line[64];
    int n = snprintf(line, sizeof line, "{\"%s\": %d}\n", key, value);
    if (n > 0) {
        ssize_t w;
        do {
            w = write(fd, line, (size_t)n);  /* under PIPE_BUF: one atomic write */
        } while (w < 0 && errno == EINTR);
    }
}

static int init_main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        errno = EINVAL;
        die("usage", "--init <status-fd> -- <program> ...");
    }
    int status_fd = (int)number(argv[2], "status fd");
    char **program = &argv[4];
    if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) die("status fd", argv[2]);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) die("prctl", "PR_SET_DUMPABLE");
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) die("pipe2", NULL);
    pid_t child = fork();
    if (child < 0) die("fork", NULL);
    if (child == 0) {
        close(report[0]);
        execvp(program[0], program);
        int err = errno;
        ssize_t w = write(report[1], &err, sizeof err);
        (void)w;
        _exit(127);
    }
    close(report[1]);
    int err = 0;
    ssize_t got;
    do {
        got = read(report[0], &err, sizeof err);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof err) {
        say(status_fd, "exec-errno", err);
        fprintf(stderr, "sandbox-exec: cannot exec %s: %s\n", program[0], strerror(err));
        _exit(127);
    }
    for (;;) {
        int status = 0;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            _exit(127);  /* ECHILD before the program was reaped: impossible, and reported by the missing line */
        }
        if (pid != child) continue;  /* an orphan of the program's: reaped */
        say(status_fd, "wait-status", status);
        /* Leaving ends the namespace: the kernel kills whatever the program left behind. */
        if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
        _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255);
    }
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--init") == 0) return init_main(argc, argv);
    int i = 1;
    if (argc < 7) {
        errno = EINVAL;
        die("usage", "<parent-pid> <uid> <gid> <n-procs> ... <n-rlimits> ... -- <program> ...");
    }
    pid_t parent = (pid_t)number(argv[i++], "parent pid");
    uid_t uid = (uid_t)number(argv[i++], "uid");
    gid_t gid = (gid_t)number(argv[i++], "gid");
    if (uid == 0 || gid == 0) {
        errno = EPERM;
        die("refusing to run the sandbox as", "root");
    }

    long long n_procs = number(argv[i++], "cgroup count");
    if (n_procs > 16 || i + n_procs >= argc) {
        errno = EINVAL;
        die("cgroup count", argv[i - 1]);
    }
    for (long long k = 0; k < n_procs; k++, i++) {
        int fd = open(argv[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) die("cannot open", argv[i]);
        if (write(fd, "0", 1) != 1) die("cannot join cgroup", argv[i]);
        close(fd);
    }

    long long n_rlimits = number(argv[i++], "rlimit count");
    if (n_rlimits > 16 || i + 3 * n_rlimits >= argc) {
        errno = EINVAL;
        die("rlimit count", argv[i - 1]);
    }
    for (long long k = 0; k < n_rlimits; k++) {
        int resource = (int)number(argv[i++], "rlimit resource");
        struct rlimit rl;
        rl.rlim_cur = (rlim_t)number(argv[i++], "rlimit soft");
        rl.rlim_max = (rlim_t)number(argv[i++], "rlimit hard");
        if (setrlimit(resource, &rl) != 0) die("setrlimit", argv[i - 3]);
    }

    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
        errno = EINVAL;
        die("expected", "-- <program>");
    }
    i++;

    if (setgroups(0, NULL) != 0) die("setgroups", NULL);
    if (setresgid(gid, gid, gid) != 0) die("setresgid", NULL);
    if (setresuid(uid, uid, uid) != 0) die("setresuid", NULL);
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != uid || eu != uid || su != uid ||
        rg != gid || eg != gid || sg != gid || getgroups(0, NULL) != 0) {
        errno = EPERM;
        die("privilege drop", "failed");
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("prctl", "PR_SET_PDEATHSIG");
    if (getppid() != parent) {
        errno = ESRCH;
        die("supervisor gone before the exec", NULL);
    }

    execve(argv[i], &argv[i], environ);
    die("cannot exec", argv[i]);
    return 127;
}
