/*
 * aevatar-runner: the first process of every sandbox container on the Kubernetes backend.
 *
 * The pod log API gives one stream per container and, without an alpha feature gate, mixes the
 * program's stdout with its stderr; the pod status gives an exit code that container runtimes
 * write as 128+N for a signal, and nothing about usage. So the runner starts the program itself,
 * keeps its two streams apart, reads its usage from the container's own cgroup, and reports all
 * of it on the container log (its own stdout), which the program cannot reach:
 *
 *   aevatar-runner 1                first line: the protocol (runtime/kube_frames.py reads it)
 *   o <base64>                      a chunk of the program's stdout
 *   e <base64>                      a chunk of the program's stderr
 *   x {"exit_code":..,...}          the end: exit_code or signal (from waitid, never a guess),
 *                                   limit (wall_time, output, memory), cpu_time_ms,
 *                                   memory_peak_kib, run_ms, oom_kills, error (setup failures)
 *
 * Usage: aevatar-runner [--output-bytes N] [--wall-time-ms N] -- PROGRAM [ARG...]
 * Exit: the program's exit code, or 128 + its signal.
 *
 * Containment: the runner is PID 1 of the container's pid namespace, so the program (same uid)
 * cannot kill or stop it: the kernel drops signals to a namespace's init that it has no handler
 * for, and it installs none. It marks itself non-dumpable, so the program cannot open
 * /proc/1/fd/1 (the log) or ptrace it. The program gets pipes as stdout and stderr and no other
 * descriptor. Built static (gcc -static) so it runs in any image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_RAW 3072 /* 4096 base64 characters per line, well under the CRI's 16 KiB line split */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(125); /* the log is gone: nothing can be reported any more */
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void emit_chunk(char tag, const unsigned char *data, size_t len) {
    static char line[3 + (CHUNK_RAW / 3 + 1) * 4 + 2];
    while (len > 0) {
        size_t take = len < CHUNK_RAW ? len : CHUNK_RAW;
        size_t o = 0;
        line[o++] = tag;
        line[o++] = ' ';
        for (size_t i = 0; i < take; i += 3) {
            uint32_t v = (uint32_t)data[i] << 16;
            if (i + 1 < take) v |= (uint32_t)data[i + 1] << 8;
            if (i + 2 < take) v |= data[i + 2];
            line[o++] = B64[(v >> 18) & 63];
            line[o++] = B64[(v >> 12) & 63];
            line[o++] = i + 1 < take ? B64[(v >> 6) & 63] : '=';
            line[o++] = i + 2 < take ? B64[v & 63] : '=';
        }
        line[o++] = '\n';
        write_all(STDOUT_FILENO, line, o);
        data += take;
        len -= take;
    }
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first number after `key` in a small file (key "" for a file that holds one number). */
static int64_t read_stat(const char *path, const char *key) {
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = buf;
    if (*key) {
        size_t klen = strlen(key);
        for (;;) {
            if (strncmp(p, key, klen) == 0 && (p[klen] == ' ' || p[klen] == '\t')) {
                p += klen;
                break;
            }
            p = strchr(p, '\n');
            if (p == NULL) return -1;
            p++;
        }
    }
    while (*p == ' ' || *p == '\t') p++;
    if (*p < '0' || *p > '9') return -1;
    return strtoll(p, NULL, 10);
}

static int64_t first_stat(const char *const *paths, const char *key) {
    for (; *paths; paths++) {
        int64_t v = read_stat(*paths, key);
        if (v >= 0) return v;
    }
    return -1;
}

static void die_setup(const char *fmt, ...) {
    char msg[512], line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = ' ';
    int n = snprintf(line, sizeof line,
                     "x {\"exit_code\":null,\"signal\":null,\"limit\":null,\"cpu_time_ms\":0,"
                     "\"memory_peak_kib\":0,\"run_ms\":0,\"oom_kills\":0,\"error\":\"%s\"}\n",
                     msg);
    write_all(STDOUT_FILENO, line, (size_t)n);
    _exit(126);
}

static pid_t program_pid;

static void kill_all(void) {
    /* As PID 1 of the container's pid namespace: every other process in it, the program's whole
       tree. Anywhere else (never kill(-1) outside a namespace of our own: as root that is every
       process on the host): the program's process group. */
    if (getpid() == 1) kill(-1, SIGKILL);
    else if (program_pid > 0) kill(-program_pid, SIGKILL);
}

static siginfo_t program_status;
static int program_exited;

/* Reap every child that has ended: the program (its status kept: the one place that reaps it, so
   no other wait can take it first) and, as PID 1, the orphans of its tree. */
static void reap(void) {
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return;
        if (info.si_pid == program_pid && !program_exited) {
            program_status = info;
            program_exited = 1;
            kill_all(); /* whatever the program left running would hold the pipes open */
        }
    }
}

