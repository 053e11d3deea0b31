//! A container's mount table, from `/proc/<pid>/mountinfo`: which mounts ctrfsd serves.
//!
//! - **Served**: local filesystems (overlay, ext4, xfs, btrfs, tmpfs, ...).
//! - **Pseudo**: proc, sysfs, cgroup, ...: shown as empty directories (walks must end).
//! - **Unserved**: network and FUSE filesystems, and any type not known to be local: shown as
//!   empty placeholder directories and never touched, not even with `statx` on the mountpoint.
//!   A hung NFS server or FUSE daemon inside a container would block any call into it, and a
//!   host process waiting on ctrfsd cannot be interrupted (DESIGN.md invariant 4). Knowing
//!   the mountpoints in advance is what lets ctrfsd stay clear of them.
//!
//! Mount ids here are the ones `statx(STATX_MNT_ID)` reports, so a node's mount is classified
//! without touching it. The table is re-read when an unknown mount id shows up (a container
//! mounted something) and at most every [`REFRESH`] for mountpoint checks.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// How stale the table may be for mountpoint-by-path checks.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How a mount inside a container is shown (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A local filesystem: served.
    Served,
    /// proc, sysfs, cgroup, ...: an empty directory, so walks end.
    Pseudo,
    /// Network, FUSE, or unknown: a placeholder, never touched.
    Unserved,
}

/// How a mount of filesystem type `fstype` (as in mountinfo) is shown: only types known to be
/// local are served.
pub fn classify(fstype: &str) -> MountKind {
    const SERVED: &[&str] = &[
        "overlay",
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "tmpfs",
        "ramfs",
        "f2fs",
        "zfs",
        "squashfs",
        "erofs",
        "vfat",
        "exfat",
        "ntfs3",
        "iso9660",
        "udf",
        "jfs",
        "bcachefs",
        "devtmpfs",
        "hugetlbfs",
        "shm",
    ];
    const PSEUDO: &[&str] = &[
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "devpts",
        "mqueue",
        "bpf",
        "configfs",
        "pstore",
        "fusectl",
        "binfmt_misc",
        "selinuxfs",
        "smackfs",
        "efivarfs",
        "nsfs",
        "autofs",
        "rpc_pipefs",
    ];
    if SERVED.contains(&fstype) {
        MountKind::Served
    } else if PSEUDO.contains(&fstype) {
        MountKind::Pseudo
    } else {
        MountKind::Unserved
    }
}

/// A container's mounts as of one read of its mountinfo.
#[derive(Debug)]
pub struct MountTable {
    /// Mount id -> how it is shown.
    by_id: HashMap<u64, MountKind>,
    /// Unserved mountpoints, as paths below the container root without the leading `/`,
    /// with their mount ids.
    unserved: HashMap<Vec<u8>, u64>,
    /// When it was read: re-read when older than [`REFRESH`].
    pub read_at: Instant,
    /// Every mountpoint but the root's, as paths below the container root with a leading
    /// `/`, in mount order: where a walk leaves the container's own filesystem (every entry
    /// shows the one `st_dev` of the FUSE mount, so `find -xdev` cannot tell).
    pub points: Vec<Vec<u8>>,
}

impl MountTable {
    /// A table of no mounts.
    pub fn empty() -> MountTable {
        MountTable {
            by_id: HashMap::new(),
            unserved: HashMap::new(),
            read_at: Instant::now(),
            points: Vec::new(),
        }
    }

    /// The table of a detached view: its one mount, served.
    pub fn single(mnt_id: u64) -> MountTable {
        let mut t = MountTable::empty();
        t.by_id.insert(mnt_id, MountKind::Served);
        t
    }

    /// Reads the table of `pid`. The caller checks afterwards that `pid` is still its process.
    ///
    /// # Errors
    ///
    /// An `io::Error` (EIO, the reason in its message) if `/proc/<pid>/mountinfo` cannot be
    /// read or parsed: the process may be gone or on its way out.
    /// Read through a live thread (`/proc/<pid>/task/<tid>/mountinfo`) if the main thread has
    /// exited.
    pub fn read(pid: i32) -> std::io::Result<MountTable> {
        let mut first = None;
        let infos = crate::instance::proc_dirs(pid).find_map(|dir| {
            match procfs::process::Process::new_with_root(dir).and_then(|p| p.mountinfo()) {
                Ok(infos) => Some(infos),
                Err(e) => {
                    first.get_or_insert(e);
                    None
                }
            }
        });
        let infos = infos.ok_or_else(|| {
            std::io::Error::other(first.map_or_else(|| "no such process".into(), |e| e.to_string()))
        })?;
        let mut t = MountTable::empty();
        for m in infos {
            let kind = classify(&m.fs_type);
            t.by_id.insert(m.mnt_id as u64, kind);
            let point = m.mount_point.as_os_str().as_bytes();
            if point != b"/" {
                t.points.push(point.to_vec());
            }
            if kind == MountKind::Unserved {
                let point = m.mount_point.as_os_str().as_bytes();
                let rel = point.strip_prefix(b"/").unwrap_or(point);
                if !rel.is_empty() {
                    t.unserved.insert(rel.to_vec(), m.mnt_id as u64);
                }
            }
        }
        Ok(t)
    }

    /// How the mount `mnt_id` is shown; `None` if it is not in the table.
    pub fn kind(&self, mnt_id: u64) -> Option<MountKind> {
        self.by_id.get(&mnt_id).copied()
    }

    /// True if any mount is never touched (mountpoints must then be checked by path).
    pub fn has_unserved(&self) -> bool {
        !self.unserved.is_empty()
    }

    /// The mount id of the unserved mount at `path` (below the root, no leading `/`).
    pub fn unserved_at(&self, path: &[u8]) -> Option<u64> {
        self.unserved.get(path).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify("overlay"), MountKind::Served);
        assert_eq!(classify("proc"), MountKind::Pseudo);
        for t in [
            "nfs4",
            "cifs",
            "fuse.sshfs",
            "fuseblk",
            "9p",
            "ceph",
            "something-new",
        ] {
            assert_eq!(classify(t), MountKind::Unserved, "{t}");
        }
    }
}
