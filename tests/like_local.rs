//! What everyday tools read besides file contents (a symlink's `st_size`, `lseek` holes, the
//! root of a container whose main thread exited), through a real mount of real Docker
//! containers, checked against the kernel's own view (`/proc/<pid>/root`).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-like-local:1";

/// Builds the test image once per test binary (busybox and a few links, no registry).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        busybox_rootfs(
            r,
            &[
                "etc",
                "usr/share/zoneinfo",
                "var/log",
                "tmp",
                "proc",
                "sys",
                "dev",
            ],
            &[
                "sh", "sleep", "echo", "cat", "mv", "rm", "ln", "mkdir", "truncate", "dd",
            ],
        );
        fs::write(r.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
        symlink("/usr/share/zoneinfo/UTC", r.join("etc/localtime")).unwrap();
        symlink("../../usr/share/zoneinfo/UTC", r.join("var/log/zone-rel")).unwrap();
        symlink("zoneinfo/UTC", r.join("usr/share/tz")).unwrap();
        docker_import(r, IMAGE);
    });
    IMAGE
}

/// A running container of [`image`] named `ctrfsd-ll-<what>-<token>`.
fn sleeper(what: &str) -> DockerCtr {
    let name = format!("ctrfsd-ll-{what}-{}", token());
    docker_run(&name, image(), &["/bin/sh", "-c", "exec sleep 100000"])
}

/// ctrfsd on a fresh mountpoint, with `c` listed.
fn serve(c: &DockerCtr) -> Daemon {
    let d = Daemon::start(&[]);
    within(Duration::from_secs(10), "container listed", || d.has(&c.0));
    d
}

#[test]
fn a_symlinks_size_is_the_length_of_its_answer() {
    let c = sleeper("lsize");
    let d = serve(&c);
    let view = d.path().join(&c.0);
    // Absolute, `..` (both rewritten to longer answers) and walking-down (unchanged) links, as
    // `lstat` (lookup, getattr) and a listing (readdirplus) report them.
    let links = ["etc/localtime", "var/log/zone-rel", "usr/share/tz"];
    let _ = fs::read_dir(view.join("etc")).unwrap().count();
    for l in links {
        let answer = fs::read_link(view.join(l)).unwrap();
        let size = fs::symlink_metadata(view.join(l)).unwrap().len();
        assert_eq!(
            size,
            answer.as_os_str().len() as u64,
            "{l}: st_size {size}, readlink {answer:?}"
        );
    }
    // The complaint itself: libarchive sizes its buffer from st_size.
    let o = sh(&format!(
        "bsdtar -cf - -C {} etc/localtime | bsdtar -tvf -",
        view.display()
    ));
    assert!(o.status.success(), "bsdtar: {o:?}");
    let want = format!("-> {}/usr/share/zoneinfo/UTC", view.display());
    assert!(
        stdout(&o).trim_end().ends_with(&want),
        "bsdtar stored {:?}, want the whole target {want:?}",
        stdout(&o)
    );
}
