//! Hostile containers: races and tricks aimed at making ctrfsd return host files.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// CVE-2018-15664 class: a process inside the container swaps a directory and a symlink to a
/// host directory with renameat2(RENAME_EXCHANGE) in a loop while the host reads through it.
#[test]
fn symlink_exchange_race_never_returns_host_bytes() {
    let t = token();
    let name = format!("ctrfsd-race-marker-{t}");
    let host_marker = PathBuf::from("/etc").join(&name);
    let secret = format!("HOST-SECRET-{t}");
    fs::write(&host_marker, &secret).unwrap();
    let c = FakeContainer::start(
        |root| {
            fs::create_dir(root.join("swap")).unwrap();
            fs::write(root.join("swap").join(&name), "container-side\n").unwrap();
            symlink("/etc", root.join("evil")).unwrap();
        },
        "",
    );
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("race={}", c.pid()),
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (a, b) = (c.root().join("swap"), c.root().join("evil"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &a,
                    rustix::fs::CWD,
                    &b,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                // Tens of thousands of swaps a second: fast enough to hit every window, slow
                // enough that some reads complete between two swaps on any machine.
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };
    let through_mount = d.path().join("race/swap").join(&name);
    let through_proc = c.proc_root().join("swap").join(&name);
    let (mut ok_reads, mut leaks, mut proc_leaks) = (0, 0, 0);
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        match fs::read_to_string(&through_mount) {
            Ok(s) if s.contains(&secret) => leaks += 1,
            Ok(_) => ok_reads += 1,
            Err(_) => {}
        }
        if let Ok(entries) = fs::read_dir(d.path().join("race/swap")) {
            for e in entries.flatten() {
                if let Ok(s) = fs::read_to_string(e.path()) {
                    leaks += usize::from(s.contains(&secret));
                }
            }
        }
        if fs::read_to_string(&through_proc).is_ok_and(|s| s.contains(&secret)) {
            proc_leaks += 1;
        }
    }
    let out = sh(&format!(
        "timeout 60 grep -r -l {secret} {}",
        d.path().join("race").display()
    ));
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let _ = fs::remove_file(&host_marker);
    eprintln!(
        "swaps {}, container reads {ok_reads}, /proc/<pid>/root leaks {proc_leaks}",
        swaps.load(Ordering::Relaxed)
    );
    assert_eq!(leaks, 0, "ctrfsd returned host bytes {leaks} times");
    assert!(
        stdout(&out).is_empty(),
        "grep -r found the host marker: {}",
        stdout(&out)
    );
    // The race was real: the kernel's own view leaked.
    assert!(
        proc_leaks > 0,
        "the swap never exposed the host through /proc/<pid>/root"
    );
    // Once it stops, the mount serves the container's file wherever the directory ended up.
    // (How many reads succeed during the race depends on timing: the kernel keeps whichever
    // inode a name resolved to for the 1 s entry TTL, so it is only reported.)
    let served = wait_until(Duration::from_secs(3), || {
        ["swap", "evil"].iter().any(|dir| {
            fs::read_to_string(d.path().join("race").join(dir).join(&name))
                .is_ok_and(|s| s == "container-side\n")
        })
    });
    assert!(
        served.is_some(),
        "the mount no longer serves the container's file after the race"
    );
}

