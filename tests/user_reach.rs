//! Issue 13: a rootless Podman user's container shows only what that user's own processes can
//! reach (README "What a user's containers show"). Real rootless Podman as the test user, a
//! container that bind-mounts the host's `/`, a root-only directory and a directory of the
//! user's home; ctrfsd reads as root and must refuse what the user could not read.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::*;

const IMAGE: &str = "localhost/ctrfsd-reach:1";

/// The test image in the user's storage: busybox and a few applets, imported once.
fn image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("root");
        busybox_rootfs(&r, &["etc", "tmp", "proc", "sys", "dev"], &["sh", "sleep"]);
        let tar = dir.path().join("rootfs.tar");
        sh_ok(&format!("tar -C {} -cf {} .", r.display(), tar.display()));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&tar, fs::Permissions::from_mode(0o644)).unwrap();
        sh_ok(&as_user(&format!(
            "podman import -q {} {IMAGE}",
            tar.display()
        )));
    });
}

/// A rootless container, removed (with what the test made in the user's home) on drop.
struct UserCtr {
    name: String,
    home_dir: String,
}

impl Drop for UserCtr {
    fn drop(&mut self) {
        let _ = sh(&as_user(&format!("podman rm -f -t 0 {}", self.name)));
        let _ = fs::remove_dir_all(&self.home_dir);
    }
}

/// Asserts `r` failed with "Permission denied" (what it read is never printed).
fn denied<T>(r: std::io::Result<T>, what: &str) {
    match r {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
        Err(e) => panic!("{what}: expected Permission denied, got {e}"),
        Ok(_) => panic!("{what}: expected Permission denied, but it was read"),
    }
}

/// The user's own view, for comparison: `cat` as the user inside their container.
fn user_reads(name: &str, path: &str) -> bool {
    let o = Command::new("sh")
        .arg("-c")
        .arg(as_user(&format!(
            "podman exec {name} /bin/busybox cat {path} >/dev/null 2>&1"
        )))
        .status()
        .unwrap();
    o.success()
}

#[test]
fn a_rootless_container_shows_only_what_its_user_can_read() {
    require_root();
    image();
    let tok = token();
    let name = format!("reach-{tok}");
    // A root-only directory of the host, and a 0600 file of the user's in their home.
    let secret = tempfile::tempdir().unwrap();
    fs::set_permissions(secret.path(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(secret.path().join("inside"), "root only\n").unwrap();
    // A directory anyone may enter, with root's 0600 file carrying extended attributes.
    let open = tempfile::tempdir().unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let rootfile = open.path().join("rootfile");
    fs::write(&rootfile, "root only\n").unwrap();
    fs::set_permissions(&rootfile, fs::Permissions::from_mode(0o600)).unwrap();
    for (k, v) in [("user.note", "u"), ("trusted.note", "t")] {
        rustix::fs::setxattr(&rootfile, k, v.as_bytes(), rustix::fs::XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr {k} on {rootfile:?}: {e}"));
    }
    let uid = rootless_uid();
    let home_dir = format!("/home/{ROOTLESS_USER}/reach-{tok}");
    sh_ok(&as_user(&format!(
        "sh -c 'mkdir {home_dir} && echo mine > {home_dir}/own && chmod 600 {home_dir}/own'"
    )));
    assert_eq!(fs::metadata(format!("{home_dir}/own")).unwrap().uid(), uid);
    let ctr = UserCtr {
        name: name.clone(),
        home_dir: home_dir.clone(),
    };
    let d = Daemon::start(&["--runtime", "podman", "--xattrs"]);
    sh_ok(&as_user(&format!(
        "podman --runtime runc run -d --network none --name {name} -v /:/host \
         -v {}:/secret -v {}:/open -v {home_dir}:/mine {IMAGE} /bin/busybox sleep 100000",
        secret.path().display(),
        open.path().display()
    )));
    // A file of a container uid other than root: a subordinate uid on the host, mode 0600.
    sh_ok(&as_user(&format!(
        "podman exec {name} /bin/busybox sh -c 'echo sub > /sub && /bin/busybox chown 100:100 \
         /sub && /bin/busybox chmod 600 /sub'"
    )));
    let rel = format!("{name}@{ROOTLESS_USER}");
    within(WITHIN_API, "the rootless container is listed", || {
        d.has(&rel)
    });
    let c = d.path().join(&rel);

    // The host's /etc/shadow (0640 root:shadow): the user cannot read it, nor can root here.
    assert!(
        !user_reads(&name, "/host/etc/shadow"),
        "the user reads shadow?"
    );
    assert!(
        fs::metadata("/etc/shadow").unwrap().mode() & 0o004 == 0,
        "this host's /etc/shadow is readable by others: the test means nothing"
    );
    denied(fs::read(c.join("host/etc/shadow")), "host/etc/shadow");
    // stat stays as the kernel allows (search permission on the path).
    assert!(fs::metadata(c.join("host/etc/shadow")).is_ok());
    assert_eq!(
        fs::read_to_string(c.join("host/etc/hostname")).unwrap(),
        fs::read_to_string("/etc/hostname").unwrap()
    );
    // A walk that reads /etc file by file (the prefetcher pushes the next files into the page
    // cache) must not make shadow readable either.
    let _ = Command::new("grep")
        .args(["-rqs", "no-such-text-anywhere"])
        .arg(c.join("host/etc"))
        .status();
    denied(
        fs::read(c.join("host/etc/shadow")),
        "host/etc/shadow after a walk",
    );
    denied(
        fs::read(c.join("host/etc/gshadow")),
        "host/etc/gshadow after a walk",
    );

    // The subordinate uid's 0600 file: mapped in the user's namespace, so readable.
    let sub = fs::metadata(c.join("sub")).unwrap();
    assert!(sub.uid() > uid && sub.mode() & 0o777 == 0o600, "{sub:?}");
    assert_eq!(fs::read_to_string(c.join("sub")).unwrap(), "sub\n");

    // The root-only directory: neither listed nor searched.
    assert!(!user_reads(&name, "/secret/inside"));
    denied(fs::read_dir(c.join("secret")), "list secret");
    denied(fs::read(c.join("secret/inside")), "secret/inside");
    denied(fs::read_dir(c.join("host/root")), "list host/root");

    // Root's 0600 file in a directory anyone may enter: listed, not read; its `user.*`
    // attributes need read permission, its `trusted.*` ones are not there for the user.
    assert!(!user_reads(&name, "/open/rootfile"));
    assert_eq!(listing(&c.join("open")), vec!["rootfile".to_string()]);
    denied(fs::read(c.join("open/rootfile")), "open/rootfile");
    let served = c.join("open/rootfile");
    let mut buf = [0u8; 64];
    denied(
        rustix::fs::getxattr(&served, "user.note", &mut buf).map_err(std::io::Error::from),
        "user.note of open/rootfile",
    );
    let e = rustix::fs::getxattr(&served, "trusted.note", &mut buf).unwrap_err();
    assert_eq!(e, rustix::io::Errno::NODATA, "trusted.note");
    let mut names = [0u8; 1024];
    let n = rustix::fs::listxattr(&served, &mut names).unwrap();
    let names = String::from_utf8_lossy(&names[..n]).to_string();
    assert!(
        names.contains("user.note") && !names.contains("trusted"),
        "{names:?}"
    );

    // The user's own 0600 file in their home.
    assert!(user_reads(&name, "/mine/own"));
    assert_eq!(fs::read_to_string(c.join("mine/own")).unwrap(), "mine\n");
    drop(ctr);
    assert!(!Path::new(&home_dir).exists());
}
