//! Which files a container of an unprivileged user's endpoint (rootless Podman) may show: those
//! a process of that user could read, by the kernel's own rule for a process in the container's
//! user namespace (DESIGN.md invariant 7, README "Security model", "What a user's containers
//! show"). ctrfsd reads as root; for such a container it refuses (EACCES) what the rule denies.
//!
//! The kernel's rule, as used here (Linux `fs/namei.c` `generic_permission` and
//! `acl_permission_check`; `kernel/capability.c` `capable_wrt_inode_uidgid` and
//! `privileged_wrt_inode_uidgid`, which require `kuid_has_mapping` of the inode's uid *and*
//! `kgid_has_mapping` of its gid): root of a user namespace holds `CAP_DAC_OVERRIDE` and
//! `CAP_DAC_READ_SEARCH` there, and they count only for an inode whose owner and group are both
//! mapped in that namespace. Any other inode shows as `nobody`/`nogroup` inside and is judged by
//! its mode bits. So a file may be read (a directory listed or searched) when:
//!
//! - its uid and gid are both mapped (the user's namespace is theirs, so its root's
//!   capabilities are the user's), or
//! - its uid is mapped and the owner bits allow it (a process of that uid: `setuid` inside), or
//! - the "other" bits allow it *and* the group bits do too.
//!
//! Conservative where the exact answer depends on more than mode bits: a group's bits never
//! grant (the user may not be in the group, and with a POSIX ACL the group bits are the mask,
//! not the owning group's entry), and where the group bits refuse what the other bits allow the
//! file is refused (the user may be in that group). ACL entries naming the user are not read.
//! Refusing what the user could reach is accepted; showing what they cannot is not.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::Statx;

/// The wanted access, in "other" mode bits: read a file, list a directory.
pub const READ: u32 = 0o4;
/// Search a directory (look a name up in it).
pub const SEARCH: u32 = 0o1;
/// List a directory: read and search (a listing with attributes hands the kernel the entries,
/// which a directory readable but not searchable would not give: `ls -l` there fails too).
pub const LIST: u32 = 0o5;

/// The ids a user's container process can act as, in ctrfsd's own user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    /// Mapped uid ranges: (first id in ctrfsd's namespace, count).
    uids: Vec<(u32, u32)>,
    /// Mapped gid ranges, the same way.
    gids: Vec<(u32, u32)>,
    /// The ids are mapped in a user namespace the user owns (or one below it), whose root holds
    /// the DAC capabilities over inodes with both ids mapped. False for a user's process in
    /// ctrfsd's own namespace: it has only its own uid.
    privileged: bool,
}

fn in_ranges(ranges: &[(u32, u32)], id: u32) -> bool {
    ranges
        .iter()
        .any(|&(first, n)| id >= first && u64::from(id) < u64::from(first) + u64::from(n))
}

impl IdMaps {
    /// True if a process of the user could have `want` ([`READ`], [`SEARCH`], [`LIST`]) on a
    /// file with the status `st` (its mode, uid and gid), by the rule in the module doc.
    pub fn allows(&self, st: &Statx, want: u32) -> bool {
        let mode = u32::from(st.stx_mode);
        let bits = |shift: u32| (mode >> shift) & want == want;
        if bits(0) && bits(3) {
            return true;
        }
        let uid = in_ranges(&self.uids, st.stx_uid);
        uid && (bits(6) || (self.privileged && in_ranges(&self.gids, st.stx_gid)))
    }

    /// The ids of process `pid` (pinned by `pidfd`), a process of user `uid`: its
    /// `/proc/<pid>/uid_map` and `gid_map` (read by ctrfsd, the "outside" ids are ctrfsd's
    /// own: user_namespaces(7)) if its user namespace, or one above it, is owned by `uid`;
    /// otherwise `uid` alone, without privilege. Anything unreadable, or a process that exited
    /// meanwhile (its PID may name another), gives no ids at all: only the mode bits count.
    pub fn of_process(pid: i32, pidfd: BorrowedFd<'_>, uid: u32) -> IdMaps {
        let read = || -> io::Result<IdMaps> {
            if !crate::trust::userns_owned_by(pid, uid)? {
                return Ok(IdMaps {
                    uids: vec![(uid, 1)],
                    gids: Vec::new(),
                    privileged: false,
                });
            }
            let map = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
            Ok(IdMaps {
                uids: parse_map(&map("uid_map")?),
                gids: parse_map(&map("gid_map")?),
                privileged: true,
            })
        };
        let ids = read().unwrap_or_default();
        if crate::pidfd::has_exited(pidfd.as_fd()) {
            return IdMaps::default();
        }
        ids
    }

    /// The ids user `uid` may map in a namespace of their own: their uid and their subordinate
    /// ranges (`/etc/subuid`, `/etc/subgid`, by login name or uid, as `newuidmap(1)` reads
    /// them), for views without a process (stopped and `.diff` views). The user's primary gid
    /// is left out (not known here): files of it count by their owner and mode bits.
    pub fn of_user(uid: u32) -> IdMaps {
        let name = crate::sys::user_name(uid);
        let sub = |path: &str| {
            std::fs::read_to_string(path)
                .map(|t| parse_subid(&t, name.as_deref(), uid))
                .unwrap_or_default()
        };
        let mut uids = sub("/etc/subuid");
        uids.push((uid, 1));
        IdMaps {
            uids,
            gids: sub("/etc/subgid"),
            privileged: true,
        }
    }
}

