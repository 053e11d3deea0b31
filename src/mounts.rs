//! A container's mount table, from `/proc/<pid>/mountinfo`: which mounts ctrfsd serves.
//!
//! - **Served**: local filesystems (overlay, ext4, xfs, btrfs, tmpfs, ...).
//! - **Pseudo**: proc, sysfs, cgroup, ...: shown as empty directories (walks must end).
//! - **Unserved**: network and FUSE filesystems, any type not known to be local, every
//!   overlay below the container's root (a container can stack its own overlay on a FUSE mount
//!   it runs, and name that layer so mountinfo does not show it), and a root overlay with any
//!   layer on an unserved mount: shown as empty placeholder directories and never touched, not even with `statx` on the mountpoint.
//!   A hung NFS server or FUSE daemon inside a container would block any call into it, and a
//!   host process waiting on ctrfsd cannot be interrupted (DESIGN.md invariant 4). Knowing
//!   the mountpoints in advance is what lets ctrfsd stay clear of them.
//!
//! The table alone cannot keep ctrfsd clear of a mount made after it was read: the file system
//! code never crosses a mountpoint it has not classified by mount id (`fs::Core::child_at`),
//! and re-reads the table when an unknown mount id shows up (rate-limited), and at most every
//! [`REFRESH`] for the mountpoint-by-path shortcut.

use std::collections::HashMap;
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

/// The mount id of the file `fd` is open on, from `/proc/self/fdinfo` (proc(5): `mnt_id:`),
/// which the file's filesystem is not asked for (a `statx` of a FUSE root would wait on its
/// server).
///
/// # Errors
///
/// What reading `/proc/self/fdinfo/<fd>` answers (EMFILE, ...), EIO if it names no mount id.
pub fn mount_id_of(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EIO))
}

/// How the mount holding `root` (a process's root fd, opened `O_PATH`) is shown, when the
/// process's own mount table does not list it: a process chrooted into a directory *below* a
/// mount sees no entry for that mount (the kernel skips mounts outside the process's root).
/// Asked of the kernel's mount structures, never of the filesystem: the mount's unique id
/// from `statx(AT_STATX_DONT_SYNC)` ([`crate::sys::mnt_id_unique`]), its type from
/// `statmount(2)` in `pid`'s mount namespace ([`crate::sys::statmount_fs_type`]).
///
/// An overlay found this way is [`MountKind::Unserved`]: its layer paths are the words of
/// whoever mounted it, resolved against a root that is not the process's, so nothing here can
/// tell the runtime's overlay from one the container stacked on its own FUSE mount.
///
/// # Errors
///
/// A reason (for the log and `user.ctrfsd.unavailable`) when the mount cannot be classified
/// (the kernel is older than 6.11, the namespace or mount is gone): the caller must then not
/// touch the root.
pub fn classify_unlisted(
    root: std::os::fd::BorrowedFd<'_>,
    pid: i32,
) -> Result<(MountKind, String), String> {
    let id = crate::sys::mnt_id_unique(root).map_err(|e| format!("its mount id: {e}"))?;
    let mut first = None;
    for dir in crate::pidfd::proc_dirs(pid) {
        let ns = match std::fs::File::open(dir.join("ns/mnt")) {
            Ok(ns) => ns,
            Err(e) => {
                first.get_or_insert(e);
                continue;
            }
        };
        use std::os::fd::AsFd;
        let ns_id = crate::sys::mnt_ns_id(ns.as_fd())
            .map_err(|e| format!("its mount namespace's id: {e}"))?;
        let fstype = crate::sys::statmount_fs_type(id, ns_id)
            .map_err(|e| format!("statmount of mount {id}: {e}"))?;
        let kind = match classify(&fstype) {
            MountKind::Served if fstype == "overlay" => MountKind::Unserved,
            k => k,
        };
        return Ok((kind, fstype));
    }
    Err(match first {
        Some(e) => format!("its mount namespace: {e}"),
        None => "its mount namespace: no such process".into(),
    })
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
    /// Overlay mount id -> its super block's device (`major:minor`, as mountinfo shows it).
    overlay_devs: HashMap<u64, Vec<u8>>,
}

