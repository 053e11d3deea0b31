//! Browsing leaves no mark: after a host `ls` and `cat` through the mount have finished,
//! ctrfsd lets go of every container mount but the container's root within 2 s, so `umount`
//! inside the container (a tmpfs it mounted) and on the host (a volume whose mount propagates
//! into the container, as kubelet's do) succeed, as they do after the same reads through
//! `/proc/<pid>/root`. Real Docker containers.

mod common;

use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const IMAGE: &str = "ctrfsd-umount:1";

/// Released within 2 s of the last request (1.5 s by design), plus a margin for a loaded
/// machine and the `docker exec` round trips of the retries.
const RELEASED_WITHIN: Duration = Duration::from_millis(3500);

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        busybox_rootfs(
            r,
            &["mnt", "share", "tmp"],
            &[
                "sh", "sleep", "mount", "umount", "mkdir", "echo", "cat", "true",
            ],
        );
    })
}

/// A mount made for a test, lazily unmounted on drop.
struct Unmount(String);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.0));
    }
}

/// Host `ls` of `dir` and of `dir/d`, and `cat` of `dir/f` and `dir/d/g`, through the mount;
/// all must finish (and succeed) before the clock starts.
fn browse(dir: &std::path::Path) {
    let d = dir.display();
    let out = sh(&format!("ls -la {d} {d}/d && cat {d}/f {d}/d/g"));
    assert!(out.status.success(), "browsing {d}: {out:?}");
    assert_eq!(stdout(&out).matches("content-").count(), 2, "{out:?}");
}

/// Retries `umount` (given as a command) until it succeeds; the time from the call to the
/// first success, or the last error after `limit`.
fn umount_until_ok(limit: Duration, argv: &[&str]) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    let took = wait_until(limit, || {
        let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        o.status.success()
    });
    took.map(|_| start.elapsed()).ok_or(last)
}

#[test]
fn tmpfs_inside_the_container_unmounts_after_browsing() {
    let name = format!("ctrfsd-um-{}", token());
    let _c = docker_run_with(
        &name,
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "apparmor=unconfined",
        ],
        image(),
        &[
            "sh",
            "-c",
            "mount -t tmpfs ctrfsd-um /mnt && mkdir /mnt/d && echo content-f > /mnt/f && \
             echo content-g > /mnt/d/g && echo ready > /tmp/ready && exec sleep 100000",
        ],
    );
    let d = Daemon::start(&["--runtime", "docker"]);
    let root = d.path().join(&name);
    wait_until(Duration::from_secs(10), || root.join("tmp/ready").exists())
        .expect("container not served");
    browse(&root.join("mnt"));
    let took = umount_until_ok(
        Duration::from_secs(10),
        &["docker", "exec", &name, "umount", "/mnt"],
    )
    .unwrap_or_else(|e| panic!("umount inside the container still fails after 10 s: {e}"));
    assert!(
        took <= RELEASED_WITHIN,
        "umount inside succeeded only after {took:?}"
    );
    // The container's root is still served.
    assert!(root.join("tmp/ready").exists());
    assert!(listing(&root.join("mnt")).is_empty());
}

/// A host directory, made a shared mount, bind-mounted into the container with `rslave`: a
/// volume mounted under it on the host appears in the container, and the host's `umount` of it
/// fails while anything holds the container's copy.
#[test]
fn host_volume_unmounts_after_browsing() {
    let name = format!("ctrfsd-umh-{}", token());
    let base = tempfile::tempdir().unwrap();
    let share = base.path().join("share");
    fs::create_dir(&share).unwrap();
    let s = share.display();
    let out = sh(&format!("mount --bind {s} {s} && mount --make-rshared {s}"));
    assert!(out.status.success(), "{out:?}");
    let _share_mount = Unmount(s.to_string());
    let c = docker_run_with(
        &name,
        &["-v", &format!("{s}:/share:rslave")],
        image(),
        &["sh", "-c", "echo ready > /tmp/ready && exec sleep 100000"],
    );
    let vol = share.join("vol");
    fs::create_dir(&vol).unwrap();
    let v = vol.display();
    let out = sh(&format!(
        "mount -t tmpfs ctrfsd-umh {v} && mkdir {v}/d && echo content-f > {v}/f && \
         echo content-g > {v}/d/g"
    ));
    assert!(out.status.success(), "{out:?}");
    let _vol_mount = Unmount(v.to_string());

    let d = Daemon::start(&["--runtime", "docker"]);
    let root = d.path().join(&name);
    wait_until(Duration::from_secs(10), || {
        root.join("share/vol/f").exists()
    })
    .expect("volume not served through the container");
    browse(&root.join("share/vol"));
    let took = umount_until_ok(Duration::from_secs(10), &["umount", v.to_string().as_str()])
        .unwrap_or_else(|e| panic!("umount on the host still fails after 10 s: {e}"));
    assert!(
        took <= RELEASED_WITHIN,
        "umount on the host succeeded only after {took:?}"
    );
    assert!(root.join("tmp/ready").exists());
    drop(c);
}

/// The fds ctrfsd (process `pid`) holds on files of device `dev`.
fn fds_on(pid: u32, dev: u64) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.dev() == dev))
        .map(|e| {
            let to = fs::read_link(e.path()).unwrap_or_default();
            format!("{} -> {}", e.file_name().to_string_lossy(), to.display())
        })
        .collect()
}

/// A volume file read through the mount and held open by a host tool while the container's
/// process exits and the container is removed: ctrfsd must not keep the volume's filesystem
/// busy (a block volume could not be detached or reformatted; the kubelet's detach fails).
/// Its read fd goes by the idle sweep like any fd off the container's root mount.
#[test]
fn a_volume_file_held_across_the_exit_keeps_no_fd_on_the_volume() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let name = format!("ctrfsd-umx-{}", token());
    let base = tempfile::tempdir().unwrap();
    let vol = base.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let v = vol.display();
    let out = sh(&format!(
        "mount -t tmpfs ctrfsd-umx {v} && echo content-f > {v}/f"
    ));
    assert!(out.status.success(), "{out:?}");
    let _vol_mount = Unmount(v.to_string());
    let dev = fs::metadata(&vol).unwrap().dev();
    let c = docker_run_with(
        &name,
        &["-v", &format!("{v}:/b")],
        image(),
        &["sleep", "100000"],
    );
    let d = Daemon::start(&["--runtime", "docker"]);
    let f = d.path().join(&name).join("b/f");
    wait_until(Duration::from_secs(10), || f.exists()).expect("volume not served");
    let mut held = fs::File::open(&f).unwrap();
    let mut text = String::new();
    held.read_to_string(&mut text).unwrap();
    assert_eq!(text, "content-f\n");
    docker_ok(&["kill", &name]);
    wait_until(Duration::from_secs(10), || {
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &name]) == "false"
    })
    .expect("the container did not stop");
    docker_ok(&["rm", &name]);
    std::mem::forget(c); // removed above
    let released = wait_until(RELEASED_WITHIN, || fds_on(d.pid(), dev).is_empty());
    assert!(
        released.is_some(),
        "ctrfsd still holds the removed container's volume: {:?}",
        fds_on(d.pid(), dev)
    );
    drop(held);
}
