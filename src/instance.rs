//! One container instance: a process's root directory, pinned by a pidfd and held as an fd.
//!
//! Acquisition is race-free against PID reuse: the caller pins the PID with [`pin`], re-checks
//! with its runtime that the PID still belongs to the container, then [`Instance::open`] opens
//! `/proc/<pid>/root` and checks the pidfd again. If the process was still alive after the open,
//! the `/proc/<pid>` we opened was that process's, so the root fd is the container's.
//!
//! Every instance gets a fresh `seq`, never reused: inode numbers are keyed by it, so a
//! restarted or recreated container never resolves the old instance's inodes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags, open};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::mounts::{MountKind, MountTable, REFRESH};

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

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
    pub pid: i32,
    pidfd: Arc<OwnedFd>,
    /// `O_PATH` fd of `/proc/<pid>/root`; `None` once retired so a dead container's mounts are
    /// not kept alive by us.
    root: RwLock<Option<Arc<OwnedFd>>>,
    alive: AtomicBool,
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
            pidfd: Arc::new(pidfd),
            root: RwLock::new(Some(Arc::new(root))),
            alive: AtomicBool::new(true),
            mounts: RwLock::new(Arc::new(mounts)),
            retired: tokio::sync::Notify::new(),
        })
    }

    /// The same container shown at another path: a new instance (new `seq`, so the kernel
    /// looks everything up afresh under the new path) sharing the held fds. `None` once retired.
    pub fn relabel(&self, path: String) -> Option<Instance> {
        let root = self.root().ok()?;
        Some(Instance {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            ident: self.ident.clone(),
            path,
            pid: self.pid,
            pidfd: self.pidfd.clone(),
            root: RwLock::new(Some(root)),
            alive: AtomicBool::new(true),
            mounts: RwLock::new(self.mounts(false)),
            retired: tokio::sync::Notify::new(),
        })
    }

    /// The path under the mountpoint, as set by the registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A shared handle on the pidfd, for exit watchers.
    pub fn pidfd_arc(&self) -> Arc<OwnedFd> {
        self.pidfd.clone()
    }

    /// Short id for log lines.
    pub fn short_id(&self) -> &str {
        short_id(&self.ident.id)
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The root fd, or ENOENT once this instance was retired.
    pub fn root(&self) -> io::Result<Arc<OwnedFd>> {
        if !self.is_alive() {
            return Err(gone());
        }
        self.root
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(gone)
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
        match MountTable::read(self.pid) {
            Ok(t) if !exited(self.pidfd()) => {
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
