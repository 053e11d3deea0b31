//! What a container mounts and the files no one should open through the mount: its pseudo
//! filesystems (`/proc`, `/sys`) show empty so `grep -r` ends; its tmpfs and bind-mounted
//! volumes are served; FIFOs, sockets and device nodes are listed with their kind but never
//! opened, on a mount that carries `ro,nosuid,nodev`.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn pseudo_filesystems_are_empty_and_grep_terminates() {
    let c = FakeContainer::start(
        basic_tree,
        "mount -t proc proc $R/proc; mkdir -p $R/sys && mount -t sysfs sys $R/sys",
    );
    // The kernel's view of the container's /proc is huge.
    assert!(fs::read_dir(c.proc_root().join("proc")).unwrap().count() > 10);
    let d = serve(&c, "ps");
    let view = d.path().join("ps");
    assert_eq!(fs::read_dir(view.join("proc")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(view.join("sys")).unwrap().count(), 0);
    assert!(fs::metadata(view.join("proc/self")).is_err());
    let out = sh(&format!("timeout 60 grep -r -c ERROR {}", view.display()));
    assert_ne!(out.status.code(), Some(124), "grep -r did not terminate");
    assert!(
        stdout(&out).contains("var/log/app/app.log:1"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn volumes_and_tmpfs_in_the_container_are_served() {
    let host_vol = tempfile::tempdir().unwrap();
    fs::write(host_vol.path().join("in-volume"), "volume data").unwrap();
    let vol = host_vol.path().display().to_string();
    let c = FakeContainer::start(
        basic_tree,
        &format!(
            "mount -t tmpfs tmp $R/data && echo tmpfs-data > $R/data/t; mkdir -p $R/vol && mount --bind {vol} $R/vol"
        ),
    );
    let d = serve(&c, "mounts");
    let view = d.path().join("mounts");
    assert_eq!(
        fs::read_to_string(view.join("data/t")).unwrap(),
        "tmpfs-data\n"
    );
    assert_eq!(
        fs::read_to_string(view.join("vol/in-volume")).unwrap(),
        "volume data"
    );
    // The host sees the tmpfs only through the container.
    assert!(!c.root().join("data/t").exists());
}

#[test]
fn special_files_are_listed_but_never_opened() {
    let c = FakeContainer::start(
        |root| {
            basic_tree(root);
            let r = root.display();
            let out = sh(&format!(
                "mkfifo {r}/fifo && mknod {r}/zero c 1 5 && mknod {r}/blk b 7 0 && \
                 python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' {r}/sock"
            ));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
        "",
    );
    let d = serve(&c, "special");
    let view = d.path().join("special");
    for (name, kind) in [
        ("fifo", libc::S_IFIFO),
        ("zero", libc::S_IFCHR),
        ("blk", libc::S_IFBLK),
        ("sock", libc::S_IFSOCK),
    ] {
        let m = fs::symlink_metadata(view.join(name)).unwrap();
        assert_eq!(m.mode() & libc::S_IFMT, kind, "{name}");
        assert_eq!(
            m.rdev(),
            fs::symlink_metadata(c.root().join(name)).unwrap().rdev(),
            "{name}"
        );
    }
    // Devices: nodev refuses them, and ctrfsd would never open them anyway.
    let mut buf = [0u8; 16];
    let zero = fs::File::open(view.join("zero")).and_then(|mut f| f.read(&mut buf));
    assert!(
        zero.is_err(),
        "a device node was readable through the mount"
    );
    assert!(fs::File::open(view.join("sock")).is_err());
    // A FIFO under the mount is a local pipe of the host kernel, never the container's:
    // data written into the container's FIFO does not come out here, and nothing hangs. The
    // writer keeps the FIFO open (and its data in the pipe) until it is killed.
    let flag = tempfile::tempdir().unwrap();
    let written = flag.path().join("written");
    let mut w = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3<>{0}/fifo; echo FROM-CONTAINER >&3; touch {1}; exec sleep 60",
            c.root().display(),
            written.display()
        ))
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), || written.exists()).expect("the writer never wrote");
    let out = sh(&format!(
        "timeout 2 dd if={}/fifo iflag=nonblock bs=64 count=1 2>/dev/null",
        view.display()
    ));
    assert!(!stdout(&out).contains("FROM-CONTAINER"));
    // The data was there to be read, through the container's own FIFO.
    let direct = sh(&format!(
        "timeout 2 dd if={}/fifo iflag=nonblock bs=64 count=1 2>/dev/null",
        c.root().display()
    ));
    assert!(
        stdout(&direct).contains("FROM-CONTAINER"),
        "this test proves nothing: {direct:?}"
    );
    let _ = w.kill();
    let _ = w.wait();
    // The mount carries nosuid and nodev.
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(&format!(" {} ", d.path().display())))
        .unwrap()
        .to_string();
    for opt in ["ro", "nosuid", "nodev"] {
        assert!(
            line.split(' ').nth(5).unwrap().split(',').any(|o| o == opt),
            "{opt} missing: {line}"
        );
    }
}
