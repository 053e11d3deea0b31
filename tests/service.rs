//! Running as a systemd service: the unit passes `systemd-analyze verify`, and the
//! `Type=notify` contract holds against a real `NOTIFY_SOCKET` listener: `READY=1` only once
//! the mount lists containers, `STOPPING=1` on SIGTERM, nothing when the start fails.

mod common;

use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A listener like systemd's: a datagram socket at a path, or at an abstract name.
struct Listener {
    sock: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    env: String,
    _dir: tempfile::TempDir,
}

impl Listener {
    fn at_path() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        Listener {
            sock,
            env: path.display().to_string(),
            _dir: dir,
        }
    }

    fn abstract_name() -> Listener {
        let name = format!("ctrfsd-test-notify-{}", token());
        let sock =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Listener {
            sock,
            env: format!("@{name}"),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The next message, waiting at most `limit`.
    fn recv(&self, limit: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// A message already queued, without waiting.
    fn pending(&self) -> Option<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let got = self.sock.recv(&mut buf).ok();
        self.sock.set_nonblocking(false).unwrap();
        got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// READY=1 arrives, and at that moment the fake container is already listed and served. The
/// daemon is spawned without waiting for its mount, so a READY sent too early is caught.
fn ready_then_stopping(listener: Listener) {
    let c = FakeContainer::start(|r| fs::write(r.join("hello"), "hi").unwrap(), "");
    let name = format!("svc{}", token());
    let arg = format!("{name}={}", c.pid());
    let mnt = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(bin())
        .args(["--runtime", "none", "--container", &arg])
        .arg(mnt.path())
        .env("NOTIFY_SOCKET", &listener.env)
        .stdin(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let msg = listener.recv(Duration::from_secs(20));
    // Looked at right after READY arrived, without waiting: that is the promise.
    let listed = listing(mnt.path());
    let hello = fs::read_to_string(mnt.path().join(&name).join("hello"));
    let extra = listener.pending();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    );
    let st = child.wait().unwrap();
    let log = fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "{msg:?}; log:\n{log}"
    );
    assert!(listed.contains(&name), "{listed:?}");
    assert_eq!(hello.unwrap(), "hi");
    assert_eq!(extra, None, "more than one message before the stop");
    assert!(st.success(), "{st:?}; log:\n{log}");
    let msg = listener.recv(Duration::from_secs(5));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.lines().any(|l| l == "STOPPING=1")),
        "{msg:?}"
    );
    assert!(!is_mounted(mnt.path()));
}

#[test]
fn ready_only_once_the_mount_lists_containers_then_stopping() {
    ready_then_stopping(Listener::at_path());
}

#[test]
fn abstract_notify_socket() {
    ready_then_stopping(Listener::abstract_name());
}

#[test]
fn no_ready_when_the_mountpoint_is_busy_ready_after_cleaning_a_dead_one() {
    let c = FakeContainer::start(|_| {}, "");
    let name = format!("svc{}", token());
    let arg = format!("{name}={}", c.pid());
    let mut first = Daemon::start(&["--runtime", "none", "--container", &arg]);
    let mnt = first.path().to_path_buf();
    // A live ctrfsd mount is refused (exit 5) and the service manager hears nothing.
    let listener = Listener::at_path();
    let st = Command::new(bin())
        .args(["--runtime", "none"])
        .arg(&mnt)
        .env("NOTIFY_SOCKET", &listener.env)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(5));
    // The process has exited: anything it sent is already queued.
    assert_eq!(listener.pending(), None);
    // Killed without unmounting: the next start cleans the dead mount, then says READY.
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        fs::read_dir(&mnt).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );
    let mut second = Command::new(bin())
        .args(["--runtime", "none", "--container", &arg])
        .arg(&mnt)
        .env("NOTIFY_SOCKET", &listener.env)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let msg = listener.recv(Duration::from_secs(20));
    let listed = listing(&mnt);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&second),
        rustix::process::Signal::TERM,
    );
    let st = second.wait().unwrap();
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "{msg:?}"
    );
    assert!(listed.contains(&name), "{listed:?}");
    assert!(st.success(), "{st:?}");
    assert!(!is_mounted(&mnt));
}

