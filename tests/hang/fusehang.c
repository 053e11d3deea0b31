/* A FUSE server that stops answering: the hostile side of tests/hang.rs.
 *
 * fusehang overlay: mounts itself at /mnt/f, answers until an overlay with /mnt/f as a lower
 *                   layer is mounted at /ovl, then never answers again.
 * fusehang overlay-link:   the same, with the layer named through a symlink (/mnt/lnk -> /mnt/f),
 *                   so mountinfo's lowerdir names no FUSE mount.
 * fusehang overlay-detach: the same as overlay, then detaches /mnt/f lazily (MNT_DETACH): the
 *                   overlay keeps the FUSE layer, mountinfo no longer shows it.
 * fusehang late:    waits for /go, mounts itself over /data (a directory the host may already
 *                   have listed), answers INIT only, then never answers again.
 * fusehang reuse:   mounts a tmpfs at /a and one at /c, writes /armed, waits for /go; then takes
 *                   every free mount id below /a's with bind mounts, unmounts /a and mounts
 *                   itself at /b, which gets /a's id; answers INIT only, then never again.
 * fusehang dirlock: waits for /go, mounts itself at /mnt/f with one file, x, whose reads are never answered;
 *                   a child lists /data into memory mapped from x (getdents64 holds /data's
 *                   inode lock while the copy faults on that page, forever), another creates
 *                   /data/new (queued for the lock, so every later lookup in /data queues
 *                   behind it). Reads of x are the only requests left unanswered.
 * fusehang root:   mounts itself at /mnt/f, answers while this process chroots into it, then
 *                   never answers again: the process's root is a hung FUSE mount. /ready is
 *                   written in the old root (what `docker exec` sees).
 * fusehang subroot: the same, chrooting into /mnt/f/sub, a directory *below* the FUSE mount's
 *                   root: the process's mountinfo then lists no mount holding its root.
 * fusehang ovlroot: mounts itself at /mnt/f, mounts an overlay lowerdir=/mnt/f:/l2 at /ovl,
 *                   answers while this process chroots into the overlay, then never answers
 *                   again: the process's root is an overlay it made on a hung FUSE mount, and
 *                   its mount table shows only that overlay (at /). /ready in the old root.
 * fusehang ovlshared: the same as ovlroot with the overlay at /hv/ovl, on a volume the host
 *                   shares with the container (`-v DIR:/hv:rshared`): the overlay's mount
 *                   propagates to the host's mount namespace, where ctrfsd takes it for a
 *                   runtime's (README, Known holes) and serves it.
 * fusehang erofs:   mounts itself at /mnt/f with one file, x, whose reads (direct I/O, no
 *                   readahead) come from /img.erofs; mounts x as a file-backed erofs at /x
 *                   (Linux 6.12+, CONFIG_EROFS_FS_BACKED_BY_FILE), then never answers again:
 *                   every read of /x's metadata not yet cached waits on the hung server.
 *                   /x/d's names are read (cached) before it stops answering.
 * Writes /ready once the trap is set. Raw /dev/fuse, no libfuse: the image has no libc. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static int fd;
static char buf[1 << 20] __attribute__((aligned(8)));

static void reply(uint64_t unique, int err, const void *data, size_t len) {
    struct fuse_out_header h = {.len = sizeof h + len, .error = -err, .unique = unique};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, len}};
    writev(fd, iov, len ? 2 : 1);
}

static void root_attr(struct fuse_attr *a) {
    memset(a, 0, sizeof *a);
    a->ino = 1;
    a->mode = S_IFDIR | 0755;
    a->nlink = 2;
}

/* dirlock: the one file, x (4 KiB), exists. */
static int with_file;
/* subroot: the one directory, sub (node 3), exists. */
static int with_sub;
/* erofs: x's contents are this file's (its size, and reads answered from it). */
static int image = -1;
static off_t image_size;

