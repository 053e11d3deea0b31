//! Turning `statx` results into FUSE attributes, and telling which filesystems are not proxied.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rustix::fs::{Statx, StatxFlags, StatxTimestamp};

/// What every `statx` here asks for: the basic stats, birth time and the mount id (which tells
/// mount boundaries, where pseudo filesystems are detected).
pub const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS
    .union(StatxFlags::BTIME)
    .union(StatxFlags::MNT_ID);

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
        blksize: st.stx_blksize,
        flags: 0,
    }
}

/// Pseudo filesystems that are never proxied: walking them never ends (proc, sysfs), reading
/// them shows the host kernel's state rather than the container's files, or touching them has
/// side effects (autofs mounts on access).
pub fn is_pseudo_fs(f_type: i64) -> bool {
    const PSEUDO: &[i64] = &[
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x1cd1,      // devpts
        0x1980_0202, // mqueue
        0xcafe_4a11, // bpf
        0x6265_6570, // configfs
        0x6165_676c, // pstore
        0x6573_5543, // fusectl
        0x4249_4e4d, // binfmt_misc
        0xf97c_ff8c, // selinuxfs
        0x4341_5d53, // smackfs
        0xde5e_81e4, // efivarfs
        0x6e73_6673, // nsfs
        0x0187,      // autofs
    ];
    PSEUDO.contains(&f_type)
}
