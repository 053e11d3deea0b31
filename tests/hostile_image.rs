//! One hostile image, run as a real Docker container (issue #6): escaping links of every kind,
//! long chains, a PATH_MAX target, special files, a setuid binary and odd names, all built into
//! the image with `docker import`; and the symlink-exchange race driven by a static program
//! *inside* the container. tests/hostile.rs and tests/namespace.rs cover each case in depth with
//! processes in their own mount namespace; this proves the same through Docker's overlay root.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const IMAGE: &str = "ctrfsd-hostile:1";
const MARKER: &str = "ctrfsd-hostile-host-marker";
const SECRET: &str = "HOST-ONLY-HOSTILE-IMAGE-SECRET";

/// The exchange loop, compiled statically so it runs in an image without a libc.
/// Both names are made in the writable layer first: overlayfs renames only those freely.
const SWAPPER_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    if (mkdir("/swap", 0755) != 0 || symlink("/etc", "/evil-dir") != 0) {
        perror("setup");
        return 1;
    }
    int fd = open("/swap/ctrfsd-hostile-host-marker", O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || write(fd, "container-side\n", 15) != 15 || close(fd) != 0) {
        perror("marker");
        return 1;
    }
    for (;;) {
        if (renameat2(AT_FDCWD, "/swap", AT_FDCWD, "/evil-dir", RENAME_EXCHANGE) != 0) {
            perror("renameat2");
            return 1;
        }
        usleep(20);
    }
}
"#;

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        fs::write(format!("/etc/{MARKER}"), SECRET).unwrap();
        busybox_rootfs(
            r,
            &[
                "etc",
                "a/b/c",
                "var/log",
                "usr/share/zoneinfo",
                "proc",
                "dev",
            ],
            &["sh", "cat", "sleep", "id"],
        );
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("swapper.c"), SWAPPER_C).unwrap();
        let out = sh(&format!(
            "gcc -static -O2 -o {}/bin/swapper {}/swapper.c",
            r.display(),
            src.path().display()
        ));
        assert!(out.status.success(), "gcc -static: {out:?}");
        fs::write(r.join("etc/os-release"), "NAME=hostile\n").unwrap();
        fs::write(r.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
        // Escapes: each would read the host's marker if followed on the host.
        plant_escape_links(r, MARKER);
        let l = |t: &str, at: &str| symlink(t, r.join(at)).unwrap();
        // The same links with targets that exist in the container: must reach the same file.
        l("/usr/share/zoneinfo/UTC", "etc/localtime");
        l("../../etc/os-release", "a/b/os-rel");
        l("a/../../../etc/os-release", "os-dotdot");
        for i in 0..45 {
            let next = if i == 44 {
                "/etc/os-release".to_string()
            } else {
                format!("chain-{}", i + 1)
            };
            l(&next, &format!("chain-{i}"));
        }
        l(&format!("/{}", "x".repeat(4094)), "longest");
        // Special files and a setuid binary.
        let out = sh(&format!(
            "mkfifo {r}/fifo && mknod {r}/zero c 1 5 && mknod {r}/blk b 7 0 && \
             cp {BUSYBOX} {r}/bin/suid && chmod 4755 {r}/bin/suid",
            r = r.display()
        ));
        assert!(out.status.success(), "{out:?}");
        // Odd names: 255 bytes, a newline, bytes that are not UTF-8.
        fs::write(r.join("n".repeat(255)), "long name\n").unwrap();
        fs::write(r.join("new\nline"), "newline\n").unwrap();
        fs::write(
            r.join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe")),
            "not utf-8\n",
        )
        .unwrap();
    })
}

fn run(name: &str, cmd: &[&str]) -> DockerCtr {
    docker_run(name, image(), cmd)
}

