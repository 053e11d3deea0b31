//! Where a mount's data comes from, asked of the kernel's mount and device structures and
//! never of the filesystem itself (a question to a filesystem whose data comes from a hung
//! FUSE server waits with it, DESIGN.md invariant 4).
//!
//! Two ways a container with `CAP_SYS_ADMIN` and `/dev/fuse` can make a mount of a served type
//! read from its own FUSE server:
//!
//! - **A disk filesystem backed by a file or a user-space device**: an erofs image that is a
//!   file on the FUSE mount (`mount -t erofs /mnt/f/img /x`, Linux 6.12+
//!   `CONFIG_EROFS_FS_BACKED_BY_FILE`), or any disk filesystem on a loop device over such a
//!   file, on a network block device (`nbd`, `rbd`) or on a user-space one (`ublk`).
//!   [`backing_is_local`] tells from the device number (`/sys/dev/block`), never from the
//!   filesystem.
//! - **A root overlay it made itself** on its FUSE mount, then `chroot`ed (or `pivot_root`ed)
//!   into: its mount table shows one overlay at `/`, as a runtime's root looks, and the layer
//!   paths it shows are the container's words (a layer reached through a link or a detached
//!   mount leaves no trace). [`root_overlay_kind`] judges a root overlay by the namespace
//!   that mounted it: a runtime mounts the root overlay outside the container, so its super
//!   block is also mounted in the host's mount namespace (Docker, containerd, Podman) or in
//!   the namespace of the container's runtime process (rootless Podman's `conmon`), where its
//!   layer paths are the runtime's words and are judged by that namespace's table. An overlay
//!   no such namespace shows was made inside the container: unserved.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use crate::mounts::MountKind;

/// Types that read their data from a block device (or, for erofs, a file).
const DISK: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "squashfs", "erofs", "vfat", "exfat", "ntfs3",
    "iso9660", "udf", "jfs", "bcachefs",
];

/// Types whose device number is anonymous by design (not their block device): judged by the
/// device their mount source names.
const ANON_DEV: &[&str] = &["btrfs", "bcachefs"];

/// Block device names (and name prefixes) whose data comes from a file, a network peer or a
/// user-space server: a read of them may wait on a process a container controls.
const REMOTE_BLOCK: &[&str] = &["loop", "nbd", "ublkb", "rbd", "drbd"];

/// Whether a mount of type `fstype` with super block device `dev` (`major:minor` as
/// mountinfo shows it) and mount source `source` reads local data. Always true for a type
/// that is not a disk filesystem (tmpfs, overlay: judged elsewhere). A disk filesystem is
/// local only on a block device that is not, nor sits on (device mapper, md, partitions), a
/// loop, network or user-space device (`REMOTE_BLOCK`, from `/sys/dev/block`); one without
/// a block device (file-backed erofs: an anonymous device `0:N`) is not. btrfs and bcachefs
/// always have an anonymous device: their source is judged by its device name. A device
/// `/sys` cannot describe (not mounted) counts as local.
pub fn backing_is_local(fstype: &str, dev: &[u8], source: &[u8]) -> bool {
    if !DISK.contains(&fstype) {
        return true;
    }
    if ANON_DEV.contains(&fstype) {
        let name = source.strip_prefix(b"/dev/").unwrap_or(b"");
        return !REMOTE_BLOCK.iter().any(|p| name.starts_with(p.as_bytes()));
    }
    let dev = String::from_utf8_lossy(dev);
    let Some((major, _)) = dev.split_once(':') else {
        return false;
    };
    if major == "0" {
        return false; // no block device: a file-backed mount
    }
    static SEEN: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashMap::new);
    if let Some(&local) = seen.get(dev.as_ref()) {
        return local;
    }
    let local = block_is_local(
        &std::path::Path::new("/sys/dev/block").join(dev.as_ref()),
        0,
    );
    // Block devices are few; a dev number keeps its driver (loop stays loop).
    if seen.len() < 4096 {
        seen.insert(dev.into_owned(), local);
    }
    local
}

/// Whether the block device at sysfs path `dir` (and every device it sits on, through its
/// `slaves`) is none of [`REMOTE_BLOCK`]; `depth` bounds the walk.
fn block_is_local(dir: &std::path::Path, depth: u32) -> bool {
    let Ok(real) = std::fs::canonicalize(dir) else {
        return depth > 0 || !std::path::Path::new("/sys/dev/block").exists();
    };
    // `.../block/loop0/loop0p1`: the disk and its partition are both named.
    let names = real.components().rev().take(2).filter_map(|c| match c {
        std::path::Component::Normal(n) => n.to_str(),
        _ => None,
    });
    for n in names {
        if REMOTE_BLOCK.iter().any(|p| n.starts_with(p)) {
            return false;
        }
    }
    if depth >= 8 {
        return false;
    }
    let Ok(slaves) = std::fs::read_dir(real.join("slaves")) else {
        return true;
    };
    slaves
        .filter_map(Result::ok)
        .all(|s| block_is_local(&s.path(), depth + 1))
}

