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

/// `STATX_MNT_ID_UNIQUE` (include/uapi/linux/stat.h, Linux 6.8): the 64-bit mount id that is
/// never reused, the one [`statmount_fs_type`] takes.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// The unique (never reused) id of the mount the file `fd` is open on, asking the file's
/// filesystem nothing: `statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID_UNIQUE)`.
///
/// Why no FUSE request is sent (Linux 6.18, fs/fuse/dir.c `fuse_update_get_attr`): the request
/// mask is cut to `STATX_BASIC_STATS | STATX_BTIME` (nothing is left of `STATX_MNT_ID_UNIQUE`),
/// and `if (!request_mask) sync = false; ... else if (flags & AT_STATX_DONT_SYNC) sync = false;`
/// so the attributes come from the inode, never from the server; fs/stat.c `vfs_statx_path`
/// fills the mount id from the `struct mount` itself.
///
/// # Errors
///
/// What `statx` answers: EACCES for a FUSE mount of another user namespace without
/// `allow_other` reaching us (fs/fuse/dir.c `fuse_getattr`); ENOSYS when the kernel (before
/// 6.8) did not fill the unique id.
pub fn mnt_id_unique(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: `statx` is plain old data; all-zero is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid open fd for the whole call; the path is a NUL-terminated empty
    // string (with AT_EMPTY_PATH, the fd itself); `st` is a live local the kernel fills.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            STATX_MNT_ID_UNIQUE,
            &mut st,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// The id of the mount namespace `ns` (an fd of `/proc/<pid>/ns/mnt`): `ioctl(NS_GET_MNTNS_ID)`,
/// ioctl_ns(2), Linux 6.11 (include/uapi/linux/nsfs.h).
///
/// # Errors
///
/// What the ioctl answers (EINVAL if `ns` is not a mount namespace, ENOTTY before 6.11).
pub fn mnt_ns_id(ns: BorrowedFd<'_>) -> io::Result<u64> {
    let mut id: u64 = 0;
    // SAFETY: `ns` is a valid open fd for the whole call; NS_GET_MNTNS_ID writes one `__u64`
    // through the pointer, which points to a live local of that type.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_MNTNS_ID, &mut id) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(id)
}

/// `statmount(2)`'s number (Linux 6.8; one number on every architecture but alpha and mips).
const SYS_STATMOUNT: libc::c_long = 457;
/// `STATMOUNT_FS_TYPE` (include/uapi/linux/mount.h).
const STATMOUNT_FS_TYPE: u64 = 0x20;
/// Where `struct statmount`'s string area (`char str[]`) starts: its fixed part is 512 bytes
/// (include/uapi/linux/mount.h; string fields are offsets into `str`).
const STATMOUNT_STR: usize = 512;
/// Offset of `struct statmount`'s `__u32 fs_type` field (after `size`, `mnt_opts`, `mask`,
/// `sb_dev_major`, `sb_dev_minor`, `sb_magic`, `sb_flags`).
const STATMOUNT_FS_TYPE_AT: usize = 36;
/// Offset of `struct statmount`'s `__u64 mask` field: what the kernel filled.
const STATMOUNT_MASK_AT: usize = 8;

/// `struct mnt_id_req`, version 1 (include/uapi/linux/mount.h, `MNT_ID_REQ_SIZE_VER1`).
#[repr(C)]
struct MntIdReq {
    size: u32,
    /// `mnt_ns_fd` since 6.18; 0 means "not given".
    spare: u32,
    mnt_id: u64,
    param: u64,
    mnt_ns_id: u64,
}

/// The filesystem type (`"fuse.sshfs"`, `"overlay"`, `"ext4"`, ...) of mount `mnt_id` (a unique
/// id, [`mnt_id_unique`]) in mount namespace `ns_id` ([`mnt_ns_id`]): `statmount(2)` with
/// `STATMOUNT_FS_TYPE`, which reads the kernel's `struct mount` and super block and asks the
/// filesystem nothing (fs/namespace.c `statmount_fs_type`: `sb->s_type->name`, without the
/// subtype mountinfo appends: `fuse`, not `fuse.sshfs`).
///
/// # Errors
///
/// What `statmount` answers: ENOENT when no such mount is in that namespace (gone), EPERM
/// without `CAP_SYS_ADMIN` over the namespace, ENOSYS before Linux 6.8; EIO if the kernel did
/// not fill the type.
pub fn statmount_fs_type(mnt_id: u64, ns_id: u64) -> io::Result<String> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id,
        param: STATMOUNT_FS_TYPE,
        mnt_ns_id: ns_id,
    };
    let mut buf = vec![0u64; 1024]; // 8 KiB, 8-aligned as `struct statmount` needs
    let len = buf.len() * 8;
    // SAFETY: `req` is a live `struct mnt_id_req` of the size it states; `buf` is a live,
    // 8-aligned buffer of `len` bytes the kernel writes at most `len` bytes into; flags 0.
    let rc = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            len,
            0u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let word = |at: usize, n: usize| bytes.get(at..at + n);
    let mask = word(STATMOUNT_MASK_AT, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0);
    let off = word(STATMOUNT_FS_TYPE_AT, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0) as usize;
    let eio = || io::Error::from_raw_os_error(libc::EIO);
    if mask & STATMOUNT_FS_TYPE == 0 {
        return Err(eio());
    }
    let s = bytes.get(STATMOUNT_STR + off..).ok_or_else(eio)?;
    let end = s.iter().position(|&b| b == 0).ok_or_else(eio)?;
    Ok(String::from_utf8_lossy(&s[..end]).into_owned())
}
