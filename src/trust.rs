//! What a runtime endpoint run by an unprivileged user (rootless Podman) may make ctrfsd show:
//! only what that user's own processes can reach (DESIGN.md invariant 7, README "Security
//! model"). An [`Owner`] is that user; every fact such an endpoint reports is checked here
//! against it before root acts on it:
//!
//! - its socket ([`open_socket`]): reached without following any symlink, a socket, owned by
//!   the user (a link to Docker's socket would make Docker's containers the user's);
//! - a main PID ([`process_belongs`]): the process runs as the user, or in a user namespace the
//!   user owns; checked against the pinned pidfd, so a PID reused meanwhile is refused;
//! - a host path (layers: [`Owner::storage`] when reported, [`Owner::open_dir`] when opened):
//!   below the user's home directory, reached from there without following any symlink or
//!   crossing a mount, on a filesystem known to be local (never one of the user's FUSE
//!   mounts), and owned by the user.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags, fstat, open, openat2};

use crate::layers::Storage;
use crate::pidfd::has_exited;

/// The user who runs an endpoint, and where that user's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The user's uid (in ctrfsd's own user namespace).
    pub uid: u32,
    /// The user's home directory (password database), with symlinks above it resolved: the
    /// directories above it are root's, so only from here down does the user decide. Rootless
    /// Podman keeps its storage below it (`~/.local/share/containers/storage` by default).
    pub home: PathBuf,
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Opening flags that refuse every symlink (and `/proc` magic link) on the way.
fn no_links() -> ResolveFlags {
    ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

impl Owner {
    /// The user `uid`. Without a home directory (none in the password database, or missing),
    /// its running containers are still shown, and no layer path is accepted.
    pub fn of(uid: u32) -> Owner {
        let home = crate::sys::user_home(uid)
            .filter(|h| h.is_absolute())
            .map(|h| h.canonicalize().unwrap_or(h))
            .unwrap_or_else(|| PathBuf::from("/nonexistent/ctrfsd-no-home"));
        Owner { uid, home }
    }

    /// Why `path` cannot be one of this user's layer directories, if it cannot (no I/O): it
    /// must be absolute, below the home directory, without `.` or `..`.
    pub fn path_problem(&self, path: &Path) -> Option<String> {
        let Ok(rest) = path.strip_prefix(&self.home) else {
            return Some(format!(
                "{} is not below the user's home directory {}",
                path.display(),
                self.home.display()
            ));
        };
        if rest
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
            || !path.is_absolute()
        {
            return Some(format!("{} is not a plain absolute path", path.display()));
        }
        None
    }

    /// `storage` as reported, or [`Storage::Unavailable`] saying why this user's endpoint may
    /// not name it.
    pub fn storage(&self, storage: Storage) -> Storage {
        if let Storage::Overlay { upper, lowers } = &storage
            && let Some(why) = std::iter::once(upper)
                .chain(lowers)
                .find_map(|l| self.path_problem(l))
        {
            return Storage::Unavailable(format!("refused: {why}"));
        }
        storage
    }

    /// Opens the directory `path` as an `O_PATH` fd: below the home directory, reached from it
    /// without following any symlink, and owned by the user (as is the home directory itself).
    ///
    /// # Errors
    ///
    /// PermissionDenied naming the reason; what `openat2(2)` answers (ELOOP for a symlink on
    /// the way, ENOENT, ...).
    pub fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        if let Some(why) = self.path_problem(path) {
            return Err(refused(why));
        }
        let rest = path.strip_prefix(&self.home).unwrap_or(path);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        // An `O_PATH` open asks the home's filesystem nothing; its `fstat` would. The user may
        // have mounted a FUSE filesystem of theirs there (`fusermount3` is setuid root) and
        // stopped answering, so only a local filesystem is asked.
        let home = open(&self.home, flags, Mode::empty())?;
        local_mount(&home, &self.home)?;
        self.owned(home.as_fd(), &self.home)?;
        let rest = if rest.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rest
        };
        let fd = openat2(
            &home,
            rest,
            flags,
            Mode::empty(),
            // No mount crossed below the home either (EXDEV): one of the user's FUSE mounts
            // there is refused before it is asked anything.
            ResolveFlags::BENEATH | ResolveFlags::NO_XDEV | no_links(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "{}: {e} (symlinks are not followed, mounts not crossed)",
                    path.display()
                ),
            )
        })?;
        self.owned(fd.as_fd(), path)?;
        Ok(fd)
    }

    fn owned(&self, fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
        let st = fstat(fd)?;
        if st.st_uid != self.uid {
            return Err(refused(format!(
                "{} belongs to uid {}, not to the endpoint's user (uid {})",
                path.display(),
                st.st_uid,
                self.uid
            )));
        }
        Ok(())
    }
}

/// Refuses `fd` (opened `O_PATH` at `path`) unless it lies on a mount of a filesystem known to
/// be local ([`crate::mounts::classify`]), read from `/proc/self/fdinfo` and ctrfsd's own mount
/// table, which the filesystem is not asked for.
fn local_mount(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let id = crate::mounts::mount_id_of(fd.as_fd())?;
    let table = crate::mounts::MountTable::read(std::process::id() as i32)?;
    match table.kind(id) {
        Some(crate::mounts::MountKind::Served) => Ok(()),
        _ => Err(refused(format!(
            "{} is not on a filesystem known to be local (a FUSE or network mount is never \
             read)",
            path.display()
        ))),
    }
}