/// `systemd-analyze verify` on the shipped unit, with ExecStart pointed at the binary under
/// test (the unit names /usr/bin/ctrfsd, which the package test checks installed). Warnings
/// count as failures: verify exits 0 on an unknown key.
#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/ctrfsd.service");
    let text = fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/ctrfsd "), "{text}");
    for forbidden in [
        "PrivateMounts",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "MountFlags",
        "TemporaryFileSystem",
    ] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(&format!("{forbidden}="))),
            "{forbidden}= would hide the mount from the host"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ctrfsd.service");
    fs::write(&copy, text.replace("/usr/bin/ctrfsd", bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd; scripts/setup.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

/// With a runtime watched, READY=1 waits for its first full list: a Docker container running
/// before the start is already listed, under its name, when READY arrives.
#[test]
fn ready_waits_for_the_first_docker_list() {
    require_docker();
    let image = format!("ctrfsd-svc-{}", token());
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path(), &["data"], &["sleep"]);
    fs::write(root.path().join("data/hello"), "from docker").unwrap();
    docker_import(root.path(), &image);
    let name = format!("svcd{}", token());
    let _ctr = docker_run(&name, &image, &["/bin/sleep", "3600"]);
    let listener = Listener::at_path();
    let mnt = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(bin())
        .args(["--runtime", "docker"])
        .arg(mnt.path())
        .env("NOTIFY_SOCKET", &listener.env)
        .stdin(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let msg = listener.recv(Duration::from_secs(20));
    // Looked at right after READY arrived, without waiting: that is the promise.
    let listed = listing(mnt.path());
    let hello = fs::read_to_string(mnt.path().join(&name).join("data/hello"));
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    );
    let st = child.wait().unwrap();
    docker(&["rmi", "-f", &image]);
    let log = fs::read_to_string(log.path()).unwrap_or_default();
    let msg = msg.unwrap_or_default();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}; log:\n{log}");
    assert!(
        msg.lines()
            .any(|l| l.starts_with("STATUS=serving ") && !l.contains("not listed")),
        "{msg:?}"
    );
    assert!(listed.contains(&name), "{listed:?}; log:\n{log}");
    assert_eq!(hello.unwrap(), "from docker");
    assert!(st.success(), "{st:?}; log:\n{log}");
}

/// The exit codes of starts a restart cannot fix (a bad option, an unusable mountpoint, not
/// root, a live ctrfsd mount already there), each produced for real, are listed in the unit's
/// `RestartPreventExitStatus=`: with `Restart=on-failure` and `RestartSec=2s`, systemd's default
/// start limit (5 starts in 10 s) is never reached, so they would be retried every 2 s forever.
/// A runtime failure (1) and a failed mount (6) are still restarted.
#[test]
fn refused_starts_are_not_restarted() {
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/ctrfsd.service"),
    )
    .unwrap();
    assert!(unit.lines().any(|l| l == "Restart=on-failure"), "{unit}");
    let prevented: Vec<i32> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .flat_map(|v| v.split_whitespace().map(|c| c.parse::<i32>().unwrap()))
        .collect();
    let code = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    let mnt = tempfile::tempdir().unwrap();
    let live = Daemon::start(&["--runtime", "none"]);
    let missing = mnt.path().join("missing");
    let refusals = [
        (
            "bad option",
            code(Command::new(bin()).args(["--threads", "0"]).arg(mnt.path())),
        ),
        (
            "missing mountpoint",
            code(
                Command::new(bin())
                    .args(["--runtime", "none"])
                    .arg(&missing),
            ),
        ),
        (
            "not root",
            code(
                Command::new("setpriv")
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
                    .args(["--runtime", "none"])
                    .arg(mnt.path()),
            ),
        ),
        (
            "live mount",
            code(
                Command::new(bin())
                    .args(["--runtime", "none"])
                    .arg(live.path()),
            ),
        ),
    ];
    assert_eq!(
        refusals.map(|(_, c)| c),
        [Some(2), Some(3), Some(4), Some(5)]
    );
    for (what, c) in refusals {
        assert!(
            prevented.contains(&c.unwrap()),
            "{what}: exit {c:?} is not in RestartPreventExitStatus={prevented:?}"
        );
    }
    assert!(
        !prevented.contains(&1) && !prevented.contains(&6),
        "{prevented:?}"
    );
    assert!(!is_mounted(&missing));
}
