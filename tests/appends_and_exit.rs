//! A running container's changes show through the mount: appended lines and in-place rewrites
//! within a second (for a polling reader and for real `tail -f`); a container whose process
//! exits leaves the mount within a second, while a file held open across the exit keeps
//! reading.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[test]
fn appended_lines_and_rewrites_show_within_a_second() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "logs");
    let log = d.path().join("logs/var/log/app/app.log");
    let inside = c.root().join("var/log/app/app.log");
    // A reader polling every 100 ms, as `tail -f` does on a filesystem without inotify.
    let mut f = fs::File::open(&log).unwrap();
    let mut seen = String::new();
    f.read_to_string(&mut seen).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&inside)
        .unwrap()
        .write_all(b"appended line\n")
        .unwrap();
    let took = wait_until(Duration::from_secs(3), || {
        f.read_to_string(&mut seen).unwrap();
        seen.contains("appended line")
    })
    .expect("appended line never seen");
    assert!(
        took <= Duration::from_millis(1500),
        "appended line took {took:?}"
    );
    // Real `tail -f` sees it too.
    let got = tail_follow(&log, || {
        fs::OpenOptions::new()
            .append(true)
            .open(&inside)
            .unwrap()
            .write_all(b"second line\n")
            .unwrap()
    });
    assert_eq!(
        got.as_deref(),
        Ok("second line\n"),
        "tail -f did not show the line in 2.5 s"
    );
    // A file rewritten in place with the same size is not served stale for long.
    let conf = d.path().join("logs/etc/app.conf");
    assert_eq!(fs::read_to_string(&conf).unwrap(), "key=value\n");
    fs::write(c.root().join("etc/app.conf"), "key=VALUE\n").unwrap();
    let took = wait_until(Duration::from_secs(3), || {
        fs::read_to_string(&conf).unwrap() == "key=VALUE\n"
    })
    .expect("rewritten file served stale");
    assert!(took <= Duration::from_millis(1500), "rewrite took {took:?}");
}

#[test]
fn a_container_whose_process_exits_disappears_within_a_second() {
    let mut c = FakeContainer::start(
        |root| {
            basic_tree(root);
            let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
            fs::write(root.join("big"), big).unwrap();
        },
        "",
    );
    let d = serve(&c, "short");
    assert!(d.has("short"));
    // A file held open across the exit keeps reading, as on a real filesystem: read the first
    // 4 KiB now (the kernel reads ahead far less than 8 MiB), the rest after the exit.
    let mut held = fs::File::open(d.path().join("short/big")).unwrap();
    let mut head = vec![0u8; 4096];
    held.read_exact(&mut head).unwrap();
    // Hold a directory open across the exit: it must not keep serving.
    let dir = d.path().join("short/etc");
    c.kill();
    // Gone from the listing and from path lookups (the kernel's cached entry is invalidated
    // just after the listing changes).
    let took = wait_until(Duration::from_secs(3), || {
        !d.has("short") && fs::metadata(d.path().join("short")).is_err()
    })
    .expect("still listed or still resolving");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let mut rest = Vec::new();
    held.read_to_end(&mut rest)
        .expect("an open file stopped reading when its container exited");
    head.extend_from_slice(&rest);
    assert_eq!(
        head,
        fs::read(c.root().join("big")).unwrap(),
        "an open file read wrong bytes"
    );
    assert_eq!(held.metadata().unwrap().len(), 8 << 20);
    // A path into the dead container answers as a deleted directory would.
    let err = fs::read_dir(&dir).expect_err("a dead container's files are still served");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
}