impl MountTable {
    /// A table of no mounts.
    pub fn empty() -> MountTable {
        MountTable {
            by_id: HashMap::new(),
            unserved: HashMap::new(),
            read_at: Instant::now(),
            points: Vec::new(),
            overlay_devs: HashMap::new(),
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
    /// What reading `/proc/<pid>/mountinfo` answered (ENOENT, ESRCH, ...) when no thread's
    /// mount table can be read: the process may be gone or on its way out. Read through a live
    /// thread (`/proc/<pid>/task/<tid>/mountinfo`) if the main thread has exited.
    pub fn read(pid: i32) -> std::io::Result<MountTable> {
        let mut first = None;
        for dir in crate::pidfd::proc_dirs(pid) {
            match std::fs::read(dir.join("mountinfo")) {
                Ok(text) => return Ok(MountTable::parse(&text)),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH)))
    }

    /// An fd on the `mountinfo` of `pid`'s mount namespace, for [`changed`]: opened before the
    /// first table is read, so no mount or unmount after that read goes unnoticed.
    ///
    /// # Errors
    ///
    /// The first `open` error over `pid`'s `/proc` directories (`ENOENT` when the process has
    /// exited, `EACCES`), or `ESRCH` when there is no directory to try.
    pub fn open_events(pid: i32) -> std::io::Result<std::fs::File> {
        let mut first = None;
        for dir in crate::pidfd::proc_dirs(pid) {
            match std::fs::File::open(dir.join("mountinfo")) {
                Ok(f) => return Ok(f),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH)))
    }

    /// The table from the text of a `mountinfo` file (proc(5)). An overlay is served only if
    /// each of its layers is on a served mount (`overlay_kinds`).
    pub fn parse(text: &[u8]) -> MountTable {
        let mounts: Vec<Entry> = text
            .split(|&b| b == b'\n')
            .filter_map(Entry::parse)
            .collect();
        let kinds = overlay_kinds(&mounts, false);
        let mut t = MountTable::empty();
        for (m, kind) in mounts.iter().zip(kinds) {
            if m.fstype == "overlay" {
                t.overlay_devs.insert(m.id, m.dev.clone());
            }
            // Several mounts may share an id only in a malformed file: keep the worst kind.
            let slot = t.by_id.entry(m.id).or_insert(kind);
            if kind != MountKind::Served {
                *slot = kind;
            }
            if m.point != b"/" {
                t.points.push(m.point.clone());
            }
            if kind == MountKind::Unserved {
                let rel = m.point.strip_prefix(b"/").unwrap_or(&m.point);
                if !rel.is_empty() {
                    t.unserved.insert(rel.to_vec(), m.id);
                }
            }
        }
        t
    }

    /// How the mount `mnt_id` is shown; `None` if it is not in the table.
    pub fn kind(&self, mnt_id: u64) -> Option<MountKind> {
        self.by_id.get(&mnt_id).copied()
    }

    /// The super block device (`major:minor`) of mount `mnt_id` if it is an overlay: what
    /// [`crate::origin::root_overlay_kind`] looks for in the runtime's mount namespace.
    pub fn overlay_dev(&self, mnt_id: u64) -> Option<&[u8]> {
        self.overlay_devs.get(&mnt_id).map(Vec::as_slice)
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

/// Whether the mount namespace behind `events` ([`MountTable::open_events`]) mounted or
/// unmounted anything since the last call (the kernel's `mountinfo` poll event, which each call
/// consumes). A table read after a call that returned true knows every mount made before it.
///
/// Mount ids are reused once a mount is gone, so a table read before a change can give a new
/// mount (a FUSE mount the container just made) the kind of the one that had its id before
/// (a tmpfs it just unmounted): the id alone is trusted only while nothing changed.
pub fn changed(events: &std::fs::File) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(events, PollFlags::PRI)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // A failed poll is taken as a change: the table is then re-read.
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(PollFlags::PRI | PollFlags::ERR),
        Err(_) => true,
    }
}

/// The filesystem type (`fuse.ctrfsd`, `tmpfs`, ...) of the topmost mount at `point` in a
/// `mountinfo` text (proc(5)), `point` absolute and unescaped; `None` if nothing is mounted
/// there. Reads only the text: the mount itself is never asked anything.
pub fn fstype_at(mountinfo: &[u8], point: &[u8]) -> Option<String> {
    mountinfo
        .split(|&b| b == b'\n')
        .rev()
        .filter_map(Entry::parse)
        .find(|m| m.point == point)
        .map(|m| m.fstype)
}

