//! The only module with `unsafe`: thin wrappers whose safety argument is local and stated.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers an owned fd (a pidfd) with the tokio reactor for readability.
pub fn async_readable(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns a valid open descriptor, closes it only on drop, and its
    // `as_raw_fd()` always returns that same descriptor; the `AsyncFd` takes ownership, so the
    // fd stays open and unchanged for the whole registration.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// Returns freed heap memory to the kernel (glibc keeps it otherwise, so RSS would not fall
/// after the kernel forgets a million inodes).
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions; glibc serialises it with the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
