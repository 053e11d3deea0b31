//! What the mount serves equals the kernel's own view (`/proc/<pid>/root`): every entry's
//! mode, size, mtime, owner and link count, every file's bytes, extended attributes (with
//! `--xattrs`), names that are long, hold a newline or are not UTF-8, and the same bytes with
//! kernel passthrough (`--passthrough`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// What `stat` shows of one entry, compared between the mount and the kernel's view.
#[derive(Debug, PartialEq)]
struct Meta {
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    owner: (u32, u32),
    nlink: u64,
}

/// Every entry's metadata, keyed by relative path, read with lstat (links not followed); for
/// a symlink, `size` is how far its `st_size` is from its answer's length (0 when they agree).
fn snapshot(base: &Path) -> BTreeMap<PathBuf, Meta> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(base.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = fs::symlink_metadata(base.join(&r)).unwrap();
            // A link's size is the length of what `readlink` answers there: through the mount
            // that is the rewritten answer, so each side is checked against its own answer.
            let size = if m.is_symlink() {
                let answer = fs::read_link(base.join(&r)).unwrap();
                m.size().abs_diff(answer.as_os_str().len() as u64)
            } else {
                m.size()
            };
            let meta = Meta {
                mode: m.mode(),
                size,
                mtime: (m.mtime(), m.mtime_nsec()),
                owner: (m.uid(), m.gid()),
                nlink: m.nlink(),
            };
            out.insert(r.clone(), meta);
            if m.is_dir() {
                stack.push(r);
            }
        }
    }
    out
}

#[test]
fn stat_and_contents_match_the_kernel_view() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "web");
    let view = d.path().join("web");
    let ours = snapshot(&view);
    let kernel = snapshot(&c.proc_root());
    assert!(ours.len() >= 15, "only {} entries listed", ours.len());
    assert_eq!(
        ours, kernel,
        "mode/size/mtime/uid/gid/nlink differ from /proc/<pid>/root"
    );
    for (rel, meta) in &ours {
        if meta.mode & libc::S_IFMT == libc::S_IFREG {
            assert_eq!(
                fs::read(view.join(rel)).unwrap(),
                fs::read(c.proc_root().join(rel)).unwrap(),
                "content of {}",
                rel.display()
            );
        }
    }
    assert_eq!(fs::metadata(view.join("etc/app.conf")).unwrap().nlink(), 2);
    // The mount root lists exactly the served container (and `.pid`, for any process).
    assert_eq!(
        d.names(),
        vec![".diff".to_string(), ".pid".to_string(), "web".to_string()]
    );
}

#[test]
fn xattrs_match_getfattr() {
    let c = FakeContainer::start(basic_tree, "");
    let r = c.root().display().to_string();
    let out = sh(&format!(
        "setfattr -n user.color -v blue {r}/etc/app.conf && setfattr -n user.dir -v yes {r}/etc"
    ));
    assert!(
        out.status.success(),
        "setfattr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Off by default: the kernel is told xattrs are not supported.
    let d = serve(&c, "x");
    let out = sh(&format!(
        "getfattr -n user.color {}/x/etc/app.conf",
        d.path().display()
    ));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{out:?}"
    );
    drop(d);
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--xattrs",
        "--container",
        &format!("x={}", c.pid()),
    ]);
    let dump = |p: &Path| {
        stdout(&sh(&format!(
            "cd {} && getfattr -d -m - etc etc/app.conf etc/localtime 2>&1",
            p.display()
        )))
    };
    let ours = dump(&d.path().join("x"));
    assert!(
        ours.contains("user.color=\"blue\"") && ours.contains("user.dir=\"yes\""),
        "{ours}"
    );
    assert_eq!(ours, dump(&c.proc_root()));
}

#[test]
fn odd_names_are_served() {
    let c = FakeContainer::start(
        |root| {
            use std::os::unix::ffi::OsStrExt;
            let long = "n".repeat(255);
            fs::write(root.join(&long), "long").unwrap();
            fs::write(root.join("new\nline"), "nl").unwrap();
            fs::write(
                root.join(std::ffi::OsStr::from_bytes(b"bad-\xff-utf8")),
                "raw",
            )
            .unwrap();
        },
        "",
    );
    let d = serve(&c, "names");
    let v = d.path().join("names");
    assert_eq!(fs::read_to_string(v.join("n".repeat(255))).unwrap(), "long");
    assert_eq!(fs::read_to_string(v.join("new\nline")).unwrap(), "nl");
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        fs::read_to_string(v.join(std::ffi::OsStr::from_bytes(b"bad-\xff-utf8"))).unwrap(),
        "raw"
    );
}

#[test]
fn passthrough_mode_serves_the_same_bytes_and_appends() {
    let c = FakeContainer::start(basic_tree, "");
    let arg = format!("pt={}", c.pid());
    let d = Daemon::start_with(
        &["--runtime", "none", "--passthrough", "--container", &arg],
        |cmd| {
            cmd.env("RUST_LOG", "ctrfsd=debug");
        },
    );
    let v = d.path().join("pt");
    for f in ["a/b/c/deep", "etc/app.conf", "usr/share/zoneinfo/UTC"] {
        assert_eq!(
            fs::read(v.join(f)).unwrap(),
            fs::read(c.root().join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(
        d.log_text().contains(": passthrough fh"),
        "kernel passthrough was not used:\n{}",
        d.log_text()
    );
    let log = v.join("var/log/app/app.log");
    let mut f = fs::File::open(&log).unwrap();
    let mut seen = String::new();
    f.read_to_string(&mut seen).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(c.root().join("var/log/app/app.log"))
        .unwrap()
        .write_all(b"late line\n")
        .unwrap();
    let took = wait_until(Duration::from_secs(3), || {
        f.read_to_string(&mut seen).unwrap();
        seen.contains("late line")
    })
    .expect("appended line never seen with passthrough");
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
}
