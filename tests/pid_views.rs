//! `.pid/<PID>`: a process that cannot be shown is "no such file", whatever the reason.
//!
//! Issue 12: a lookup of a process that exits while it is being opened, or whose mount table
//! can no longer be read, answered EIO or ESRCH ("No such process" is not a file error a
//! shell or `find` expects); ENOENT is right, as for a PID that never existed.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BUSYBOX, Daemon, wait_until};

/// The errno of looking `.pid/<pid>` up, or `None` if it resolves.
fn lookup(d: &Daemon, pid: u32) -> Option<i32> {
    let p = d.path().join(".pid").join(pid.to_string());
    fs::symlink_metadata(p)
        .err()
        .map(|e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn exiting_processes_are_no_such_file() {
    let d = Daemon::start(&["--runtime", "none"]);
    // Processes that exit at once: each lookup races the exit (running, exiting, zombie,
    // reaped). Whatever moment it hits, the answer is the view or ENOENT.
    let mut other = Vec::new();
    for _ in 0..300 {
        let mut child = Command::new(BUSYBOX)
            .arg("true")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn busybox true");
        let pid = child.id();
        if let Some(e) = lookup(&d, pid).filter(|e| *e != libc::ENOENT) {
            other.push((pid, e));
        }
        child.wait().expect("reap");
        // A view looked up while the process ran goes once its exit is noticed.
        let gone = wait_until(Duration::from_secs(5), || match lookup(&d, pid) {
            Some(libc::ENOENT) => true,
            Some(e) => {
                other.push((pid, e));
                true
            }
            None => false,
        });
        assert!(gone.is_some(), "reaped process {pid} still shown");
    }
    assert!(
        other.is_empty(),
        "lookups of exiting processes answered other errors than ENOENT: {other:?}; log:\n{}",
        d.log_text()
    );
}

#[test]
fn a_zombie_is_no_such_file() {
    let d = Daemon::start(&["--runtime", "none"]);
    let mut child = Command::new(BUSYBOX)
        .arg("true")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn busybox true");
    let pid = child.id();
    let stat = format!("/proc/{pid}/stat");
    let zombie = wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    });
    assert!(zombie.is_some(), "process {pid} did not become a zombie");
    assert_eq!(lookup(&d, pid), Some(libc::ENOENT));
    child.wait().expect("reap");
    // A PID that never named a process, and one out of range.
    assert_eq!(lookup(&d, pid), Some(libc::ENOENT));
    assert_eq!(lookup(&d, i32::MAX as u32), Some(libc::ENOENT));
    let e = fs::symlink_metadata(d.path().join(".pid/0")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn a_running_process_is_shown_until_it_exits() {
    let d = Daemon::start(&["--runtime", "none"]);
    let mut child = Command::new(BUSYBOX)
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn busybox sleep");
    let pid = child.id();
    assert_eq!(lookup(&d, pid), None, "running process {pid} not shown");
    assert!(d.path().join(format!(".pid/{pid}/etc")).is_dir());
    child.kill().expect("kill");
    child.wait().expect("reap");
    let gone = wait_until(Duration::from_secs(5), || {
        lookup(&d, pid) == Some(libc::ENOENT)
    });
    assert!(gone.is_some(), "exited process {pid} still shown");
}