/// How the overlay whose super block is device `dev` (`major:minor`) is shown, judged in the
/// `mountinfo` text of a namespace where it was mounted by whoever made it (`text`): by its
/// layers, wherever it is mounted; `None` if no overlay there has that device.
pub fn overlay_kind_in(text: &[u8], dev: &[u8]) -> Option<MountKind> {
    let mounts: Vec<Entry> = text
        .split(|&b| b == b'\n')
        .filter_map(Entry::parse)
        .collect();
    let kinds = overlay_kinds(&mounts, true);
    let mut found = None;
    for (m, kind) in mounts.iter().zip(kinds) {
        if m.fstype == "overlay" && m.dev == dev {
            // The same super block mounted twice: the worst judgement.
            found = Some(match found {
                Some(MountKind::Served) | None => kind,
                Some(k) => k,
            });
        }
    }
    found
}

/// One line of `mountinfo`: what the classification needs.
struct Entry {
    id: u64,
    /// The super block's device, `major:minor`.
    dev: Vec<u8>,
    /// The mount source (a device, a file for a file-backed filesystem, anything for others).
    source: Vec<u8>,
    /// Unescaped, as the container's process sees it (from its root).
    point: Vec<u8>,
    fstype: String,
    /// The super-block options, in order, unsplit values (`lowerdir=a:b`).
    options: Vec<Vec<u8>>,
}