/// Opens the API socket at `path` as an `O_PATH` fd, without following any symlink on the
/// way, and checks that it is a socket owned by `uid`. Connecting through
/// `/proc/self/fd/<fd>` then reaches exactly this socket, whatever the path names by then.
///
/// # Errors
///
/// PermissionDenied naming the reason; ELOOP if a symlink is on the way; ENOENT.
pub fn open_socket(path: &Path, uid: u32) -> io::Result<OwnedFd> {
    let fd = openat2(
        CWD,
        path,
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        no_links(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "{}: {e} (a user's socket is never reached through a symlink)",
                path.display()
            ),
        )
    })?;
    let st = fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(refused(format!("{} is not a socket", path.display())));
    }
    if st.st_uid != uid {
        return Err(refused(format!(
            "{} belongs to uid {}, not to uid {uid} whose runtime directory it is in",
            path.display(),
            st.st_uid
        )));
    }
    Ok(fd)
}

/// Checks that process `pid`, pinned by `pidfd`, belongs to `uid`: its real, effective and
/// saved uids are `uid`, or its user namespace (or one above it) is owned by `uid`; and its
/// root directory is not the host's (a user's plain process, served by root, would show the
/// host's files as root reads them). Read from
/// `/proc/<pid>` and then checked against the pidfd: if the pinned process still lives after
/// the reads, they were its own.
///
/// # Errors
///
/// PermissionDenied naming the process's uids; ESRCH if it exited (the PID may be another's).
pub fn process_belongs(pid: i32, pidfd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    let uids = proc_uids(pid)?;
    let mine = uids.iter().all(|&u| u == uid) || userns_owned_by(pid, uid)?;
    let host_root = {
        // Never a `stat` of their root before its mount is known: the user's process can be
        // rooted in a FUSE mount it serves and never answers. Another mount than ours is not
        // our root; on our own (local) root mount a `fstat` is safe.
        let path = |p: &str| open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty());
        let (theirs, ours) = (path(&format!("/proc/{pid}/root"))?, path("/")?);
        crate::mounts::mount_id_of(theirs.as_fd())? == crate::mounts::mount_id_of(ours.as_fd())?
            && {
                let (a, b) = (fstat(&theirs)?, fstat(&ours)?);
                (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            }
    };
    if has_exited(pidfd) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    if !mine {
        return Err(refused(format!(
            "process {pid} runs as uid {uids:?}, outside any user namespace of uid {uid}"
        )));
    }
    if host_root {
        // Read as root, the host's root would show what the user's processes cannot read.
        return Err(refused(format!(
            "process {pid} has the host's root directory, not a container's"
        )));
    }
    Ok(())
}

/// Real, effective and saved uid of `pid` (`Uid:` of `/proc/<pid>/status`).
fn proc_uids(pid: i32) -> io::Result<Vec<u32>> {
    let f = BufReader::new(File::open(format!("/proc/{pid}/status"))?);
    for line in f.lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("Uid:") {
            let v: Vec<u32> = rest
                .split_whitespace()
                .take(3)
                .filter_map(|s| s.parse().ok())
                .collect();
            if v.len() == 3 {
                return Ok(v);
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::ESRCH))
}

/// True if the user namespace of `pid`, or one of its ancestors below ctrfsd's own, is owned
/// by `uid` (nesting is bounded by the kernel at 32 levels).
pub(crate) fn userns_owned_by(pid: i32, uid: u32) -> io::Result<bool> {
    let mut ns: OwnedFd = File::open(format!("/proc/{pid}/ns/user"))?.into();
    for _ in 0..33 {
        match crate::sys::ns_owner_uid(ns.as_fd()) {
            Ok(owner) if owner == uid => return Ok(true),
            Ok(_) => {}
            Err(_) => return Ok(false),
        }
        ns = match crate::sys::ns_parent(ns.as_fd()) {
            Ok(p) => p,
            Err(_) => return Ok(false), // ctrfsd's own namespace (EPERM): not the user's
        };
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_must_be_plain_and_below_home() {
        let o = Owner {
            uid: 1001,
            home: "/home/u".into(),
        };
        assert_eq!(o.path_problem(Path::new("/home/u/s/overlay/l/diff")), None);
        for bad in ["/etc", "/home/u/../../etc", "/home/uu/x", "home/u/x"] {
            assert!(o.path_problem(Path::new(bad)).is_some(), "{bad}");
        }
        let s = o.storage(Storage::Overlay {
            upper: "/etc".into(),
            lowers: vec![],
        });
        assert!(s.unavailable().is_some_and(|w| w.contains("/etc")), "{s:?}");
    }

    #[test]
    fn other_users_processes_and_the_host_root_are_refused() {
        let me = std::process::id() as i32;
        let fd = crate::pidfd::pin(me).unwrap();
        let uid = rustix::process::getuid().as_raw();
        let e = process_belongs(me, fd.as_fd(), uid + 4242).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("runs as uid"), "{e}");
        // Our own process is ours, but its root is the host's.
        let e = process_belongs(me, fd.as_fd(), uid).unwrap_err();
        assert!(e.to_string().contains("host's root"), "{e}");
    }
}
