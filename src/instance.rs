//! One container instance: a process's root directory, pinned by a pidfd and held as an fd; or
//! a stopped container's layers, assembled on first use into a detached read-only mount; or a
//! container's writable layer alone (the `.diff` view).
//!
//! Acquisition is race-free against PID reuse: the caller pins the PID with [`pin`], re-checks
//! with its runtime that the PID still belongs to the container, then [`Instance::open`] opens
//! `/proc/<pid>/root` and checks the pidfd again. If the process was still alive after the open,
//! the `/proc/<pid>` we opened was that process's, so the root fd is the container's.
//!
//! Every instance gets a fresh `seq`, never reused: inode numbers are keyed by it, so a
//! restarted or recreated container never resolves the old instance's inodes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags, open};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::layers::{Storage, assemble};
use crate::mounts::{MountKind, MountTable, REFRESH};

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// How many stopped-container mounts and writable-layer fds are held at most; the least
/// recently assembled is released first (and assembled again when next used).
static MAX_DETACHED: AtomicUsize = AtomicUsize::new(256);

/// Sets how many detached views may be held at once (`--max-detached`).
pub fn set_max_detached(n: usize) {
    MAX_DETACHED.store(n.max(1), Ordering::Relaxed);
}

type RootSlot = RwLock<Option<Arc<OwnedFd>>>;

/// Assembled detached views, oldest first: (instance seq, its root slot).
static DETACHED: Mutex<VecDeque<(u64, Weak<RootSlot>)>> = Mutex::new(VecDeque::new());

/// What a stopped container's runtime says about how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The runtime's word: "created", "exited", "dead" ("stopped" when containerd keeps no
    /// task to say more).
    pub state: String,
    /// Known only for containers that ran and whose runtime kept the status.
    pub exit_code: Option<i64>,
    /// RFC 3339, as the runtime reports it; empty if it never ran.
    pub finished_at: String,
}

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

/// Which runtime reports a container. The order is the naming priority: when two containers
/// want the same bare name, the earlier kind keeps it (README, "Naming").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    /// `--container NAME=PID`.
    Static,
    Docker,
    Podman,
    Containerd,
    /// Rootless Podman of one user.
    PodmanRootless,
    /// `/ctr/.pid/<PID>/`.
    Pid,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Static => "static",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::PodmanRootless => "podman-rootless",
            Runtime::Pid => "pid",
        }
    }
}

/// A Kubernetes container, as `kubectl` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Who the runtime says this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub runtime: Runtime,
    /// Where in that runtime: the user of a rootless Podman, the containerd namespace; empty
    /// otherwise.
    pub scope: String,
    /// The runtime's container id ("pid:<n>" for static entries).
    pub id: String,
    /// The name the runtime's own CLI shows (`docker ps`, `podman ps`, `nerdctl ps`).
    pub name: String,
    pub image: String,
    /// Set for containers the kubelet created (not for pod sandboxes, which are not served).
    pub k8s: Option<PodRef>,
    /// Creation time (Unix seconds): of two containers wanting one Kubernetes path, the newer
    /// (a restart) gets it.
    pub created: i64,
    /// Where its stdout and stderr are kept (`/ctr/.logs`); `None`: the runtime names none.
    pub logs: Option<crate::logs::LogSource>,
}

impl Identity {
    /// An identity with only the essentials set.
    pub fn new(runtime: Runtime, id: impl Into<String>, name: impl Into<String>) -> Identity {
        Identity {
            runtime,
            scope: String::new(),
            id: id.into(),
            name: name.into(),
            image: String::new(),
            k8s: None,
            created: 0,
            logs: None,
        }
    }

    /// The same container, as far as the registry is concerned.
    pub fn same_container(&self, other: &Identity) -> bool {
        self.runtime == other.runtime && self.scope == other.scope && self.id == other.id
    }
}

#[derive(Debug)]
pub struct Instance {
    pub seq: u64,
    pub ident: Identity,
    /// Where it is shown, relative to the mountpoint ("web", "k8s/default/api-7d9/api",
    /// ".pid/4242"): absolute symlink answers start with it. Set by the registry.
    path: String,
    /// The main process; 0 for stopped containers and `.diff` views.
    pub pid: i32,
    pidfd: Option<Arc<OwnedFd>>,
    pub source: Source,
    /// Where the runtime keeps the container's files (for stopped and `.diff` views).
    pub storage: Option<Arc<Storage>>,
    /// `O_PATH` fd of `/proc/<pid>/root` (or of the detached mount, or of the writable layer);
    /// `None` once retired so a dead container's mounts are not kept alive by us, and for a
    /// stopped or `.diff` view until first used (or after it was released to bound fds).
    root: Arc<RootSlot>,
    /// Serialises assembling a detached view.
    assembling: Mutex<()>,
    /// Why assembling the detached view last failed.
    failure: Mutex<Option<String>>,
    alive: AtomicBool,
    /// Retired because a newer instance of the same container (or the same container at a new
    /// path) took its place: its nodes answer ESTALE, so the kernel looks the path up again.
    replaced: AtomicBool,
    /// The container's mounts: which are served, which are never touched.
    mounts: RwLock<Arc<MountTable>>,
    /// Wakes the exit watcher when the registry drops this instance for another reason.
    pub retired: tokio::sync::Notify,
}

