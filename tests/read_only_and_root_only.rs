//! What the mount refuses: every kind of write answers EROFS and changes nothing in the
//! container; users other than root cannot enter it.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use common::*;

#[test]
fn every_write_is_refused_with_erofs() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "ro");
    let v = d.path().join("ro");
    let erofs = |r: std::io::Result<()>, what: &str| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS), "{what}");
    };
    erofs(fs::write(v.join("etc/new"), "x"), "create");
    erofs(
        fs::OpenOptions::new()
            .append(true)
            .open(v.join("etc/app.conf"))
            .map(|_| ()),
        "open for append",
    );
    erofs(fs::create_dir(v.join("newdir")), "mkdir");
    erofs(fs::remove_file(v.join("etc/app.conf")), "unlink");
    erofs(
        fs::rename(v.join("etc/app.conf"), v.join("etc/x")),
        "rename",
    );
    erofs(
        fs::set_permissions(v.join("etc/app.conf"), fs::Permissions::from_mode(0o777)),
        "chmod",
    );
    erofs(symlink("x", v.join("etc/l")), "symlink");
    let out = sh(&format!(
        "setfattr -n user.x -v 1 {}/etc/app.conf",
        v.display()
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    // Nothing changed in the container.
    assert_eq!(
        fs::read_to_string(c.root().join("etc/app.conf")).unwrap(),
        "key=value\n"
    );
    assert!(!c.root().join("etc/new").exists());
}

#[test]
fn only_root_may_enter_the_mount() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "priv");
    let out = sh(&format!(
        "setpriv --reuid 65534 --regid 65534 --clear-groups ls {}",
        d.path().display()
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}