static void file_attr(struct fuse_attr *a) {
    memset(a, 0, sizeof *a);
    a->ino = 2;
    a->mode = S_IFREG | 0644;
    a->nlink = 1;
    a->size = image >= 0 ? image_size : 4096;
    a->blocks = (a->size + 511) / 512;
}

/* Answers one request; returns 0 once INIT was answered (for "late"), 1 otherwise. */
static int serve_one(void) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < (ssize_t)sizeof(struct fuse_in_header)) {
        if (n < 0 && errno == ENODEV) exit(0);
        return 1;
    }
    struct fuse_in_header *in = (void *)buf;
    void *arg = buf + sizeof *in;
    switch (in->opcode) {
    case FUSE_INIT: {
        struct fuse_init_in *i = arg;
        struct fuse_init_out o = {0};
        o.major = FUSE_KERNEL_VERSION;
        o.minor = FUSE_KERNEL_MINOR_VERSION;
        o.max_readahead = image >= 0 ? 0 : i->max_readahead;
        o.max_write = 65536;
        reply(in->unique, 0, &o, sizeof o);
        return 0;
    }
    case FUSE_GETATTR: {
        struct fuse_attr_out o = {0};
        if (in->nodeid == 2) file_attr(&o.attr); else root_attr(&o.attr);
        if (in->nodeid == 3) o.attr.ino = 3;
        reply(in->unique, 0, &o, sizeof o);
        break;
    }
    case FUSE_OPENDIR: {
        struct fuse_open_out o = {.fh = 1};
        reply(in->unique, 0, &o, sizeof o);
        break;
    }
    case FUSE_READDIR:
    case FUSE_READDIRPLUS:
    case FUSE_RELEASEDIR:
    case FUSE_RELEASE:
        reply(in->unique, 0, NULL, 0);
        break;
    case FUSE_STATFS: {
        struct fuse_statfs_out o = {0};
        o.st.bsize = 4096;
        o.st.namelen = 255;
        reply(in->unique, 0, &o, sizeof o);
        break;
    }
    case FUSE_LOOKUP:
        if (with_file && in->nodeid == 1 && strcmp(arg, "x") == 0) {
            struct fuse_entry_out o = {.nodeid = 2, .attr_valid = 100, .entry_valid = 100};
            file_attr(&o.attr);
            reply(in->unique, 0, &o, sizeof o);
        } else if (with_sub && in->nodeid == 1 && strcmp(arg, "sub") == 0) {
            struct fuse_entry_out o = {.nodeid = 3, .attr_valid = 100, .entry_valid = 100};
            root_attr(&o.attr);
            o.attr.ino = 3;
            reply(in->unique, 0, &o, sizeof o);
        } else {
            reply(in->unique, ENOENT, NULL, 0);
        }
        break;
    case FUSE_OPEN: {
        struct fuse_open_out o = {.fh = 2};
        if (image >= 0) o.open_flags = FOPEN_DIRECT_IO;
        reply(in->unique, 0, &o, sizeof o);
        break;
    }
    case FUSE_READ:
        if (image >= 0) {
            struct fuse_read_in *r = arg;
            static char data[1 << 17];
            size_t want = r->size < sizeof data ? r->size : sizeof data;
            ssize_t got = pread(image, data, want, r->offset);
            reply(in->unique, got < 0 ? EIO : 0, data, got < 0 ? 0 : (size_t)got);
        }
        break; /* otherwise never answered */
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
        break;
    default:
        reply(in->unique, ENOSYS, NULL, 0);
    }
    return 1;
}

static void mount_fuse(const char *at) {
    fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) { perror("/dev/fuse"); exit(1); }
    char opts[128];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd);
    if (mount("fusehang", at, "fuse.fusehang", MS_NOSUID | MS_NODEV, opts) != 0) {
        perror("mount fuse");
        exit(1);
    }
}

static void ready(void) {
    int r = open("/ready", O_WRONLY | O_CREAT, 0644);
    close(r);
}

/* Reads requests forever and answers none: every caller waits. */
static void hang(void) {
    for (;;) {
        if (read(fd, buf, sizeof buf) < 0 && errno == ENODEV) exit(0);
    }
}

