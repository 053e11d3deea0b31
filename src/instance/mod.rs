//! One container instance: a process's root directory, pinned by a pidfd and held as an fd; or
//! a stopped container's layers, assembled on first use into a detached read-only mount; or a
//! container's writable layer alone (the `.diff` view).
//!
//! Acquisition is race-free against PID reuse: the caller pins the PID with
//! [`crate::pidfd::pin`], re-checks with its runtime that the PID still belongs to the container
//! (`runtime::acquire`), then [`Instance::open`] opens `/proc/<pid>/root` and checks the pidfd
//! again (`/proc/<pid>/task/<tid>/root` of a live thread if the main thread has exited,
//! `proc_root`). If the process was still alive after the open,
//! the `/proc/<pid>` we opened was that process's, so the root fd is the container's.
//!
//! Every instance gets a fresh `seq`, never reused: inode numbers are keyed by it, so a
//! restarted or recreated container never resolves the old instance's inodes. How many
//! detached views are held at once is bounded in `detached`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustix::fs::{Mode, OFlags, open};

use crate::container::{Identity, Stopped, describe, short_id};
use crate::idmap::IdMaps;
use crate::layers::{Storage, assemble};
use crate::mounts::{MountKind, MountTable, REFRESH};
use crate::pidfd::has_exited;
pub use crate::pidfd::proc_dirs;
use crate::trust::Owner;
pub use detached::set_max_detached;
use detached::{RootSlot, track_detached};

mod detached;
mod proc_root;

/// The next instance's `seq`.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// What the instance shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A running process's root, `/proc/<pid>/root`.
    Live,
    /// A stopped container: its layers, assembled on first use.
    Stopped(Stopped),
    /// Only the container's writable layer (`.diff/<path>`).
    Diff,
}

/// One container (or `.pid` or `.diff`) view as served: who it is, where it is shown, and the
/// held root it is served from.
#[derive(Debug)]
pub struct Instance {
    /// Never reused: inode numbers are keyed by it, so a new instance never resolves an old
    /// one's inodes.
    pub seq: u64,
    /// Who its runtime says it is.
    pub ident: Identity,
    /// Where it is shown, relative to the mountpoint ("web", "k8s/default/api-7d9/api",
    /// ".pid/4242"): absolute symlink answers start with it. Set by the registry.
    path: String,
    /// The main process; 0 for stopped containers and `.diff` views.
    pub pid: i32,
    /// Pins the main process: tells whether *this* process still lives (not whatever holds
    /// its PID now). `None` for views without a process.
    pidfd: Option<Arc<OwnedFd>>,
    /// What it shows.
    pub source: Source,
    /// Where the runtime keeps the container's files (for stopped and `.diff` views).
    pub storage: Option<Arc<Storage>>,
    /// The unprivileged user whose endpoint reports it: its layers are opened as that user's
    /// ([`Owner::open_dir`]: no symlinks, owned by the user). `None` for root's runtimes.
    owner: Option<Arc<Owner>>,
    /// For a user's container, the ids its processes can act as: files are shown only as the
    /// kernel would let them reach ([`Self::may`]). Read once, when the owner is set. `None`
    /// for root's runtimes (one branch per check).
    ids: Option<Arc<IdMaps>>,
    /// `O_PATH` fd of `/proc/<pid>/root` (or of the detached mount, or of the writable layer);
    /// `None` once retired so a dead container's mounts are not kept alive by us, and for a
    /// stopped or `.diff` view until first used (or after it was released to bound fds).
    root: Arc<RootSlot>,
    /// The mount id of a live view's root, read once when the root was opened (the root fd
    /// never changes for a process view); 0 for detached views, whose root is reassembled.
    root_mnt: u64,
    /// Serialises assembling a detached view.
    assembling: Mutex<()>,
    /// Why assembling the detached view last failed.
    failure: Mutex<Option<String>>,
    /// False once retired ([`Self::is_current`]): requests on its nodes then fail instead of
    /// reaching a container that is gone or shown elsewhere.
    current: AtomicBool,
    /// Retired because a newer instance of the same container (or the same container at a new
    /// path) took its place: its nodes answer ESTALE, so the kernel looks the path up again.
    replaced: AtomicBool,
    /// The container's mounts: which are served, which are never touched.
    mounts: RwLock<Arc<MountTable>>,
    /// Tells when the container's mount namespace changed since `mounts` was read
    /// ([`crate::mounts::changed`]); held while polling and re-reading, so no caller trusts a
    /// table older than a change it could have seen. `None` for views without a process.
    mount_events: Mutex<Option<std::fs::File>>,
    /// Wakes the exit watcher when the registry drops this instance for another reason.
    pub retired: tokio::sync::Notify,
}

