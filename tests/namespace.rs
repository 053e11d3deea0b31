//! End-to-end tests without a container runtime: real processes in their own mount namespace
//! served with `--container NAME=PID`, through a real FUSE mount.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn serve(c: &FakeContainer, name: &str) -> Daemon {
    Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("{name}={}", c.pid()),
    ])
}

/// A small tree with the file kinds a container holds.
fn basic_tree(root: &Path) {
    for d in [
        "etc",
        "usr/share/zoneinfo",
        "usr/lib",
        "var/log/app",
        "proc",
        "data",
        "a/b/c",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
    symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    symlink("../share/zoneinfo/UTC", root.join("usr/lib/zone")).unwrap();
    symlink("zoneinfo/UTC", root.join("usr/share/tz")).unwrap();
    fs::write(root.join("var/log/app/app.log"), "start\nan ERROR here\n").unwrap();
    fs::write(root.join("etc/app.conf"), "key=value\n").unwrap();
    fs::set_permissions(root.join("etc/app.conf"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(root.join("etc/app.conf"), Some(1234), Some(5678)).unwrap();
    fs::hard_link(root.join("etc/app.conf"), root.join("a/hardlink")).unwrap();
    fs::write(root.join("a/b/c/deep"), vec![b'x'; 200_000]).unwrap();
}

/// What `stat` shows of one entry, compared between the mount and the kernel's view.
#[derive(Debug, PartialEq)]
struct Meta {
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    owner: (u32, u32),
    nlink: u64,
}

/// Every entry's metadata, keyed by relative path, read with lstat (links not followed).
fn snapshot(base: &Path) -> BTreeMap<PathBuf, Meta> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(base.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = fs::symlink_metadata(base.join(&r)).unwrap();
            let meta = Meta {
                mode: m.mode(),
                size: m.size(),
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
fn absolute_and_relative_links_resolve_inside_the_container() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "app");
    let view = d.path().join("app");
    assert_eq!(
        fs::read_to_string(view.join("etc/localtime")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    assert_eq!(
        fs::read_to_string(view.join("usr/lib/zone")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    assert_eq!(
        fs::read_to_string(view.join("usr/share/tz")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    // Answers name the container's file under the mount, so `ls -l` tells the truth; a link
    // that only walks down is answered unchanged.
    let zone = view.join("usr/share/zoneinfo/UTC");
    assert_eq!(fs::read_link(view.join("etc/localtime")).unwrap(), zone);
    assert_eq!(fs::read_link(view.join("usr/lib/zone")).unwrap(), zone);
    assert_eq!(
        fs::read_link(view.join("usr/share/tz")).unwrap(),
        Path::new("zoneinfo/UTC")
    );
}

/// A host-only file whose content must never come back through the mount.
struct HostMarker {
    path: PathBuf,
    content: String,
}

impl HostMarker {
    fn new() -> HostMarker {
        let t = token();
        let path = PathBuf::from(format!("/etc/ctrfsd-host-marker-{t}"));
        let content = format!("HOST-ONLY-{t}-SECRET");
        fs::write(&path, &content).unwrap();
        HostMarker { path, content }
    }
    fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[test]
fn links_planted_to_escape_never_reach_host_files() {
    let m = HostMarker::new();
    let n = m.name();
    let c = FakeContainer::start(
        |root| {
            basic_tree(root);
            plant_escape_links(root, &n);
        },
        "mount -t proc proc $R/proc",
    );
    // The kernel's own view follows the absolute link on the host: the problem ctrfsd fixes.
    assert_eq!(
        fs::read_to_string(c.proc_root().join("evil-abs")).unwrap(),
        m.content
    );

    let d = serve(&c, "hostile");
    let view = d.path().join("hostile");
    for link in [
        "evil-abs",
        "a/b/evil-rel",
        "evil-dotdot",
        "evil-magic",
        "evil-pid1",
        "chain2",
        "var/log/etc-dir/".to_string().as_str(),
        "rootlink/etc",
        "a/b/c/up/etc",
    ] {
        let p = view
            .join(link)
            .join(if link.ends_with('/') || link.ends_with("etc") {
                n.as_str()
            } else {
                ""
            });
        let got = fs::read_to_string(&p);
        assert!(
            !got.as_deref().unwrap_or("").contains(&m.content),
            "{} returned the host file",
            p.display()
        );
        assert!(
            got.is_err(),
            "{} should not exist in the container",
            p.display()
        );
    }
    // Every answer stays under /<mount>/hostile.
    for link in [
        "evil-abs",
        "evil-dotdot",
        "rootlink",
        "a/b/c/up",
        "var/log/etc-dir",
    ] {
        let t = fs::read_link(view.join(link)).unwrap();
        assert!(
            t.starts_with(&view),
            "{link} -> {} leaves the container",
            t.display()
        );
        assert!(
            !t.components().any(|c| c == std::path::Component::ParentDir),
            "{}",
            t.display()
        );
    }
    // `rootlink/etc` is the container's /etc.
    assert!(view.join("rootlink/etc/localtime").exists());
    // Host tools that follow links everywhere still see no host byte.
    let v = view.display();
    for cmd in [
        format!("grep -r '{}' {v}", m.content),
        format!("grep -R '{}' {v}", m.content),
        format!("find -L {v} -type f -exec cat {{}} + 2>/dev/null"),
        format!("tar -h -cf - -C {v} . 2>/dev/null"),
        format!(
            // In its own shell, so `timeout` runs all of it and grep searches only the copy.
            "sh -c 'd=$(mktemp -d) && cp -rL {v}/. \"$d\"/ 2>/dev/null; grep -r {} \"$d\"; test -f \"$d\"/etc/app.conf && echo COPIED; rm -rf \"$d\"'",
            m.content
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
            !String::from_utf8_lossy(&out.stdout).contains(&m.content),
            "`{cmd}` printed the host marker"
        );
    }
    // A link loop fails like one.
    let err = fs::read(view.join("loop")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
}

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
    // data written into the container's FIFO does not come out here, and nothing hangs.
    let mut w = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3<>{0}/fifo; echo FROM-CONTAINER >&3; sleep 3",
            c.root().display()
        ))
        .spawn()
        .unwrap();
    let out = sh(&format!(
        "timeout 2 dd if={}/fifo iflag=nonblock bs=64 count=1 2>/dev/null",
        view.display()
    ));
    assert!(!stdout(&out).contains("FROM-CONTAINER"));
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
fn walks_more_files_than_the_fd_limit() {
    const DIRS: usize = 30;
    const PER: usize = 100;
    let c = FakeContainer::start(
        |root| {
            for d in 0..DIRS {
                let dir = root.join(format!("logs/d{d}"));
                fs::create_dir_all(&dir).unwrap();
                for f in 0..PER {
                    fs::write(
                        dir.join(format!("f{f}.log")),
                        format!("line {f}\nERROR {d}/{f}\n"),
                    )
                    .unwrap();
                }
            }
            // One directory with more entries than one readdir reply holds.
            fs::create_dir_all(root.join("big")).unwrap();
            for i in 0..5000 {
                fs::write(root.join(format!("big/entry-with-a-long-name-{i:05}")), "").unwrap();
            }
        },
        "",
    );
    let pid = c.pid();
    let d = Daemon::start_with(
        &["--runtime", "none", "--container", &format!("many={pid}")],
        |cmd| limit_nofile(cmd, 1024),
    );
    let v = d.path().join("many");
    let out = sh(&format!(
        "grep -r -c ERROR {}/logs | grep -c ':1$'",
        v.display()
    ));
    assert_eq!(
        stdout(&out).trim(),
        (DIRS * PER).to_string(),
        "grep -r over {} files",
        DIRS * PER
    );
    let out = sh(&format!(
        "find {0}/logs {0}/big -type f | wc -l",
        v.display()
    ));
    assert_eq!(stdout(&out).trim(), (DIRS * PER + 5000).to_string());
    let mut names: Vec<String> = fs::read_dir(v.join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5000, "readdir paging lost or repeated entries");
    let limit = fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    assert!(
        limit
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limit}"
    );
    let fds = fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    assert!(fds < 1024, "ctrfsd holds {fds} fds");
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

#[test]
fn request_counters_on_the_mount_root() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "web");
    let count = |what: &str| -> u64 {
        let out = sh(&format!(
            "getfattr --only-values -n user.ctrfsd.requests {}",
            d.path().display()
        ));
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix(what)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    let (lookups, enoent) = (count("lookup"), count("error ENOENT"));
    for i in 0..7 {
        assert!(fs::metadata(d.path().join("web").join(format!("no-such-{i}"))).is_err());
    }
    assert!(count("lookup") >= lookups + 7, "{}", count("lookup"));
    assert_eq!(count("error ENOENT"), enoent + 7);
    assert!(count("requests") > count("lookup"));
    // Listed among the root's attributes; logged at exit.
    let out = sh(&format!("getfattr -d {}", d.path().display()));
    assert!(stdout(&out).contains("user.ctrfsd.requests="), "{out:?}");
    let mut d = d;
    assert!(d.stop().success());
    assert!(
        d.log_text().contains("requests answered: requests "),
        "{}",
        d.log_text()
    );
}