#[test]
fn a_hostile_image_never_leaks_and_links_reach_what_the_container_reaches() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run(
        &format!("ctrfsd-hostile-{}", token()),
        &["/bin/sleep", "1000000"],
    );
    let v = d.path().join(&c.0);
    wait_until(Duration::from_secs(5), || v.join("etc/os-release").exists()).expect("not served");
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &c.0]);
    // The kernel's own view follows the absolute link onto the host: the problem ctrfsd fixes.
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/root/evil-abs")).unwrap(),
        SECRET
    );
    for link in [
        "evil-abs",
        "a/b/evil-rel",
        "evil-dotdot",
        "evil-magic",
        "evil-pid1",
        "chain2",
    ] {
        let r = fs::read_to_string(v.join(link));
        assert!(r.is_err(), "{link}: {r:?}");
    }
    for dir in ["var/log/etc-dir", "rootlink/etc", "a/b/c/up/etc"] {
        assert!(
            fs::read_to_string(v.join(dir).join(MARKER)).is_err(),
            "{dir}"
        );
        let t = fs::read_link(v.join(dir.trim_end_matches("/etc"))).unwrap();
        assert!(t.starts_with(&v), "{dir} -> {}", t.display());
    }
    let m = v.display();
    for cmd in [
        format!("grep -r {SECRET} {m}"),
        // -D skip: `grep -R` opens FIFOs and waits for a writer, on any filesystem (checked
        // below: interruptible, as on any filesystem).
        format!("grep -R -D skip {SECRET} {m}"),
        format!("find -L {m} -type f -exec cat {{}} + 2>/dev/null"),
        format!("tar -h -cf - -C {m} . 2>/dev/null"),
        // In its own shell, so `timeout` runs all of it and grep searches only the copy.
        format!(
            "sh -c 'd=$(mktemp -d) && cp -rL {m}/. \"$d\"/ 2>/dev/null; grep -r {SECRET} \"$d\"; test -f \"$d\"/etc/os-release && echo COPIED; rm -rf \"$d\"'"
        ),
    ] {
        let out = sh(&format!("timeout 120 {cmd}"));
        assert_ne!(out.status.code(), Some(124), "`{cmd}` did not finish");
        if cmd.contains("cp -rL") {
            assert!(
                stdout(&out).contains("COPIED"),
                "`{cmd}` copied nothing: {out:?}"
            );
        }
        assert!(
            !stdout(&out).contains(SECRET),
            "`{cmd}` printed the host marker"
        );
    }
    // Followed inside the container (busybox cat, `docker exec`) and through the mount: the
    // same file, or the same failure.
    for link in [
        "etc/localtime",
        "a/b/os-rel",
        "os-dotdot",
        "chain-0",
        "chain-4",
        "chain-5",
        "loop",
    ] {
        let inside = docker(&["exec", &c.0, "/bin/cat", &format!("/{link}")]);
        let ours = fs::read_to_string(v.join(link));
        assert_eq!(
            ours.is_ok(),
            inside.status.success(),
            "{link}: {ours:?} vs {inside:?}"
        );
        if let Ok(s) = ours {
            assert_eq!(s, stdout(&inside), "{link}");
        }
    }
    assert_eq!(
        fs::read_to_string(v.join("loop"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ELOOP)
    );
    assert_eq!(
        fs::read_link(v.join("longest")).unwrap_err().raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
    // Special files: listed with their kind, never opened; setuid shown, without effect
    // (nosuid, and only root may enter the mount).
    for (name, kind) in [
        ("fifo", libc::S_IFIFO),
        ("zero", libc::S_IFCHR),
        ("blk", libc::S_IFBLK),
    ] {
        let md = fs::symlink_metadata(v.join(name)).unwrap();
        assert_eq!(md.mode() & libc::S_IFMT, kind, "{name}");
    }
    let out = sh(&format!(
        "timeout 10 cat {m}/zero {m}/blk 2>&1 | head -c 64"
    ));
    assert_ne!(out.status.code(), Some(124));
    assert!(
        fs::read(v.join("zero")).is_err(),
        "a device node was readable"
    );
    let out = sh(&format!(
        "timeout 5 dd if={m}/fifo iflag=nonblock bs=64 count=1 2>/dev/null"
    ));
    assert_ne!(out.status.code(), Some(124), "a FIFO hung");
    // A blocking open of the FIFO waits for a writer (a pipe of the host kernel, as for any FIFO
    // on any filesystem), and a signal ends the wait: never an unkillable host process.
    let t0 = Instant::now();
    let out = sh(&format!("timeout -s TERM 2 grep -R x {m}/fifo"));
    assert_eq!(out.status.code(), Some(124));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let suid = fs::metadata(v.join("bin/suid")).unwrap();
    assert_eq!(
        suid.permissions().mode() & 0o4000,
        0o4000,
        "setuid bit not shown"
    );
    let opts = stdout(&sh(&format!("findmnt -no OPTIONS {}", d.path().display())));
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    // Odd names are listed and read.
    for (name, text) in [
        ("n".repeat(255).into_bytes(), "long name\n"),
        (b"new\nline".to_vec(), "newline\n"),
        (b"bad-\xff\xfe".to_vec(), "not utf-8\n"),
    ] {
        let p = v.join(std::ffi::OsStr::from_bytes(&name));
        assert_eq!(fs::read_to_string(&p).unwrap(), text, "{}", p.display());
    }
}

#[test]
fn a_process_inside_swapping_a_directory_with_a_link_to_etc_leaks_nothing() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run(&format!("ctrfsd-swap-{}", token()), &["/bin/swapper"]);
    let v = d.path().join(&c.0);
    wait_until(Duration::from_secs(5), || d.has(&c.0)).expect("not served");
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &c.0]);
    let (mut reads, mut leaks, mut proc_leaks) = (0u32, 0u32, 0u32);
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        for dir in ["swap", "evil-dir"] {
            match fs::read_to_string(v.join(dir).join(MARKER)) {
                Ok(s) if s.contains(SECRET) => leaks += 1,
                Ok(_) => reads += 1,
                Err(_) => {}
            }
        }
        let direct = Path::new("/proc").join(&pid).join("root/swap").join(MARKER);
        if fs::read_to_string(direct).is_ok_and(|s| s.contains(SECRET)) {
            proc_leaks += 1;
        }
    }
    let out = sh(&format!("timeout 60 grep -r -l {SECRET} {}", v.display()));
    let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", &c.0]);
    eprintln!("container-side reads {reads}, /proc/<pid>/root leaks {proc_leaks}");
    assert_eq!(
        running,
        "true",
        "the swapper stopped: {}",
        stdout(&docker(&["logs", &c.0]))
    );
    assert_eq!(leaks, 0, "ctrfsd returned host bytes {leaks} times");
    assert!(
        stdout(&out).is_empty(),
        "grep -r found the host marker: {}",
        stdout(&out)
    );
    assert!(
        proc_leaks > 0,
        "the swap never exposed the host through /proc/<pid>/root"
    );
}