/// How the root overlay of process `pid`, whose super block is device `dev` (`major:minor`),
/// is shown: as the overlay with that device in the host's mount namespace (pid 1's) is
/// judged there, or else in the namespace of `pid`'s parent when that is a process outside
/// the container (in ctrfsd's own PID namespace, in a mount namespace that is not `pid`'s):
/// rootless Podman's `conmon`. [`MountKind::Unserved`] when neither namespace mounts it: the
/// container made it.
///
/// # Errors
///
/// A reason (for the log and `user.ctrfsd.unavailable`) when `pid`'s namespaces or the host's
/// mount table cannot be read: the caller must then not touch the root.
pub fn root_overlay_kind(dev: &[u8], pid: i32) -> Result<MountKind, String> {
    let host = std::fs::read("/proc/1/mountinfo")
        .map_err(|e| format!("the host's mount table (/proc/1/mountinfo): {e}"))?;
    if let Some(k) = crate::mounts::overlay_kind_in(&host, dev) {
        return Ok(k);
    }
    if let Some(ppid) = outside_parent(pid) {
        // Read from the parent's own table; its PID is checked again after (a reused PID
        // whose table showed this super block would only make it unserved, or the same).
        if let Ok(text) = std::fs::read(format!("/proc/{ppid}/mountinfo"))
            && let Some(k) = crate::mounts::overlay_kind_in(&text, dev)
            && outside_parent(pid) == Some(ppid)
        {
            return Ok(k);
        }
    }
    Ok(MountKind::Unserved)
}

/// `pid`'s parent if it runs outside `pid`'s container: in ctrfsd's PID namespace and in
/// another mount namespace than `pid`'s. (pid 1's namespace links may be unreadable, as in
/// some sandboxes: a parent in the host's namespace is then asked twice, to the same answer.)
fn outside_parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: i32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let ns = |p: &str, kind: &str| std::fs::metadata(format!("/proc/{p}/ns/{kind}")).ok();
    let (pns, own_pid_ns) = (ns(&ppid.to_string(), "pid")?, ns("self", "pid")?);
    let (pmnt, mnt) = (ns(&ppid.to_string(), "mnt")?, ns(&pid.to_string(), "mnt")?);
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    (ppid > 1 && same(&pns, &own_pid_ns) && !same(&pmnt, &mnt)).then_some(ppid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backed_and_loop_backed_disks_are_not_local() {
        assert!(!backing_is_local("erofs", b"0:77", b"/mnt/f/img.erofs"));
        assert!(!backing_is_local("btrfs", b"0:50", b"/dev/loop3"));
        assert!(!backing_is_local("btrfs", b"0:50", b"/dev/nbd0"));
        assert!(backing_is_local("btrfs", b"0:50", b"/dev/sda2"));
        assert!(backing_is_local("tmpfs", b"0:30", b"tmpfs"));
        assert!(backing_is_local("overlay", b"0:31", b"overlay"));
        // Loop devices have major 7: their sysfs path names them.
        if std::path::Path::new("/sys/dev/block/7:0").exists() {
            assert!(!backing_is_local("ext4", b"7:0", b"/dev/loop0"));
        }
    }

    #[test]
    fn a_root_overlay_is_judged_in_the_namespace_that_mounted_it() {
        let host = b"\
1 0 0:30 / / rw - tmpfs tmpfs rw
2 1 0:40 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
3 1 0:41 / /mnt/f rw - fuse.x x rw
4 1 0:42 / /ovl rw - overlay overlay rw,lowerdir=/mnt/f:/l2
5 1 0:43 / /img rw - erofs /mnt/f/img ro
";
        // Below the namespace's root, judged by its layers there (the runtime's words).
        assert_eq!(
            crate::mounts::overlay_kind_in(host, b"0:40"),
            Some(MountKind::Served)
        );
        assert_eq!(
            crate::mounts::overlay_kind_in(host, b"0:42"),
            Some(MountKind::Unserved)
        );
        // Not mounted there: the caller takes it as made inside the container.
        assert_eq!(crate::mounts::overlay_kind_in(host, b"0:44"), None);
        // A file-backed erofs (no block device) is not served.
        assert_eq!(
            crate::mounts::MountTable::parse(host).kind(5),
            Some(MountKind::Unserved)
        );
        // The container's own table keeps its root overlay's device for that check.
        let t =
            crate::mounts::MountTable::parse(b"9 0 0:40 / / rw - overlay overlay rw,lowerdir=/a\n");
        assert_eq!(t.overlay_dev(9), Some(&b"0:40"[..]));
    }
}