static unsigned long long mnt_id(const char *path) {
    struct statx st;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &st) != 0) return 0;
    return st.stx_mnt_id;
}

/* The kernel gives a new mount the lowest free id: with every lower one taken, /b gets /a's. */
static void reuse(void) {
    mkdir("/a", 0755); mkdir("/b", 0755); mkdir("/c", 0755); mkdir("/fill", 0755);
    if (mount("tmpfs", "/a", "tmpfs", 0, NULL) != 0 || mount("tmpfs", "/c", "tmpfs", 0, NULL) != 0) {
        perror("mount tmpfs");
        exit(1);
    }
    close(open("/armed", O_WRONLY | O_CREAT, 0644));
    while (access("/go", F_OK) != 0) usleep(1000);
    unsigned long long a = mnt_id("/a");
    for (int k = 0;; k++) {
        char p[64];
        snprintf(p, sizeof p, "/fill/%d", k);
        mkdir(p, 0755);
        if (mount("/fill", p, NULL, MS_BIND, NULL) != 0) { perror("bind"); exit(1); }
        if (mnt_id(p) > a) break;
    }
    while (umount2("/a", 0) != 0) usleep(1000);
    mount_fuse("/b");
    while (serve_one()) {}
    ready();
    hang();
}

/* Holds /data's inode lock (see the header) and queues a writer behind it. */
static void dirlock(void) {
    while (access("/go", F_OK) != 0) usleep(10000);
    with_file = 1;
    mkdir("/mnt", 0755);
    mkdir("/mnt/f", 0755);
    mount_fuse("/mnt/f");
    if (fork() == 0) {
        for (;;) serve_one();
    }
    /* Only the server keeps /dev/fuse: once it dies (the container is removed) the connection
     * is aborted and the faulting getdents returns, or nothing could ever kill it. */
    close(fd);
    int x = open("/mnt/f/x", O_RDONLY);
    if (x < 0) { perror("open /mnt/f/x"); exit(1); }
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, x, 0);
    if (page == MAP_FAILED) { perror("mmap"); exit(1); }
    if (fork() == 0) {
        int d = open("/data", O_RDONLY | O_DIRECTORY);
        syscall(SYS_getdents64, d, page, 4096); /* faults on x: never returns */
        _exit(0);
    }
    usleep(300000);
    if (fork() == 0) {
        close(open("/data/new", O_WRONLY | O_CREAT, 0644)); /* waits for the lock */
        _exit(0);
    }
    usleep(300000);
    ready();
    for (;;) pause();
}

/* Makes this process's root a FUSE mount whose server stops answering once it is. */
static void fuseroot(const char *at) {
    mkdir("/mnt", 0755);
    mkdir("/mnt/f", 0755);
    mount_fuse("/mnt/f");
    int p[2];
    if (pipe(p) != 0) exit(1);
    if (fork() == 0) {
        close(p[1]);
        for (;;) {
            struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = p[0], .events = POLLIN}};
            poll(pf, 2, -1);
            if (pf[1].revents) hang(); /* chrooted: never answer again */
            if (pf[0].revents) serve_one();
        }
    }
    close(fd);
    close(p[0]);
    int old = open("/", O_PATH | O_DIRECTORY);
    if (chroot(at) != 0 || chdir("/") != 0) { perror("chroot"); exit(1); }
    close(p[1]);
    close(openat(old, "ready", O_WRONLY | O_CREAT, 0644));
    for (;;) pause();
}

/* Serves /mnt/f while `trap` runs in this process; once it returns, never answers again. */
static void serve_during(void (*trap)(void)) {
    mkdir("/mnt", 0755);
    mkdir("/mnt/f", 0755);
    mount_fuse("/mnt/f");
    int p[2];
    if (pipe(p) != 0) exit(1);
    if (fork() == 0) {
        close(p[1]);
        for (;;) {
            struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = p[0], .events = POLLIN}};
            poll(pf, 2, -1);
            if (pf[1].revents) hang(); /* the trap is set: never answer again */
            if (pf[0].revents) serve_one();
        }
    }
    close(fd);
    close(p[0]);
    int old = open("/", O_PATH | O_DIRECTORY);
    trap();
    close(p[1]);
    close(openat(old, "ready", O_WRONLY | O_CREAT, 0644));
    for (;;) pause();
}

