//! Reaching a process's root and mount table through `/proc` when its main thread has exited
//! but other threads run on (a `main` that calls `pthread_exit`): `/proc/<pid>/root` and
//! `/proc/<pid>/mountinfo` then fail (the main thread no longer has a filesystem context),
//! while `/proc/<pid>/task/<tid>/root` of any live thread still works.
//!
//! Every path used here is below `/proc/<pid>/`, so the caller's pidfd check afterwards proves
//! it was that process's, exactly as for `/proc/<pid>/root` itself.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, open};

use crate::pidfd::proc_dirs;

/// An `O_PATH` directory fd of the root of process `pid`, through its main thread or, if that
/// has exited, through any live thread.
///
/// # Errors
///
/// What opening `/proc/<pid>/root` answered (ENOENT, ESRCH, EACCES...) if no thread's root
/// can be opened either.
pub(super) fn open_root(pid: i32) -> io::Result<OwnedFd> {
    let mut first = None;
    for dir in proc_dirs(pid) {
        match open(
            dir.join("root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => return Ok(fd),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.map_or_else(|| io::Error::from_raw_os_error(libc::ESRCH), Into::into))
}