/// Link chains resolve as in the container, up to the kernel's 40-link limit, then ELOOP.
#[test]
fn long_link_chains_and_path_max_targets() {
    let c = FakeContainer::start(
        |root| {
            fs::write(root.join("end"), "end of chain\n").unwrap();
            // chain-0 -> chain-1 -> ... -> chain-44 -> /end (absolute, so every hop is rewritten)
            for i in 0..45 {
                let next = if i == 44 {
                    "/end".to_string()
                } else {
                    format!("chain-{}", i + 1)
                };
                symlink(next, root.join(format!("chain-{i}"))).unwrap();
            }
            symlink(format!("/{}", "x".repeat(4094)), root.join("longest")).unwrap();
            symlink(
                format!("{}/etc/passwd", "../".repeat(1300)),
                root.join("many-dotdots"),
            )
            .unwrap();
        },
        "",
    );
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("chains={}", c.pid()),
    ]);
    let v = d.path().join("chains");
    // What the container itself sees: busybox cat, chrooted into the same root.
    let inside = |path: &str| {
        sh(&format!(
            "chroot {} /bin/busybox cat {path}",
            c.root().display()
        ))
    };
    for i in [44, 30, 5, 4, 3, 0] {
        let name = format!("chain-{i}");
        let ours = fs::read_to_string(v.join(&name));
        let theirs = inside(&format!("/{name}"));
        assert_eq!(
            ours.is_ok(),
            theirs.status.success(),
            "{name}: {ours:?} vs {theirs:?}"
        );
        if let Ok(s) = ours {
            assert_eq!(s, "end of chain\n");
        } else {
            assert_eq!(
                ours.unwrap_err().raw_os_error(),
                Some(libc::ELOOP),
                "{name}"
            );
        }
    }
    // A target of PATH_MAX length cannot get a prefix: a clear error, no hang, no host bytes.
    let e = fs::read_link(v.join("longest")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    // 1300 `..` stop at the container root, as inside it: the container has no /etc/passwd.
    assert!(fs::read_to_string(v.join("many-dotdots")).is_err());
    assert_eq!(
        fs::read_link(v.join("many-dotdots")).unwrap(),
        v.join("etc/passwd")
    );
}

/// A tree deeper than PATH_MAX and a directory of 50,000 entries are walked completely.
#[test]
fn deeper_than_path_max_and_wide_directories() {
    const DEPTH: usize = 2100; // "d/" x 2100 = 4200 bytes > PATH_MAX
    let c = FakeContainer::start(
        |root| {
            use rustix::fs::{Mode, OFlags, mkdirat, openat};
            let mut fd = openat(
                rustix::fs::CWD,
                root,
                OFlags::DIRECTORY | OFlags::PATH,
                Mode::empty(),
            )
            .unwrap();
            for _ in 0..DEPTH {
                mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
                fd = openat(&fd, "d", OFlags::DIRECTORY | OFlags::PATH, Mode::empty()).unwrap();
            }
            let wide = root.join("wide");
            fs::create_dir(&wide).unwrap();
            for i in 0..50_000 {
                fs::File::create(wide.join(format!("e{i:05}"))).unwrap();
            }
        },
        "",
    );
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("deep={}", c.pid()),
    ]);
    let v = d.path().join("deep");
    let out = sh(&format!("cd {} && find d -type d | wc -l", v.display()));
    assert_eq!(stdout(&out).trim(), DEPTH.to_string(), "{out:?}");
    let out = sh(&format!("ls -f {}/wide | grep -c '^e'", v.display()));
    assert_eq!(stdout(&out).trim(), "50000");
    let rss_kib: u64 = fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        rss_kib < 128 * 1024,
        "ctrfsd RSS {rss_kib} KiB after 52k entries"
    );
}

/// A FUSE filesystem that answers INIT and then never answers anything: a hung volume.
struct Hung;

static RELEASE_HUNG: AtomicBool = AtomicBool::new(false);