int main(int argc, char **argv) {
    long long output_bytes = 1048576, wall_time_ms = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--output-bytes") == 0 && i + 1 < argc) {
            output_bytes = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--wall-time-ms") == 0 && i + 1 < argc) {
            wall_time_ms = atoll(argv[++i]);
        } else {
            break;
        }
    }
    write_all(STDOUT_FILENO, "aevatar-runner 1\n", 17);
    if (i >= argc) die_setup("aevatar-runner: no program given");
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);

    int out[2], err[2], status_pipe[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC))
        die_setup("aevatar-runner: pipe: %s", strerror(errno));
    int64_t started = now_ms();
    pid_t pid = fork();
    if (pid < 0) die_setup("aevatar-runner: fork: %s", strerror(errno));
    if (pid == 0) {
        if (getppid() != 1) setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0) _exit(127);
        /* No descriptor but 0, 1, 2 and the exec-status pipe (close-on-exec) reaches the program. */
        int sfd = status_pipe[1];
        if (sfd > 3) syscall(SYS_close_range, 3, sfd - 1, 0);
        syscall(SYS_close_range, sfd + 1, ~0U, 0);
        execvp(argv[i], &argv[i]);
        int e = errno;
        write_all(sfd, (const char *)&e, sizeof e);
        _exit(127);
    }
    program_pid = pid;
    if (getpid() != 1) setpgid(pid, pid);
    close(out[1]);
    close(err[1]);
    close(status_pipe[1]);
    int exec_errno = 0;
    ssize_t got;
    do {
        got = read(status_pipe[0], &exec_errno, sizeof exec_errno);
    } while (got < 0 && errno == EINTR);
    close(status_pipe[0]);
    if (got == (ssize_t)sizeof exec_errno) {
        waitpid(pid, NULL, 0);
        die_setup("cannot execute %s: %s", argv[i], strerror(exec_errno));
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    struct pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {pidfd, POLLIN, 0}};
    static unsigned char buf[65536];
    long long forwarded = 0;
    const char *limit = NULL, *truncated = NULL;
    int open_pipes = 2;
    while (open_pipes > 0 || !program_exited) {
        int timeout = -1;
        if (!program_exited && wall_time_ms > 0 && limit == NULL) {
            int64_t left = started + wall_time_ms - now_ms();
            if (left <= 0) {
                limit = "wall_time";
                kill_all();
                continue;
            }
            timeout = (int)left;
        }
        if (pidfd < 0 && !program_exited) timeout = timeout < 0 || timeout > 50 ? 50 : timeout;
        int n = poll(fds, 3, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_setup("aevatar-runner: poll: %s", strerror(errno));
        }
        for (int s = 0; s < 2; s++) {
            if (fds[s].fd < 0 || !(fds[s].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(fds[s].fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                close(fds[s].fd);
                fds[s].fd = -1;
                open_pipes--;
                continue;
            }
            long long room = output_bytes - forwarded;
            size_t keep = room <= 0 ? 0 : (r < room ? (size_t)r : (size_t)room);
            if (keep > 0) emit_chunk(s == 0 ? 'o' : 'e', buf, keep);
            forwarded += keep;
            if ((size_t)r > keep && limit == NULL) {
                limit = "output";
                truncated = s == 0 ? "stdout" : "stderr";
                kill_all();
            }
        }
        if (fds[2].fd >= 0 && (fds[2].revents & (POLLIN | POLLHUP))) fds[2].fd = -1; /* ended: reap() */
        reap();
    }
    int64_t run_ms = now_ms() - started;
    reap();
    siginfo_t info = program_status;

    int exit_code = -1, sig = -1;
    if (info.si_code == CLD_EXITED) {
        exit_code = info.si_status;
    } else {
        sig = info.si_status;
    }
    static const char *const cpu_v2[] = {"/sys/fs/cgroup/cpu.stat", NULL};
    static const char *const cpu_v1[] = {"/sys/fs/cgroup/cpuacct/cpuacct.usage",
                                         "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", NULL};
    static const char *const mem_v2[] = {"/sys/fs/cgroup/memory.peak", NULL};
    static const char *const mem_v1[] = {"/sys/fs/cgroup/memory/memory.max_usage_in_bytes", NULL};
    static const char *const oom_v2[] = {"/sys/fs/cgroup/memory.events", NULL};
    static const char *const oom_v1[] = {"/sys/fs/cgroup/memory/memory.oom_control", NULL};
    int64_t cpu_ms = -1, mem_kib = -1, oom_kills;
    int64_t v = first_stat(cpu_v2, "usage_usec");
    if (v >= 0) cpu_ms = v / 1000;
    else if ((v = first_stat(cpu_v1, "")) >= 0) cpu_ms = v / 1000000;
    v = first_stat(mem_v2, "");
    if (v < 0) v = first_stat(mem_v1, "");
    if (v >= 0) mem_kib = v / 1024;
    oom_kills = first_stat(oom_v2, "oom_kill");
    if (oom_kills < 0) oom_kills = first_stat(oom_v1, "oom_kill");
    if (oom_kills < 0) oom_kills = 0;
    if (cpu_ms < 0 || mem_kib < 0) {
        struct rusage ru;
        getrusage(RUSAGE_CHILDREN, &ru);
        if (cpu_ms < 0)
            cpu_ms = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
        if (mem_kib < 0) mem_kib = ru.ru_maxrss;
    }
    /* A kill the kernel's OOM killer made (SIGKILL while this cgroup counted an OOM kill). */
    if (limit == NULL && sig == SIGKILL && oom_kills > 0) limit = "memory";

    char line[512];
    char ec[16] = "null", sg[16] = "null", lim[32] = "null", tr[16] = "null";
    if (truncated != NULL) snprintf(tr, sizeof tr, "\"%s\"", truncated);
    if (exit_code >= 0) snprintf(ec, sizeof ec, "%d", exit_code);
    if (sig >= 0) snprintf(sg, sizeof sg, "%d", sig);
    if (limit != NULL) snprintf(lim, sizeof lim, "\"%s\"", limit);
    int n = snprintf(line, sizeof line,
                     "x {\"exit_code\":%s,\"signal\":%s,\"limit\":%s,\"cpu_time_ms\":%" PRId64
                     ",\"memory_peak_kib\":%" PRId64 ",\"run_ms\":%" PRId64 ",\"oom_kills\":%" PRId64
                     ",\"truncated\":%s,\"error\":null}\n",
                     ec, sg, lim, cpu_ms, mem_kib, run_ms, oom_kills, tr);
    write_all(STDOUT_FILENO, line, (size_t)n);
    return exit_code >= 0 ? exit_code : 128 + (sig > 0 ? sig : 0);
}