impl Entry {
    fn parse(line: &[u8]) -> Option<Entry> {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let sep = fields.iter().position(|f| *f == b"-")?;
        let id = std::str::from_utf8(fields.first()?).ok()?.parse().ok()?;
        let point = unescape(fields.get(4)?);
        let fstype = String::from_utf8_lossy(fields.get(sep + 1)?).into_owned();
        let options = fields
            .get(sep + 3)
            .map(|o| o.split(|&b| b == b',').map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        Some(Entry {
            id,
            dev: fields.get(2)?.to_vec(),
            source: unescape(fields.get(sep + 2)?),
            point,
            fstype,
            options,
        })
    }

    /// The layer paths of an overlay (`lowerdir`, `upperdir`, `workdir`, `lowerdir+`,
    /// `datadir+`), unescaped; `None` if it names none (then nothing is known about them).
    fn layers(&self) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for opt in &self.options {
            let Some(eq) = opt.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (&opt[..eq], &opt[eq + 1..]);
            match key {
                // `:` inside a layer path is shown escaped (`\072`), so it splits layers;
                // `::` marks where data-only layers start.
                b"lowerdir" => out.extend(
                    value
                        .split(|&b| b == b':')
                        .filter(|p| !p.is_empty())
                        .map(unescape),
                ),
                b"upperdir" | b"workdir" | b"lowerdir+" | b"datadir+" => out.push(unescape(value)),
                _ => {}
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Undoes `mountinfo`'s octal escapes (`\040` for a space, ...).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let oct = s
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (s[i], oct) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |a, c| a.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Each mount's kind by its type, then overlays demoted to [`MountKind::Unserved`] while any
/// of their layers lies on a mount that is not served (until nothing changes: an overlay may
/// sit on an overlay). A layer is found by the longest mountpoint that prefixes its path, as
/// the container sees paths; a layer path that is not absolute, or an overlay whose layers
/// are not shown, makes it unserved. The container's own root overlay names host paths, which
/// fall on its root mount itself: served, unless the container mounted something unserved
/// over such a path (then it hides only itself).
///
/// With `made_outside` (the table of the namespace a runtime mounted the overlay in, where
/// layer paths are its own words), every overlay is judged by its layers, wherever mounted.
fn overlay_kinds(mounts: &[Entry], made_outside: bool) -> Vec<MountKind> {
    let mut kinds: Vec<MountKind> = mounts
        .iter()
        .map(|m| match classify(&m.fstype) {
            MountKind::Served if !crate::origin::backing_is_local(&m.fstype, &m.dev, &m.source) => {
                MountKind::Unserved
            }
            k => k,
        })
        .collect();
    let layers: Vec<Option<Vec<Vec<u8>>>> = mounts
        .iter()
        .map(|m| (m.fstype == "overlay").then(|| m.layers()).flatten())
        .collect();
    for _ in 0..=mounts.len() {
        let mut changed = false;
        for i in 0..mounts.len() {
            if kinds[i] != MountKind::Served || mounts[i].fstype != "overlay" {
                continue;
            }
            // An overlay below the root was mounted inside the container, and its layer paths
            // are the container's own words: a symlink (`lowerdir=/mnt/lnk`) or a lazily
            // detached FUSE mount leaves no trace of the FUSE layer in mountinfo. Only the
            // root's overlay, which the runtime made, is judged by its layers.
            if mounts[i].point != b"/" && !made_outside {
                kinds[i] = MountKind::Unserved;
                changed = true;
                continue;
            }
            let served = match &layers[i] {
                None => false,
                Some(paths) => paths.iter().all(|p| {
                    p.starts_with(b"/")
                        && holder(mounts, p).is_none_or(|j| kinds[j] == MountKind::Served)
                }),
            };
            if !served {
                kinds[i] = MountKind::Unserved;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    kinds
}

/// The mount whose mountpoint is the longest prefix (by whole components) of `path`; the last
/// listed among equals, which is the one on top.
fn holder(mounts: &[Entry], path: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, m) in mounts.iter().enumerate() {
        let p = m.point.as_slice();
        let under =
            p == b"/" || (path.starts_with(p) && matches!(path.get(p.len()), None | Some(b'/')));
        if under && best.is_none_or(|(len, _)| p.len() >= len) {
            best = Some((p.len(), i));
        }
    }
    best.map(|(_, i)| i)
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

    #[test]
    fn overlays_on_unserved_layers_are_unserved() {
        let text = b"\
1 0 0:1 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
2 1 0:2 / /proc rw - proc proc rw
3 1 0:3 / /mnt/f rw - fuse.fusehang fusehang rw
4 1 0:4 / /ovl ro - overlay overlay ro,lowerdir=/mnt/f:/l2
5 1 0:5 / /ovl2 ro - overlay overlay ro,lowerdir=/ovl/x\\072y:/l2
6 1 0:6 / /fine ro - overlay overlay ro,lowerdir=/a\\040b::/c,upperdir=/u,workdir=/w
7 1 0:7 / /rel ro - overlay overlay ro,lowerdir=rel:/l2
8 1 0:8 / /mnt/f2 rw - fuse.x x rw
9 1 0:9 / /up ro - overlay overlay ro,lowerdir=/a,upperdir=/mnt/f2/u,workdir=/mnt/f2/w
10 1 0:10 / /bare ro - overlay overlay ro
";
        let t = MountTable::parse(text);
        assert_eq!(t.kind(1), Some(MountKind::Served));
        assert_eq!(t.kind(2), Some(MountKind::Pseudo));
        // Every overlay below the root is unserved, even one whose layers look local (`/fine`):
        // a container can name a layer through a symlink, or detach its FUSE mount lazily.
        for id in [3, 4, 5, 6, 7, 9, 10] {
            assert_eq!(t.kind(id), Some(MountKind::Unserved), "mount {id}");
        }
        // The root's overlay, with layers the container cannot see, is served.
        let root_only = MountTable::parse(
            b"1 0 0:1 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work\n",
        );
        assert_eq!(root_only.kind(1), Some(MountKind::Served));
        assert_eq!(t.unserved_at(b"ovl"), Some(4));
        assert_eq!(unescape(b"a\\040b\\072c"), b"a b:c");
        let text = b"1 0 0:1 / / rw - ext4 /dev/vda rw\n\
            2 1 0:2 / /c\\040d rw - tmpfs tmpfs rw\n\
            3 2 0:3 / /c\\040d rw - fuse.ctrfsd ctrfsd rw\n";
        assert_eq!(fstype_at(text, b"/c d").as_deref(), Some("fuse.ctrfsd"));
        assert_eq!(fstype_at(text, b"/").as_deref(), Some("ext4"));
        assert_eq!(fstype_at(text, b"/c"), None);
    }
}
