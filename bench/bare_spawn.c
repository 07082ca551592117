/* The bare minimum for running a command `concurrency` at a time, in C: posix_spawn (vfork-style) into the
 * working directory in a new session, stdin /dev/null, stdout and stderr to memory files; wait for any child,
 * read what it wrote, start the next. Prints "<commands per second> <commands counted>", and on stderr
 * "finished <commands run in all>".
 *
 * usage: bare_spawn SECONDS CONCURRENCY CWD PATH ARGV0 [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

struct slot { pid_t pid; int out, err; };

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s SECONDS CONCURRENCY CWD PATH ARGV0 [ARGS...]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    int concurrency = atoi(argv[2]);
    const char *cwd = argv[3], *path = argv[4];
    char **cargv = argv + 5;
    struct slot *slots = calloc(concurrency, sizeof *slots);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty, dflt;
    sigemptyset(&empty);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGXFSZ);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char buf[1024];
    long finished = 0, counted = 0;
    int inflight = 0;
    /* Counting starts once `concurrency` commands have finished (the pipeline is full). */
    double start = 1e300, deadline = 1e300;
    for (;;) {
        for (int i = 0; i < concurrency && now() < deadline; i++) {
            if (slots[i].pid) continue;
            int out = memfd_create("o", MFD_CLOEXEC), err = memfd_create("e", MFD_CLOEXEC);
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, devnull, 0);
            posix_spawn_file_actions_adddup2(&fa, out, 1);
            posix_spawn_file_actions_adddup2(&fa, err, 2);
            posix_spawn_file_actions_addchdir_np(&fa, cwd);
            pid_t pid;
            int rc = posix_spawn(&pid, path, &fa, &attr, cargv, environ);
            posix_spawn_file_actions_destroy(&fa);
            if (rc) {
                fprintf(stderr, "posix_spawn: %s\n", strerror(rc));
                return 1;
            }
            slots[i] = (struct slot){pid, out, err};
            inflight++;
        }
        if (!inflight) break;
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            perror("wait");
            return 1;
        }
        for (int i = 0; i < concurrency; i++) {
            if (slots[i].pid != pid) continue;
            if (pread(slots[i].out, buf, sizeof buf, 0) < 0 || pread(slots[i].err, buf, sizeof buf, 0) < 0) {
                perror("pread");
            }
            close(slots[i].out);
            close(slots[i].err);
            slots[i].pid = 0;
            inflight--;
            finished++;
            double t = now();
            if (finished == concurrency) {
                start = t;
                deadline = t + seconds;
            } else if (t > start && t <= deadline) {
                counted++;
            }
            break;
        }
    }
    printf("%.1f %ld\n", counted / seconds, counted);
    fprintf(stderr, "finished %ld\n", finished);
    return 0;
}
