//! The only module with `unsafe`: thin wrappers whose safety argument is local and stated.

// The one module allowed `unsafe` (the crate root denies it everywhere else).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers an owned fd (a pidfd) with the tokio reactor for readability.
///
/// # Errors
///
/// The reactor's `io::Error`: outside a tokio runtime, or when `epoll_ctl` fails (`ENOMEM`,
/// `ENOSPC` past the epoll watch limit, `EPERM` for an fd epoll cannot watch).
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

/// The login name of `uid` (through NSS, so LDAP users are named too), if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    passwd(uid).map(|(name, _)| name)
}

/// The home directory of `uid` as the password database says (through NSS), if it has one.
pub fn user_home(uid: u32) -> Option<std::path::PathBuf> {
    passwd(uid).map(|(_, home)| home.into())
}

/// The login name and home directory of `uid`.
fn passwd(uid: u32) -> Option<(String, String)> {
    // SAFETY: `passwd` is plain old data (integers and pointers); all-zero is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory we own and outlive the call; `buf.len()` is its true
    // size; on success `out` points to `pw`, whose string fields point into `buf`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so `pw_name` and `pw_dir` are NUL-terminated strings
    // inside `buf`, which lives until the end of this function.
    let (name, dir) = unsafe {
        (
            std::ffi::CStr::from_ptr(pw.pw_name),
            std::ffi::CStr::from_ptr(pw.pw_dir),
        )
    };
    Some((
        name.to_string_lossy().into_owned(),
        dir.to_string_lossy().into_owned(),
    ))
}

/// The uid that owns the user namespace `ns` (an fd of `/proc/<pid>/ns/user`), as seen from
/// ctrfsd's own namespace: `ioctl(NS_GET_OWNER_UID)`, ioctl_ns(2).
///
/// # Errors
///
/// What the ioctl answers (EINVAL if `ns` is not a user namespace).
pub fn ns_owner_uid(ns: BorrowedFd<'_>) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: `ns` is a valid open fd for the whole call; NS_GET_OWNER_UID writes one `uid_t`
    // through the pointer, which points to a live local of that type.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_OWNER_UID, &mut uid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

/// The parent of the user namespace `ns`: `ioctl(NS_GET_PARENT)`, ioctl_ns(2).
///
/// # Errors
///
/// EPERM at ctrfsd's own user namespace (or one outside it), and what the ioctl answers.
pub fn ns_parent(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `ns` is a valid open fd for the whole call; NS_GET_PARENT takes no argument and
    // returns a new fd (O_CLOEXEC, per ioctl_ns(2)) or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_PARENT) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The gid of group `name` (through NSS, so LDAP groups are found too): `Ok(None)` if no such
/// group exists, `Err` if the lookup itself failed (the errno getgrnam_r returned).
///
/// # Errors
///
/// `EINVAL` when `name` contains a NUL byte; otherwise the errno `getgrnam_r` returned, other
/// than the "not found" ones (`ENOENT`, `ESRCH`, `EBADF`, `EPERM`), for example `ERANGE` for
/// an entry larger than the 16 KiB buffer or `EIO`.
pub fn group_gid(name: &str) -> io::Result<Option<u32>> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `group` is plain old data (an integer and pointers); all-zero is a valid value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: `cname` is NUL-terminated; every pointer is to memory we own that outlives the
    // call; `buf.len()` is its true size; on success `out` points to `gr`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    match rc {
        0 if out.is_null() => Ok(None),
        0 => Ok(Some(gr.gr_gid)),
        libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(None),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}