impl Instance {
    /// Opens the root of the pinned process. Call only after re-checking with the runtime that
    /// `pid` is still the container's main process.
    ///
    /// # Errors
    ///
    /// ESRCH if the process behind `pidfd` exited while being opened (what was opened may
    /// belong to a later process of the same PID); an error of kind `Other` naming the mount
    /// when the root is on a mount that is not served (`mounts::classify`: FUSE, network,
    /// unknown or pseudo; for a root below a mount its table does not show, also an overlay,
    /// or a mount `mounts::classify_unlisted` cannot classify); otherwise what opening `/proc/<pid>/root` or reading
    /// `/proc/<pid>/mountinfo` or `/proc/self/fdinfo` answers (ENOENT for a process already gone or a zombie,
    /// EACCES, EMFILE, ...).
    pub fn open(ident: Identity, pid: i32, pidfd: OwnedFd) -> io::Result<Instance> {
        // Through a live thread if the main thread has exited (`proc_root`).
        let root = proc_root::open_root(pid)?;
        let events = MountTable::open_events(pid)?;
        let mounts = MountTable::read(pid)?;
        if has_exited(pidfd.as_fd()) {
            // The PID may already name another process: neither the root nor the mount table
            // we read is trusted.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // From fdinfo, not `statx`: a process can make its root a FUSE mount it serves (mount,
        // chroot), and a `statx` of that root would wait on the server.
        let root_mnt = crate::mounts::mount_id_of(root.as_fd())?;
        // A root that is a mount's root (what runtimes make: `pivot_root`) is in the table
        // and judged by its kind. A process chrooted into a directory below a mount does not
        // show that mount in its table: it is classified from the kernel's mount structures
        // (`classify_unlisted`), and refused when it cannot be.
        let (kind, what) = match mounts.kind(root_mnt) {
            Some(k) => (k, String::new()),
            None => match crate::mounts::classify_unlisted(root.as_fd(), pid) {
                Ok((k, fstype)) => (
                    k,
                    format!(" (a {fstype} mount its mount table does not show)"),
                ),
                Err(why) => {
                    return Err(io::Error::other(format!(
                        "its root is below mount {root_mnt}, which its mount table does not \
                         show and which could not be classified ({why}): never read"
                    )));
                }
            },
        };
        // A root overlay in the table was either made by the runtime outside the container, or
        // by the container itself (on its own FUSE mount, then chrooted into): judged by the
        // namespace that mounted it (`origin::root_overlay_kind`), never by the layer paths
        // the container's own table shows.
        let (kind, what) = match mounts.overlay_dev(root_mnt) {
            Some(dev) if kind == MountKind::Served => {
                match crate::origin::root_overlay_kind(dev, pid) {
                    Ok(MountKind::Served) => (kind, what),
                    Ok(k) => (
                        k,
                        format!(
                            " (an overlay its runtime did not make: neither the host's nor its \
                             runtime's mount namespace mounts its super block {})",
                            String::from_utf8_lossy(dev)
                        ),
                    ),
                    Err(why) => {
                        return Err(io::Error::other(format!(
                            "its root is an overlay whose origin could not be checked ({why}): \
                             never read"
                        )));
                    }
                }
            }
            _ => (kind, what),
        };
        if has_exited(pidfd.as_fd()) {
            // The namespace asked may already be another process's.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if kind != MountKind::Served {
            return Err(io::Error::other(format!(
                "its root is on mount {root_mnt}{what}, which is {}: never read (a FUSE or \
                 network filesystem, an overlay whose layers cannot be checked, or one not \
                 known to be local, could wait forever)",
                if kind == MountKind::Pseudo {
                    "a pseudo filesystem"
                } else {
                    "not known to be local"
                }
            )));
        }
        Ok(Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident,
            path: String::new(),
            pid,
            pidfd: Some(Arc::new(pidfd)),
            source: Source::Live,
            storage: None,
            owner: None,
            ids: None,
            root: Arc::new(RwLock::new(Some(Arc::new(root)))),
            root_mnt,
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            current: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(Arc::new(mounts)),
            mount_events: Mutex::new(Some(events)),
            retired: tokio::sync::Notify::new(),
        })
    }

