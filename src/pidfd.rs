//! Process pinning with pidfds: [`pin`] a PID so it cannot be confused with a later process of
//! the same number, ask whether that process [`has_exited`], or [`wait_exit`] for it.
//!
//! A pidfd refers to one process, not to a number: once it polls readable, the process has
//! exited, and whatever now holds its PID is someone else.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// Pins `pid` with a pidfd: from here on, the pidfd tells whether *this* process lives.
///
/// # Errors
///
/// ESRCH if `pid` is not positive or no such process exists; what `pidfd_open(2)` answers
/// otherwise (EMFILE, ...).
pub fn pin(pid: i32) -> io::Result<OwnedFd> {
    let esrch = || io::Error::from_raw_os_error(libc::ESRCH);
    if pid <= 0 {
        return Err(esrch()); // `Pid::from_raw` asserts on negative numbers
    }
    let pid = Pid::from_raw(pid).ok_or_else(esrch)?;
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

/// Pins thread `tid` of any process (`PIDFD_THREAD`, Linux 6.9+): the pidfd polls readable
/// when that thread exits. For `.pid/<tid>` views of threads that are not a process's main
/// thread (their PID cannot be pinned by [`pin`]).
///
/// # Errors
///
/// As [`pin`]; EINVAL on kernels without `PIDFD_THREAD`.
pub fn pin_thread(tid: i32) -> io::Result<OwnedFd> {
    let esrch = || io::Error::from_raw_os_error(libc::ESRCH);
    if tid <= 0 {
        return Err(esrch());
    }
    let tid = Pid::from_raw(tid).ok_or_else(esrch)?;
    // PIDFD_THREAD is O_EXCL (include/uapi/linux/pidfd.h); rustix has no name for it yet.
    let thread = PidfdFlags::from_bits_retain(libc::O_EXCL as _);
    Ok(pidfd_open(tid, thread)?)
}

/// True once the process behind `pidfd` has exited (the pidfd polls readable). Does not
/// block. A failing poll counts as exited: nothing it pins can be trusted then.
pub fn has_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

/// Waits until the process behind `pidfd` exits (true) or `cancel` is notified (false).
/// Runs on a tokio runtime; if the pidfd cannot be registered with its reactor, logs a
/// warning and returns false at once (the registry's re-lists still notice the exit).
pub async fn wait_exit(pidfd: Arc<OwnedFd>, cancel: &tokio::sync::Notify) -> bool {
    let afd = match pidfd.try_clone().and_then(crate::sys::async_readable) {
        Ok(afd) => afd,
        Err(e) => {
            log::warn!("cannot watch a pidfd: {e}");
            return false;
        }
    };
    tokio::select! {
        _ = afd.readable() => true,
        _ = cancel.notified() => false,
    }
}

/// The `/proc` directories through which process `pid` may be reached: its own, then each of
/// its threads' (`/proc/<pid>/task/<tid>`, main thread excluded).
pub fn proc_dirs(pid: i32) -> impl Iterator<Item = std::path::PathBuf> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(move |e| e.file_name().to_str() != Some(pid.to_string().as_str()))
        .map(|e| e.path());
    std::iter::once(std::path::PathBuf::from(format!("/proc/{pid}"))).chain(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pins_a_process_until_it_exits() {
        assert_eq!(pin(0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
        assert_eq!(pin(-3).unwrap_err().raw_os_error(), Some(libc::ESRCH));
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let fd = pin(child.id() as i32).unwrap();
        assert!(!has_exited(fd.as_fd()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(has_exited(fd.as_fd()));
    }
}