fn hang() {
    while !RELEASE_HUNG.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl fuser::Filesystem for Hung {
    fn lookup(
        &self,
        _r: &fuser::Request,
        _p: fuser::INodeNo,
        _n: &std::ffi::OsStr,
        reply: fuser::ReplyEntry,
    ) {
        hang();
        reply.error(fuser::Errno::EIO);
    }
    fn getattr(
        &self,
        _r: &fuser::Request,
        _i: fuser::INodeNo,
        _f: Option<fuser::FileHandle>,
        reply: fuser::ReplyAttr,
    ) {
        hang();
        reply.error(fuser::Errno::EIO);
    }
    fn statfs(&self, _r: &fuser::Request, _i: fuser::INodeNo, reply: fuser::ReplyStatfs) {
        hang();
        reply.error(fuser::Errno::EIO);
    }
    fn opendir(
        &self,
        _r: &fuser::Request,
        _i: fuser::INodeNo,
        _f: fuser::OpenFlags,
        reply: fuser::ReplyOpen,
    ) {
        hang();
        reply.error(fuser::Errno::EIO);
    }
}

/// A volume inside the container that never answers: nothing through the mount may hang, and
/// the rest of the container keeps being served.
#[test]
fn a_hung_volume_in_the_container_never_hangs_the_host() {
    let session: Arc<std::sync::Mutex<Option<fuser::BackgroundSession>>> = Default::default();
    let held = session.clone();
    let c = FakeContainer::start(
        move |root| {
            fs::write(root.join("ok"), "served\n").unwrap();
            fs::create_dir(root.join("vol")).unwrap();
            let mut cfg = fuser::Config::default();
            cfg.mount_options = vec![fuser::MountOption::FSName("hung".into())];
            let s = fuser::spawn_mount(Hung, root.join("vol"), &cfg).expect("mount the hung fs");
            *held.lock().unwrap() = Some(s);
        },
        "",
    );
    let d = Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("h={}", c.pid()),
    ]);
    let v = d.path().join("h");
    let start = Instant::now();
    for cmd in [
        format!("ls -la {}", v.display()),
        format!("stat {}/vol", v.display()),
        format!("ls -la {}/vol", v.display()),
        format!("grep -r served {}", v.display()),
        format!("find {} -xdev", v.display()),
        format!("df {}/vol", v.display()),
    ] {
        let out = sh(&format!("timeout 20 {cmd}"));
        assert_ne!(out.status.code(), Some(124), "`{cmd}` hung");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // The volume shows as an empty directory; the rest is served as usual.
    assert!(fs::metadata(v.join("vol")).unwrap().is_dir());
    assert_eq!(fs::read_dir(v.join("vol")).unwrap().count(), 0);
    assert_eq!(fs::read_to_string(v.join("ok")).unwrap(), "served\n");
    // The volume really hangs: the kernel's own view of it blocks a host `stat` so hard that
    // not even SIGKILL frees it, until the server answers. Released right after the check.
    let mut direct = std::process::Command::new("stat")
        .arg(c.proc_root().join("vol"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A sleep on purpose: "still blocked after 2 s" is what is checked (no state of the
    // blocked process says it better on every kernel).
    std::thread::sleep(Duration::from_secs(2));
    let blocked = direct.try_wait().unwrap().is_none();
    RELEASE_HUNG.store(true, Ordering::Relaxed);
    let _ = direct.wait();
    assert!(blocked, "the volume answered: this test proves nothing");
    let _ = rustix::mount::unmount(c.root().join("vol"), rustix::mount::UnmountFlags::DETACH);
    drop(session.lock().unwrap().take());
}

/// A container's PID recycled by another process: that process's files are never served under
/// the container's name.
#[test]
fn a_recycled_pid_never_serves_the_new_process() {
    let mut c = FakeContainer::start(|r| fs::write(r.join("who"), "container\n").unwrap(), "");
    let pid = c.pid();
    let d = Daemon::start(&["--runtime", "none", "--container", &format!("reuse={pid}")]);
    assert_eq!(
        fs::read_to_string(d.path().join("reuse/who")).unwrap(),
        "container\n"
    );
    c.kill();
    wait_until(Duration::from_secs(3), || !d.has("reuse")).expect("still listed after exit");
    // Hand the same PID to a new process with other files (the kernel gives out
    // ns_last_pid + 1 next; another fork may win the race, so try a few times).
    let mut reused = None;
    let mut root = Some(FakeContainer::prepare(|r| {
        fs::write(r.join("who"), "impostor\n").unwrap()
    }));
    for _ in 0..200 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let other = FakeContainer::start_in(root.take().unwrap(), "");
        if other.pid() == pid {
            reused = Some(other);
            break;
        }
        // Another fork won the PID: stop this one and try again with the same root.
        root = Some(other.into_root());
    }
    let other = reused.expect("could not get the PID reused");
    assert_eq!(
        fs::read_to_string(other.proc_root().join("who")).unwrap(),
        "impostor\n"
    );
    // Nothing to wait for: the point is that the name does not come back, for longer than an
    // exit takes to show (1 s).
    assert!(
        holds_for(Duration::from_millis(1500), || !d.has("reuse")),
        "the recycled PID is listed under the container's name"
    );
    assert!(fs::read_to_string(d.path().join("reuse/who")).is_err());
    let out = sh(&format!("grep -r impostor {}", d.path().display()));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}