/// Ranges of a `uid_map`/`gid_map` text: lines of "inside outside count"; the outside ids.
fn parse_map(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[1], f[2]))
        })
        .collect()
}

/// Ranges of `name` (or `uid`) in a `subuid(5)`/`subgid(5)` text: lines "owner:first:count".
fn parse_subid(text: &str, name: Option<&str>, uid: u32) -> Vec<(u32, u32)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, first, n) = (f.next()?, f.next()?, f.next()?);
            (Some(who) == name || who == uid).then_some(())?;
            Some((first.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mode: u32, uid: u32, gid: u32) -> Statx {
        let mut s = any_statx();
        s.stx_mode = mode as u16;
        s.stx_uid = uid;
        s.stx_gid = gid;
        s
    }

    /// A real status to overwrite (`Statx` has no constructor outside `unsafe`).
    fn any_statx() -> Statx {
        let f = std::fs::File::open("/").unwrap();
        rustix::fs::statx(
            &f,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::empty(),
        )
        .unwrap()
    }

    /// A process in ctrfsd's own namespace counts as its uid alone, without the namespace's
    /// capabilities; a process that exited gives no ids.
    #[test]
    fn a_process_outside_any_namespace_of_the_user_is_its_uid_alone() {
        let me = std::process::id() as i32;
        // Not ours: root owns the initial namespace (the tests run as root).
        let uid = 4242;
        let fd = crate::pidfd::pin(me).unwrap();
        let ids = IdMaps::of_process(me, fd.as_fd(), uid);
        assert_eq!(ids.uids, vec![(uid, 1)]);
        assert!(!ids.privileged);
        assert!(ids.allows(&st(0o100600, uid, 4242), READ));
        assert!(!ids.allows(&st(0o100060, uid, 4242), READ));
        assert!(!ids.allows(&st(0o100600, 0, 0), READ));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let fd = crate::pidfd::pin(pid).unwrap();
        child.wait().unwrap();
        assert_eq!(IdMaps::of_process(pid, fd.as_fd(), uid), IdMaps::default());
    }

    #[test]
    fn maps_and_subids_parse() {
        let m = parse_map("         0       1001          1\n         1     100000      65536\n");
        assert_eq!(m, vec![(1001, 1), (100000, 65536)]);
        let t = "alice:100000:65536\n1002:200000:10\nbob:300000:5\n";
        assert_eq!(parse_subid(t, Some("alice"), 1001), vec![(100000, 65536)]);
        assert_eq!(parse_subid(t, Some("carol"), 1002), vec![(200000, 10)]);
        assert!(parse_subid(t, None, 7).is_empty());
    }

    /// A rootless Podman user (uid 1001, subids 100000+65536) and the files.
    #[test]
    fn the_kernels_rule_for_a_rootless_container() {
        let ids = IdMaps {
            uids: vec![(1001, 1), (100000, 65536)],
            gids: vec![(1001, 1), (100000, 65536)],
            privileged: true,
        };
        let shadow_gid = 42;
        assert!(
            !ids.allows(&st(0o100640, 0, shadow_gid), READ),
            "/etc/shadow"
        );
        assert!(ids.allows(&st(0o100644, 0, 0), READ), "/etc/hostname");
        assert!(
            ids.allows(&st(0o100600, 100100, 100100), READ),
            "a subuid's 0600 file"
        );
        assert!(
            ids.allows(&st(0o100600, 1001, 1001), READ),
            "the user's 0600 file"
        );
        assert!(
            ids.allows(&st(0o100600, 1001, 27), READ),
            "theirs, another group"
        );
        assert!(!ids.allows(&st(0o040700, 0, 0), LIST), "/root");
        assert!(!ids.allows(&st(0o040700, 0, 0), SEARCH), "/root");
        assert!(
            ids.allows(&st(0o040711, 0, 0), SEARCH),
            "searchable by others"
        );
        assert!(!ids.allows(&st(0o040711, 0, 0), LIST), "but not listable");
        assert!(
            !ids.allows(&st(0o100604, 0, 0), READ),
            "group bits refuse: maybe its group"
        );
        assert!(
            !ids.allows(&st(0o100640, 1002, 1001), READ),
            "another user's, group bits"
        );
        // The same uid as a plain process (no namespace of its own): only its own files.
        let plain = IdMaps {
            uids: vec![(1001, 1)],
            gids: Vec::new(),
            privileged: false,
        };
        assert!(plain.allows(&st(0o100600, 1001, 1001), READ));
        assert!(
            !plain.allows(&st(0o100060, 1001, 1001), READ),
            "owner bits refuse"
        );
        assert!(!IdMaps::default().allows(&st(0o100600, 1001, 1001), READ));
    }
}
