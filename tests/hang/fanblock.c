/* A fanotify permission listener that never answers: the hostile side of tests/hang.rs.
 * fanblock FILE...: marks each FILE FAN_OPEN_PERM|FAN_ACCESS_PERM (with FAN_ONDIR: a directory's
 * opens and listings too), writes /fanblock.pid, and then sleeps forever, answering nothing:
 * every open or read of those files waits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/fanotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY);
    if (fan < 0) { perror("fanotify_init"); return 1; }
    for (int i = 1; i < argc; i++) {
        if (fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_ONDIR, AT_FDCWD, argv[i]) != 0) {
            perror(argv[i]);
            return 1;
        }
    }
    FILE *f = fopen("/fanblock.pid", "w");
    if (!f) return 1;
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