/// Pins `pid` with a pidfd: from here on, the pidfd tells whether *this* process lives.
pub fn pin(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

/// True once the process behind `pidfd` has exited (the pidfd polls readable).
pub fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

impl Instance {
    /// Opens the root of the pinned process. Call only after re-checking with the runtime that
    /// `pid` is still the container's main process.
    pub fn open(ident: Identity, pid: i32, pidfd: OwnedFd) -> io::Result<Instance> {
        let root = open(
            format!("/proc/{pid}/root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mounts = MountTable::read(pid)?;
        if exited(pidfd.as_fd()) {
            // The PID may already name another process: neither the root nor the mount table
            // we read is trusted.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident,
            path: String::new(),
            pid,
            pidfd: Some(Arc::new(pidfd)),
            source: Source::Live,
            storage: None,
            root: Arc::new(RwLock::new(Some(Arc::new(root)))),
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            alive: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(Arc::new(mounts)),
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
            root: Arc::new(RwLock::new(None)),
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            alive: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(Arc::new(MountTable::empty())),
            retired: tokio::sync::Notify::new(),
        }
    }

    /// The `.diff` view of this container (its writable layer alone), shown at `path`.
    pub fn diff_view(&self, path: String) -> Instance {
        let storage = self.storage.clone().unwrap_or_else(|| {
            Arc::new(Storage::Unavailable(format!(
                "{} reports no layers for it",
                crate::registry::describe(&self.ident)
            )))
        });
        let mut inst = Instance::detached(self.ident.clone(), Source::Diff, storage);
        inst.path = path;
        inst
    }

    /// Adds what the runtime says about the container's storage (running containers).
    pub fn with_storage(mut self, storage: Option<Storage>) -> Instance {
        self.storage = storage.map(Arc::new);
        self
    }

    /// True for a container that runs (or ran, until retired) with a process.
    pub fn is_running(&self) -> bool {
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
        if !self.is_alive() {
            return None;
        }
        // A detached view is assembled afresh for the new instance when first used.
        let root = match self.source {
            Source::Live => Some(self.root().ok()?),
            _ => None,
        };
        Some(Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident: self.ident.clone(),
            path,
            pid: self.pid,
            pidfd: self.pidfd.clone(),
            source: self.source.clone(),
            storage: self.storage.clone(),
            root: Arc::new(RwLock::new(root)),
            assembling: Mutex::new(()),
            failure: Mutex::new(None),
            alive: AtomicBool::new(true),
            replaced: AtomicBool::new(false),
            mounts: RwLock::new(self.mounts(false)),
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

    /// True once the process is known to have exited (always for views without one).
    pub fn exited(&self) -> bool {
        self.pidfd.as_ref().is_none_or(|fd| exited(fd.as_fd()))
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
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

    /// The root fd, or an error once this instance was retired ([`Self::retired_error`]). A
    /// stopped container's layers are assembled here on first use (and again after the view
    /// was released to bound fds).
    pub fn root(&self) -> io::Result<Arc<OwnedFd>> {
        if !self.is_alive() {
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
        if !self.is_alive() {
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
        let r = if self.source == Source::Diff || lowers.is_empty() {
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

    /// The current mount table; re-read if older than [`REFRESH`] (or always, with `force`).
    /// A table read after the process died is discarded: its PID may name another process.
    pub fn mounts(&self, force: bool) -> Arc<MountTable> {
        let cur = self
            .mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let age = cur.read_at.elapsed();
        // A forced re-read is still rate-limited, so a flood of unknown mount ids cannot turn
        // every request into a mountinfo parse.
        if !(age > REFRESH || (force && age > std::time::Duration::from_millis(100))) {
            return cur;
        }
        if self.pidfd.is_none() {
            return cur; // a detached view: its one mount never changes
        }
        match MountTable::read(self.pid) {
            Ok(t) if !self.exited() => {
                let t = Arc::new(t);
                *self.mounts.write().unwrap_or_else(|e| e.into_inner()) = t.clone();
                t
            }
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
        if self.alive.swap(false, Ordering::AcqRel) {
            self.root.write().unwrap_or_else(|e| e.into_inner()).take();
            self.retired.notify_one();
        }
    }

    /// Retires it because another instance took its place (see [`Self::retired_error`]).
    pub fn retire_replaced(&self) {
        self.replaced.store(true, Ordering::Release);
        if self.alive.swap(false, Ordering::AcqRel) {
            self.root.write().unwrap_or_else(|e| e.into_inner()).take();
            self.retired.notify_one();
        }
    }
}

/// Remembers an assembled detached view; releases the oldest beyond [`MAX_DETACHED`]. A
/// released view is assembled again when next used: its new mount has new inode keys, so the
/// kernel's old inodes answer ESTALE and the VFS looks them up again.
fn track_detached(seq: u64, slot: &Arc<RootSlot>) {
    let mut q = DETACHED.lock().unwrap_or_else(|e| e.into_inner());
    q.retain(|(s, w)| *s != seq && w.strong_count() > 0);
    q.push_back((seq, Arc::downgrade(slot)));
    while q.len() > MAX_DETACHED.load(Ordering::Relaxed) {
        if let Some((_, w)) = q.pop_front()
            && let Some(slot) = w.upgrade()
        {
            slot.write().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// The first 12 characters of a runtime id, as `docker ps` shows it (never panics on odd ids).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
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
