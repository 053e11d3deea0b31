//! Shared test helpers, one copy each: waiting on conditions and the latency bounds tests
//! hold ctrfsd to (here); a real "container" (a process in its own mount namespace, chrooted
//! into a temporary root) and the tree most tests serve in it ([`fake`]); a real ctrfsd daemon
//! mounted on a temporary directory and what it reports ([`daemon`]); test images built from
//! local files ([`images`]); Docker containers removed on drop ([`docker`]); pods made as the
//! kubelet makes them, through containerd's CRI plugin ([`cri`]).
//!
//! Nothing here skips: a missing prerequisite (root, /dev/fuse, busybox) fails the test with
//! a message saying what to install; `scripts/test.sh` installs everything.

#![allow(dead_code)]

mod cri;
mod daemon;
mod docker;
mod fake;
mod images;
mod marker;

// Every test binary compiles all of `common` and uses part of it.
#[allow(unused_imports)]
pub use {cri::*, daemon::*, docker::*, fake::*, images::*, marker::*};

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Registry changes reach the mount within this: a container started, renamed, stopped or
/// removed in Docker, a started container's path moving to the live view (issues #2 and #5:
/// "within 1 s").
pub const WITHIN: Duration = Duration::from_secs(1);

/// The bound for runtimes reached through their own API services (Podman, containerd):
/// registration is event-driven there too, and a resync (30 s by default) never explains a
/// pass within this.
pub const WITHIN_API: Duration = Duration::from_secs(3);

pub const BUSYBOX: &str = "/bin/busybox";

/// The unprivileged user rootless Podman runs as in the tests (scripts/setup.sh creates it).
pub const ROOTLESS_USER: &str = "ctrfsd-test";

/// The uid of [`ROOTLESS_USER`].
pub fn rootless_uid() -> u32 {
    let out = sh(&format!("id -u {ROOTLESS_USER}"));
    stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {ROOTLESS_USER}: run scripts/setup.sh ({out:?})"))
}

/// `cmd` as a shell command line that runs it as [`ROOTLESS_USER`], in that user's own
/// environment (home, `XDG_RUNTIME_DIR`), as rootless Podman expects.
pub fn as_user(cmd: &str) -> String {
    let (u, user) = (rootless_uid(), ROOTLESS_USER);
    format!(
        "cd /home/{user} && setpriv --reuid={u} --regid={u} --init-groups env -i HOME=/home/{user} \
         USER={user} XDG_RUNTIME_DIR=/run/user/{u} PATH=/usr/bin:/bin {cmd}"
    )
}

pub fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "these tests mount FUSE and enter namespaces: run them as root (scripts/test.sh)"
    );
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static (scripts/test.sh does)"
    );
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns the time it took.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long until `cond` holds, failing the test (saying `what`) unless it does within
/// `limit`; it is polled for up to 3 s so a late answer is reported with its time.
pub fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let took = wait_until(limit.max(Duration::from_secs(3)), &mut cond)
        .unwrap_or_else(|| panic!("{what}: not seen through the mount within 3 s"));
    assert!(
        took <= limit,
        "{what}: took {took:?} (must be within {limit:?})"
    );
    took
}

/// Whether `cond` holds at every poll (each 20 ms) for `window`: for the few tests whose point
/// is that something does *not* happen. The window is the bound the positive case is held
/// to, so a pass means "not within the time it would have taken".
pub fn holds_for(window: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < window {
        if !cond() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Runs a shell command line, returning its output (never panics on a non-zero exit).
pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a shell command, failing the test unless it succeeds; its trimmed stdout.
pub fn sh_ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o).trim().to_string()
}

/// A unique, short token for names.
pub fn token() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The names in directory `dir`, sorted (none if it cannot be read).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