    /// A container that does not run: shown from its layers, assembled when first used.
    pub fn stopped(ident: Identity, stopped: Stopped, storage: Storage) -> Instance {
        Instance::detached(ident, Source::Stopped(stopped), Arc::new(storage))
    }

    fn detached(ident: Identity, source: Source, storage: Arc<Storage>) -> Instance {
        Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident,
            path: String::new(),
            pid: 0,
            pidfd: None,
            source,
            storage: Some(storage),
            owner: None,
            ids: None,
            root: Arc::new(RwLock::new(None)),
            root_mnt: 0,
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            current: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(Arc::new(MountTable::empty())),
            mount_events: Mutex::new(None),
            retired: tokio::sync::Notify::new(),
        }
    }

    /// The `.diff` view of this container (its writable layer alone), shown at `path`.
    pub fn diff_view(&self, path: String) -> Instance {
        let storage = self.storage.clone().unwrap_or_else(|| {
            Arc::new(Storage::Unavailable(format!(
                "{} reports no layers for it",
                describe(&self.ident)
            )))
        });
        let mut inst = Instance::detached(self.ident.clone(), Source::Diff, storage);
        inst.path = path;
        inst.owner = self.owner.clone();
        inst.ids = self.ids.clone();
        inst
    }

    /// Adds what the runtime says about the container's storage (running containers).
    pub fn with_storage(mut self, storage: Option<Storage>) -> Instance {
        self.storage = storage.map(Arc::new);
        self
    }

    /// Adds the unprivileged user whose endpoint reports it (see the `owner` field), and the
    /// ids its files are judged by (the `ids` field): the pinned process's user namespace maps,
    /// or, without a process, the ids the user may map ([`IdMaps::of_user`]).
    pub fn with_owner(mut self, owner: Option<Owner>) -> Instance {
        self.ids = owner.as_ref().map(|o| {
            Arc::new(match &self.pidfd {
                Some(fd) => IdMaps::of_process(self.pid, fd.as_fd(), o.uid),
                None => IdMaps::of_user(o.uid),
            })
        });
        self.owner = owner.map(Arc::new);
        self
    }

    /// EACCES unless a process of the user whose endpoint reports this container could have
    /// `want` ([`crate::idmap::READ`], `SEARCH`, `LIST`) on the file of status `st`; always Ok
    /// for root's runtimes' containers.
    ///
    /// # Errors
    ///
    /// EACCES ("Permission denied") where [`IdMaps::allows`] refuses.
    #[inline]
    pub fn may(&self, st: &rustix::fs::Statx, want: u32) -> io::Result<()> {
        match &self.ids {
            Some(ids) if !ids.allows(st, want) => Err(io::Error::from_raw_os_error(libc::EACCES)),
            _ => Ok(()),
        }
    }

    /// True for a user's container, whose files are checked with [`Self::may`].
    #[inline]
    pub fn is_confined(&self) -> bool {
        self.ids.is_some()
    }

    /// True for a view of a process's root (a running container, a `.pid` view); false for
    /// stopped and `.diff` views. Stays true after the process exits: see
    /// [`Self::process_exited`] for that, and [`Self::is_current`] for whether it is still
    /// served.
    pub fn has_process(&self) -> bool {
        self.source == Source::Live
    }

    /// How it ended, for a stopped container.
    pub fn stopped_state(&self) -> Option<&Stopped> {
        match &self.source {
            Source::Stopped(s) => Some(s),
            _ => None,
        }
    }

    /// Why this stopped or `.diff` view cannot be shown, if it cannot (known before trying, or
    /// learnt from the last attempt).
    pub fn unavailable(&self) -> Option<String> {
        if self.source == Source::Live {
            return None;
        }
        if let Some(why) = self.storage.as_deref().and_then(Storage::unavailable) {
            return Some(why.to_string());
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True if the root is there without assembling anything.
    pub fn is_assembled(&self) -> bool {
        self.root
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The same container shown at another path: a new instance (new `seq`, so the kernel
    /// looks everything up afresh under the new path) sharing the held fds. `None` once retired.
    pub fn relabel(&self, path: String) -> Option<Instance> {
        if !self.is_current() {
            return None;
        }
        // A detached view is assembled afresh for the new instance when first used.
        let root = match self.source {
            Source::Live => Some(self.root().ok()?),
            _ => None,
        };
        // Its own poll state (an fd shared with `self` would let one consume the other's
        // change), opened before its table is read. A process that has exited mounts nothing.
        let fresh = self
            .pidfd
            .as_ref()
            .and_then(|_| MountTable::open_events(self.pid).ok())
            .and_then(|ev| Some((ev, MountTable::read(self.pid).ok()?)))
            .filter(|_| !self.process_exited());
        let (events, mounts) = match fresh {
            Some((ev, t)) => (Some(ev), Arc::new(t)),
            None => (None, self.mounts(false)),
        };
        Some(Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident: self.ident.clone(),
            path,
            pid: self.pid,
            pidfd: self.pidfd.clone(),
            source: self.source.clone(),
            storage: self.storage.clone(),
            owner: self.owner.clone(),
            ids: self.ids.clone(),
            root: Arc::new(RwLock::new(root)),
            root_mnt: self.root_mnt,
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            current: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(mounts),
            mount_events: Mutex::new(events),
            retired: tokio::sync::Notify::new(),
        })
    }

    /// The path under the mountpoint, as set by the registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A shared handle on the pidfd, for exit watchers.
    pub fn pidfd_arc(&self) -> Option<Arc<OwnedFd>> {
        self.pidfd.clone()
    }

    /// Short id for log lines.
    pub fn short_id(&self) -> &str {
        short_id(&self.ident.id)
    }

    /// True once the process is known to have exited (its pidfd polls readable); always true
    /// for views without a process. The instance may still be current until the registry
    /// hears of it.
    pub fn process_exited(&self) -> bool {
        self.pidfd.as_ref().is_none_or(|fd| has_exited(fd.as_fd()))
    }

    /// True until the registry retires the instance (its container is gone, moved or replaced,
    /// or its process exited and the exit watcher said so). A retired instance answers every
    /// request with [`Self::retired_error`].
    pub fn is_current(&self) -> bool {
        self.current.load(Ordering::Acquire)
    }

    /// What a request on a retired instance answers: ESTALE if another instance took its place
    /// (the VFS then looks the path up again and finds it), ENOENT if the container is gone.
    pub fn retired_error(&self) -> io::Error {
        if self.replaced.load(Ordering::Acquire) {
            stale()
        } else {
            gone()
        }
    }

    /// The mount id of a live view's root, known since the root was opened; `None` for a
    /// detached view (its root may be reassembled on another mount) or if it could not be read.
    pub fn root_mnt_id(&self) -> Option<u64> {
        (self.root_mnt != 0).then_some(self.root_mnt)
    }

    /// The root fd, or an error once this instance was retired ([`Self::retired_error`]). A
    /// stopped container's layers are assembled here on first use (and again after the view
    /// was released to bound fds).
    ///
    /// # Errors
    ///
    /// - [`Self::retired_error`] once the instance was retired: `ESTALE` if it was replaced,
    ///   `ENOENT` if it is gone (also `ENOENT` when retired during assembly).
    /// - `ENOENT` for a running container whose root is no longer held, or a stopped one without
    ///   known storage.
    /// - `ENOMEDIUM` when the stopped container's storage is unavailable.
    /// - The error of opening the layers, of assembling them ([`crate::layers::assemble`], which
    ///   adds context and so keeps only the error kind), or of `statx`.
    pub fn root(&self) -> io::Result<Arc<OwnedFd>> {
        if !self.is_current() {
            return Err(self.retired_error());
        }
        if let Some(fd) = self.root.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(fd);
        }
        if self.source == Source::Live {
            return Err(gone());
        }
        let _one = self.assembling.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = self.root.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(fd);
        }
        let fd = Arc::new(self.open_detached()?);
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let st = rustix::fs::statx(
            &*fd,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::MNT_ID,
        )?;
        *self.mounts.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(MountTable::single(st.stx_mnt_id));
        let mut slot = self.root.write().unwrap_or_else(|e| e.into_inner());
        if !self.is_current() {
            return Err(gone()); // retired meanwhile: drop the mount
        }
        *slot = Some(fd.clone());
        drop(slot);
        track_detached(self.seq, &self.root);
        Ok(fd)
    }

    /// Assembles the stopped view, or opens the writable layer for the `.diff` view.
    fn open_detached(&self) -> io::Result<OwnedFd> {
        let storage = self.storage.as_deref().ok_or_else(gone)?;
        let (upper, lowers) = match storage {
            Storage::Overlay { upper, lowers } => (upper, lowers),
            Storage::Unavailable(_) => return Err(io::Error::from_raw_os_error(libc::ENOMEDIUM)),
        };
        // The `.diff` view is the writable layer itself; so is a stopped container of one layer
        // (a containerd snapshot without parents), since overlayfs needs two.
        let r = if let Some(owner) = &self.owner {
            // A user's layers: each opened as theirs, and the overlay made of exactly the
            // directories opened (through their fds), whatever the paths name by then.
            let one = self.source == Source::Diff || lowers.is_empty();
            owner.open_dir(upper).and_then(|up| {
                if one {
                    return Ok(up);
                }
                let lows = lowers
                    .iter()
                    .map(|l| owner.open_dir(l))
                    .collect::<io::Result<Vec<_>>>()?;
                let via = |fd: &OwnedFd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                let lows: Vec<PathBuf> = lows.iter().map(via).collect();
                assemble(&via(&up), &lows)
            })
        } else if self.source == Source::Diff || lowers.is_empty() {
            open(
                upper,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io::Error::from)
        } else {
            assemble(upper, lowers)
        };
        r.map_err(|e| {
            log::warn!(
                "container {} ({}): cannot show its files: {e}",
                self.path,
                self.short_id()
            );
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            // A layer that is gone is what a container being removed looks like: answered as
            // its removal will be, ENOENT. Anything else is "its files cannot be shown",
            // ENOMEDIUM ("No medium found"). The reason is in the log line and in
            // user.ctrfsd.unavailable either way.
            io::Error::from_raw_os_error(if e.kind() == io::ErrorKind::NotFound {
                libc::ENOENT
            } else {
                libc::ENOMEDIUM
            })
        })
    }

    /// The current mount table; re-read if older than [`REFRESH`] (or always, with `force`),
    /// and whenever the container mounted or unmounted anything since it was read (a reused
    /// mount id must never keep the kind of the mount that had it before).
    /// A table read after the process died is discarded: its PID may name another process.
    pub fn mounts(&self, force: bool) -> Arc<MountTable> {
        let events = self.mount_events.lock().unwrap_or_else(|e| e.into_inner());
        let changed = events.as_ref().is_some_and(crate::mounts::changed);
        let cur = self
            .mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let age = cur.read_at.elapsed();
        // A forced re-read is still rate-limited, so a flood of unknown mount ids cannot turn
        // every request into a mountinfo parse.
        if !(changed || age > REFRESH || (force && age > std::time::Duration::from_millis(100))) {
            return cur;
        }
        if self.pidfd.is_none() {
            return cur; // a detached view: its one mount never changes
        }
        match MountTable::read(self.pid) {
            Ok(t) if !self.process_exited() => {
                let t = Arc::new(t);
                *self.mounts.write().unwrap_or_else(|e| e.into_inner()) = t.clone();
                t
            }
            // Changed, and not readable: the old table may describe mounts that are gone.
            _ if changed => Arc::new(MountTable::empty()),
            _ => cur,
        }
    }

    /// How the mount `mnt_id` is shown. A mount not in the table (mounted since it was read,
    /// or gone) is not served.
    pub fn mount_kind(&self, mnt_id: u64) -> MountKind {
        if let Some(k) = self.mounts(false).kind(mnt_id) {
            return k;
        }
        self.mounts(true)
            .kind(mnt_id)
            .unwrap_or(MountKind::Unserved)
    }

    /// Marks the instance dead, releases its root and wakes its exit watcher. Idempotent.
    pub fn retire(&self) {
        if self.current.swap(false, Ordering::AcqRel) {
            self.root.write().unwrap_or_else(|e| e.into_inner()).take();
            self.retired.notify_one();
        }
    }

    /// Retires it because another instance took its place (see [`Self::retired_error`]).
    pub fn retire_replaced(&self) {
        self.replaced.store(true, Ordering::Release);
        if self.current.swap(false, Ordering::AcqRel) {
            self.root.write().unwrap_or_else(|e| e.into_inner()).take();
            self.retired.notify_one();
        }
    }
}

