//! Test images and roots built from local files (busybox-static and what the test writes),
//! never from a registry.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use super::{BUSYBOX, require_docker, sh};

/// Lays out a test image's root in `root`: the directories `dirs`, busybox at
/// `/bin/busybox` and each of `applets` as a link to it.
pub fn busybox_rootfs(root: &Path, dirs: &[&str], applets: &[&str]) {
    for d in dirs.iter().chain(&["bin"]) {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

/// Docker image `tag`, made once per test binary (`once`): `fill` lays out its root (in a
/// new temporary directory, usually with [`busybox_rootfs`]), then it is `docker import`ed.
pub fn docker_image_once(
    once: &'static OnceLock<()>,
    tag: &'static str,
    fill: impl FnOnce(&Path),
) -> &'static str {
    once.get_or_init(|| {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        docker_import(dir.path(), tag);
    });
    tag
}

/// `docker import` of the tree at `root` as image `tag` (no registry involved).
pub fn docker_import(root: &Path, tag: &str) {
    let out = sh(&format!(
        "tar -C {} -cf - . | docker import - {tag}",
        root.display()
    ));
    assert!(out.status.success(), "docker import {tag}: {out:?}");
}

/// Plants, under `root`, the links a hostile image uses to reach the host file `/etc/<marker>`:
/// absolute, `..` from below, `..` after a real component, `/proc/self/root` and `/proc/1/root`
/// magic links, a chain, a directory replaced by a link to `/etc`, links to `/` and above the
/// root, and a loop. `a/b/c` and `var/log` must exist.
pub fn plant_escape_links(root: &Path, marker: &str) {
    let l = |t: &str, at: &str| std::os::unix::fs::symlink(t, root.join(at)).unwrap();
    l(&format!("/etc/{marker}"), "evil-abs");
    l(&format!("../../../../../../etc/{marker}"), "a/b/evil-rel");
    l(&format!("a/../../../../etc/{marker}"), "evil-dotdot");
    l(&format!("/proc/self/root/etc/{marker}"), "evil-magic");
    l(&format!("/proc/1/root/etc/{marker}"), "evil-pid1");
    l("/evil-abs", "chain1");
    l("chain1", "chain2");
    l("/etc", "var/log/etc-dir");
    l("/", "rootlink");
    l("../../../..", "a/b/c/up");
    l("loop", "loop");
}
