//! Turning `statx` results into FUSE attributes, and telling which filesystems are not proxied.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rustix::fs::{Statx, StatxFlags, StatxTimestamp};

/// What every `statx` here asks for: the basic stats, birth time and the mount id (which tells
/// mount boundaries, where pseudo filesystems are detected).
pub const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS
    .union(StatxFlags::BTIME)
    .union(StatxFlags::MNT_ID);

/// The `st_blksize` every directory reports: 1 MiB, glibc's largest getdents buffer (it sizes
/// it from a directory's `st_blksize`, between 32 KiB and 1 MiB: `opendir`'s `__alloc_dir`),
/// and the largest request the FUSE kernel sends (256 pages). The kernel sizes a listing's
/// request from the reader's buffer, so a directory of up to about 6,000 entries comes back
/// whole in the one readdirplus reply of the kernel's auto mode, and a huge one in plain
/// replies of about 25,000 names. Nothing reads a directory's block size but that buffer.
pub const DIR_BLKSIZE: u32 = 1 << 20;

/// The FUSE file type of an `st_mode`.
pub fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// What a deletion in a `.diff` view points at: the overlayfs whiteout (a character device
/// 0:0) is shown as a symlink to this text, so `ls -l` reads `motd -> (deleted)`.
pub const WHITEOUT_TARGET: &str = "(deleted)";

/// True for an overlayfs whiteout.
pub fn is_whiteout(st: &Statx) -> bool {
    u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFCHR
        && st.stx_rdev_major == 0
        && st.stx_rdev_minor == 0
}

/// True if `name` in directory `dir` is an overlayfs whiteout (not followed).
pub fn whiteout_at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr) -> bool {
    rustix::fs::statx(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW, STATX_MASK)
        .is_ok_and(|st| is_whiteout(&st))
}

/// Shows a whiteout as a symlink to [`WHITEOUT_TARGET`] (`.diff` views only).
pub fn whiteout_as_link(st: &mut Statx) {
    if is_whiteout(st) {
        st.stx_mode = (libc::S_IFLNK | 0o777) as u16;
        st.stx_size = WHITEOUT_TARGET.len() as u64;
        st.stx_blocks = 0;
    }
}

/// A device number in the kernel's 32-bit encoding (new_encode_dev), which FUSE carries.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The device a file lives on.
pub fn dev_of(st: &Statx) -> u32 {
    encode_dev(st.stx_dev_major, st.stx_dev_minor)
}

fn time(ts: StatxTimestamp) -> SystemTime {
    if ts.tv_sec >= 0 {
        UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.tv_sec.unsigned_abs())
            + Duration::from_nanos(ts.tv_nsec.into())
    }
}

/// Attributes as the host sees the file (host-view uids/gids), under ctrfsd's inode number.
/// The inode number is ours, not the file's: real numbers from different containers and
/// mounts would collide under one device and confuse `find`, `du` and `tar`.
pub fn to_attr(ino: u64, st: &Statx) -> FileAttr {
    let mode = u32::from(st.stx_mode);
    let rdev = encode_dev(st.stx_rdev_major, st.stx_rdev_minor);
    let btime = if st.stx_mask & StatxFlags::BTIME.bits() != 0 {
        time(st.stx_btime)
    } else {
        UNIX_EPOCH
    };
    FileAttr {
        ino: INodeNo(ino),
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: time(st.stx_atime),
        mtime: time(st.stx_mtime),
        ctime: time(st.stx_ctime),
        crtime: btime,
        kind: kind_of(mode),
        perm: (mode & 0o7777) as u16,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev,
        blksize: if kind_of(mode) == FileType::Directory {
            DIR_BLKSIZE
        } else {
            st.stx_blksize
        },
        flags: 0,
    }
}

/// A directory ctrfsd makes up (the mount root, a placeholder): root's, read-only, dated `time`.
pub fn synthetic_dir_attr(ino: u64, time: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: DIR_BLKSIZE,
        flags: 0,
    }
}

/// An empty directory standing for a mount that is never touched.
pub fn placeholder_attr(ino: u64) -> FileAttr {
    synthetic_dir_attr(ino, UNIX_EPOCH)
}