/// A container that is gone: its files answer as if deleted.
pub fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

/// A name that now leads to another file than the kernel's inode: the VFS retries path
/// operations with a fresh lookup on ESTALE.
pub fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Runtime;

    /// Issue 12: three questions, three names. `is_current`: still served; `has_process`: a
    /// view of a process's root; `process_exited`: that process is gone.
    #[test]
    fn current_has_process_and_process_exited_are_three_questions() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let pidfd = crate::pidfd::pin(pid).unwrap();
        let ident = Identity::new(Runtime::Static, format!("pid:{pid}"), "t");
        let live = Instance::open(ident.clone(), pid, pidfd).unwrap();
        assert!(live.is_current() && live.has_process() && !live.process_exited());
        child.kill().unwrap();
        child.wait().unwrap();
        // The process is gone; until the registry retires it, the instance is still current.
        assert!(live.is_current() && live.has_process() && live.process_exited());
        live.retire();
        assert!(!live.is_current() && live.has_process());
        assert_eq!(live.root().unwrap_err().raw_os_error(), Some(libc::ENOENT));

        let stopped = Stopped {
            state: "exited".into(),
            exit_code: Some(0),
            finished_at: String::new(),
        };
        let s = Instance::stopped(ident, stopped, Storage::Unavailable("test".into()));
        assert!(s.is_current() && !s.has_process() && s.process_exited());
        s.retire_replaced();
        assert_eq!(s.root().unwrap_err().raw_os_error(), Some(libc::ESTALE));
    }
}
