//! The differential check (scripts/ctrfsd-diff) on a full Debian tree in a real container:
//! every entry through the mount must match the kernel's own view, links as documented.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-debian:bookworm-minbase";

fn debian_image() {
    require_docker();
    if docker(&["image", "inspect", IMAGE]).status.success() {
        return;
    }
    // Built once per machine from Debian's own packages; no registry is involved.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("deb");
    let out = sh(&format!(
        "debootstrap --variant=minbase bookworm {} http://deb.debian.org/debian >{}/log 2>&1 && \
         tar -C {} -cf - . | docker import - {IMAGE}",
        root.display(),
        dir.path().display(),
        root.display()
    ));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "building {IMAGE} failed: {}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_debian_tree_matches_the_kernel_view_entry_by_entry() {
    debian_image();
    let name = format!("ctrfsd-deb-{}", token());
    let ctr = docker_run(&name, IMAGE, &["/bin/sleep", "1000000"]);
    let pid = ctr.pid().to_string();
    // Links of every kind the README documents, planted beside the Debian tree.
    let r = format!("/proc/{pid}/root");
    let plant = sh(&format!(
        "ln -s /etc/os-release {r}/abs-link && ln -s ../../etc/passwd {r}/usr/up-link && \
         ln -s usr/lib {r}/down-link && ln -s /usr/bin/../../../../etc {r}/dotdot-link && \
         ln -s self-loop {r}/self-loop && mkdir -p {r}/a/b && ln -s ../../../../../../ {r}/a/b/root-link"
    ));
    assert!(plant.status.success(), "{plant:?}");
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--xattrs",
        "--container",
        &format!("deb={pid}"),
    ]);
    wait_until(Duration::from_secs(5), || d.has("deb")).expect("not served");
    let diff = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ctrfsd-diff"))
        .args(["--xattrs"])
        .arg(d.path().join("deb"))
        .arg(&pid)
        .output()
        .unwrap();
    drop(ctr);
    let report = String::from_utf8_lossy(&diff.stdout);
    eprintln!("{report}");
    assert!(
        diff.status.success(),
        "differences found:\n{report}\n{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let last = report.lines().last().unwrap_or("");
    assert!(last.ends_with("; 0 differences"), "{last}");
    let entries: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(entries > 5000, "only {entries} entries compared");
    assert!(
        last.contains("4 pseudo mounts") || last.contains("5 pseudo mounts"),
        "{last}"
    );
}