/* Mounts an overlay with /mnt/f (this FUSE mount) as its first layer at `at`, and chroots
 * into it. */
static void overlay_chroot(const char *at) {
    mkdir("/l2", 0755);
    mkdir(at, 0755);
    if (mount("overlay", at, "overlay", MS_RDONLY, "lowerdir=/mnt/f:/l2") != 0) {
        perror("mount overlay");
        exit(1);
    }
    if (chroot(at) != 0 || chdir("/") != 0) { perror("chroot"); exit(1); }
}

static void ovlroot_trap(void) { overlay_chroot("/ovl"); }

static void ovlshared_trap(void) { overlay_chroot("/hv/ovl"); }

static void erofs_trap(void) {
    mkdir("/x", 0755);
    if (mount("/mnt/f/x", "/x", "erofs", MS_RDONLY, NULL) != 0) {
        perror("mount erofs /mnt/f/x");
        exit(1);
    }
    /* Reads the names of /x/d while answering: a later listing of it needs no more reads for
     * its names (getdents), only for its entries' inodes. */
    int d = open("/x/d", O_RDONLY | O_DIRECTORY);
    if (d < 0) { perror("open /x/d"); exit(1); }
    while (syscall(SYS_getdents64, d, buf, sizeof buf) > 0) {}
    close(d);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "ovlroot") == 0) serve_during(ovlroot_trap);
    if (argc > 1 && strcmp(argv[1], "ovlshared") == 0) serve_during(ovlshared_trap);
    if (argc > 1 && strcmp(argv[1], "erofs") == 0) {
        with_file = 1;
        image = open("/img.erofs", O_RDONLY | O_CLOEXEC);
        if (image < 0) { perror("/img.erofs"); exit(1); }
        image_size = lseek(image, 0, SEEK_END);
        serve_during(erofs_trap);
    }
    if (argc > 1 && strcmp(argv[1], "root") == 0) fuseroot("/mnt/f");
    if (argc > 1 && strcmp(argv[1], "subroot") == 0) {
        with_sub = 1;
        fuseroot("/mnt/f/sub");
    }
    if (argc > 1 && strcmp(argv[1], "dirlock") == 0) dirlock();
    if (argc > 1 && strcmp(argv[1], "reuse") == 0) reuse();
    if (argc > 1 && strcmp(argv[1], "late") == 0) {
        while (access("/go", F_OK) != 0) usleep(10000);
        mount_fuse("/data");
        while (serve_one()) {}
        ready();
        hang();
    }
    mkdir("/mnt", 0755);
    mkdir("/mnt/f", 0755);
    mkdir("/l2", 0755);
    mkdir("/ovl", 0755);
    mount_fuse("/mnt/f");
    const char *mode = argc > 1 ? argv[1] : "overlay";
    const char *opts = "lowerdir=/mnt/f:/l2";
    if (strcmp(mode, "overlay-link") == 0) {
        if (symlink("/mnt/f", "/mnt/lnk") != 0) return 1;
        opts = "lowerdir=/mnt/lnk:/l2";
    }
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t child = fork();
    if (child == 0) {
        if (mount("overlay", "/ovl", "overlay", MS_RDONLY, opts) != 0) {
            perror("mount overlay");
            _exit(1);
        }
        _exit(0);
    }
    /* Answer until the overlay mount is done. */
    int status;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 20) > 0) serve_one();
        if (waitpid(child, &status, WNOHANG) == child) break;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    if (strcmp(mode, "overlay-detach") == 0 && umount2("/mnt/f", MNT_DETACH) != 0) {
        perror("umount2 /mnt/f");
        return 1;
    }
    ready();
    hang();
}
