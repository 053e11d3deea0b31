//! The FUSE filesystem: the mount root lists the registry; below it, each container's files
//! are served read-only from fds held relative to the container's root.
//!
//! - [`nodes`]: ctrfsd inode numbers and where each node was last seen.
//! - [`fdcache`]: bounded LRUs of directory fds and of read fds.
//! - [`handles`]: open files and directories.
//! - [`attr`]: statx -> FUSE attributes; which filesystems are pseudo.
//! - `resolve` (here): reaching a node's fd one component at a time, `O_NOFOLLOW`, from the
//!   container root, verifying each step is still the same inode.
//! - `ops`, `dirs`: the request logic, returning `io::Result`; `fuse`: the thin
//!   `Filesystem` impl.
//! - `links`: `readlink` answers, rewritten by [`crate::pathsafe`].
//! - `probe`: `user.ctrfsd.host_path`, the host path of a file's real inode (for eBPF probes).
//!
//! Containment (DESIGN.md invariant 1): every path operation here is relative to a held
//! directory fd with a single-component name and `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, or goes
//! through `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from the
//! container root. No `/proc/<pid>/root/...` path string is ever built for I/O.

pub mod attr;
mod dirs;
pub mod fdcache;
mod fuse;
pub mod handles;
mod links;
pub mod nodes;
mod ops;
mod probe;
pub mod stats;
mod virt;
pub mod watch;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags, Statx, openat, statx};

use crate::instance::{Instance, stale};
use crate::registry::{Registry, is_virtual};
use attr::{STATX_MASK, dev_of};
use fdcache::FdCache;
use handles::Handles;
use nodes::{Node, Nodes, Shown};

/// How long the kernel may trust an entry or attributes that no directory watch covers
/// ([`watch`]) without asking again. One second keeps `tail -f` and rewritten files within a
/// second (DESIGN.md); registry changes and watched changes are pushed to the kernel at once.
pub const TTL: Duration = Duration::from_secs(1);

/// Longest parent chain followed before a node is declared stale (a cycle guard).
const MAX_DEPTH: usize = 4096;

/// How the filesystem serves (from the command line).
pub struct Options {
    /// The canonical mountpoint path: absolute symlink answers start with it.
    pub mountpoint: PathBuf,
    /// Extended attributes are answered (else ENOSYS, so `ls -l` makes no round trips).
    pub xattrs: bool,
    /// Kernel FUSE passthrough: one round trip per `open()`, then reads go straight to the
    /// container's file. Off: `open` is answered ENOSYS once, the kernel stops sending opens and
    /// keeps its page cache across them, and reads come through ctrfsd.
    pub passthrough: bool,
    /// How many directory fds, and how many read fds, to keep open at most (each).
    pub fd_cache: usize,
    /// How long the kernel may keep what a directory watch covers ([`watch`]); no longer
    /// than [`TTL`] turns watching off.
    pub cache_ttl: Duration,
    /// Most directories watched at once.
    pub max_watches: usize,
}

/// What the FUSE handlers and the change-notification thread share.
pub struct Core {
    registry: Arc<Registry>,
    nodes: Arc<Nodes>,
    dirs: Arc<FdCache>,
    files: Arc<FdCache>,
    /// `/proc/self/fd`, to reopen an `O_PATH` fd for reading without a path walk in the
    /// container (so a swapped-in FIFO or device is never opened).
    proc_fd: OwnedFd,
    watches: Arc<watch::Watches>,
}

/// The FUSE filesystem: the registry's tree of names, and every container's files below it.
pub struct CtrFs {
    core: Arc<Core>,
    handles: Handles,
    opts: Options,
    /// The mount root's timestamps.
    started: std::time::SystemTime,
    /// Passthrough was asked for and the kernel agreed (set in `init`).
    passthrough_on: bool,
    /// Requests answered, by kind, and errors by errno.
    stats: Arc<stats::Stats>,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl CtrFs {
    /// The filesystem over `registry`.
    ///
    /// # Errors
    ///
    /// If `/proc` cannot be opened.
    pub fn new(registry: Arc<Registry>, opts: Options) -> io::Result<CtrFs> {
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dirs = Arc::new(FdCache::new(opts.fd_cache));
        let files = Arc::new(FdCache::new(opts.fd_cache));
        let watches = Arc::new(watch::Watches::new(opts.cache_ttl, TTL, opts.max_watches));
        // A retired container's directory fds and watches go at once (nothing may be looked
        // up in it any more). Its read fds stay until the kernel forgets their inodes: a file a
        // host tool holds open keeps reading, as on a real filesystem after its directory is
        // removed.
        let (hook_dirs, hook_watches) = (dirs.clone(), watches.clone());
        registry.set_on_retire(Box::new(move |inst: &Instance| {
            hook_dirs.purge_instance(inst.seq);
            hook_watches.drop_instance(inst.seq);
        }));
        Ok(CtrFs {
            core: Arc::new(Core {
                registry,
                nodes: Arc::new(Nodes::default()),
                dirs,
                files,
                proc_fd,
                watches,
            }),
            handles: Handles::default(),
            opts,
            started: std::time::SystemTime::now(),
            passthrough_on: false,
            stats: Arc::new(stats::Stats::default()),
        })
    }

    /// The request counters, for the report logged at exit.
    pub fn stats(&self) -> Arc<stats::Stats> {
        self.stats.clone()
    }

    /// The inode table, for the maintenance thread that gives memory back.
    pub fn nodes(&self) -> Arc<Nodes> {
        self.nodes.clone()
    }

    /// What starts the change-notification thread once the session's notifier exists.
    pub fn watcher(&self) -> watch::Starter {
        watch::Starter {
            watches: self.watches.clone(),
            nodes: self.nodes.clone(),
            fds: self.core.clone(),
        }
    }

    /// How long the kernel may keep a reply about `node` (attributes `st`) in directory
    /// `parent`: long only where a watch reports every change to it ([`watch`]).
    fn ttl_of(&self, parent_watched: bool, parent: &Node, node: &Node, st: &Statx) -> Duration {
        if !parent_watched || node.key.mnt != parent.key.mnt || node.shown != Shown::Normal {
            return TTL;
        }
        let covered = match node.kind {
            fuser::FileType::Directory => self.watches.is_watched(node.ino),
            fuser::FileType::RegularFile => st.stx_nlink <= 1,
            _ => true,
        };
        if covered {
            self.watches.long_ttl()
        } else {
            TTL
        }
    }
}

impl std::ops::Deref for CtrFs {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl watch::DirFds for Core {
    fn dir_fd_of(&self, node: &Node) -> io::Result<Arc<OwnedFd>> {
        self.dir_fd(node)
    }
}

impl Core {
    /// The live node for `ino`: ESTALE if the kernel names an inode we do not know, ENOENT if
    /// its container is gone (as for a directory removed while a process sits in it).
    fn node(&self, ino: u64) -> io::Result<Arc<Node>> {
        let node = self.nodes.get(ino).ok_or_else(stale)?;
        if !node.inst.is_current() {
            return Err(node.inst.retired_error());
        }
        Ok(node)
    }

    /// An `O_PATH` fd of a directory node, from the cache or re-opened from its parent.
    fn dir_fd(&self, node: &Node) -> io::Result<Arc<OwnedFd>> {
        self.dir_fd_depth(node, 0)
    }

    fn dir_fd_depth(&self, node: &Node, depth: usize) -> io::Result<Arc<OwnedFd>> {
        let loc = node.loc();
        if is_virtual(loc.parent) {
            return node.inst.root();
        }
        if let Some(fd) = self.dirs.get(node.ino) {
            return Ok(fd);
        }
        if depth > MAX_DEPTH {
            return Err(stale());
        }
        let parent = self.node(loc.parent)?;
        let pfd = self.dir_fd_depth(&parent, depth + 1)?;
        let fd = self.open_verified(
            pfd.as_fd(),
            loc.name(),
            node,
            OFlags::PATH | OFlags::DIRECTORY,
        )?;
        let fd = Arc::new(fd);
        self.dirs.put(node.ino, node.inst.seq, fd.clone());
        Ok(fd)
    }

    /// Opens `name` in `dir` with `O_PATH|O_NOFOLLOW` (plus `extra`) and checks it is `node`.
    fn open_verified(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        node: &Node,
        extra: OFlags,
    ) -> io::Result<OwnedFd> {
        let fd = self.retry_emfile(|| {
            openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra,
                Mode::empty(),
            )
        })?;
        let st = statx(&fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
        check_same(node, &st)?;
        Ok(fd)
    }

    /// Runs an fd-creating call; on EMFILE drops the directory cache once and retries, so a
    /// low RLIMIT_NOFILE costs speed, never correctness.
    fn retry_emfile<T>(&self, f: impl Fn() -> rustix::io::Result<T>) -> io::Result<T> {
        match f() {
            Err(rustix::io::Errno::MFILE) => {
                self.dirs.clear();
                self.files.clear();
                Ok(f()?)
            }
            r => Ok(r?),
        }
    }
}

impl CtrFs {
    /// The parent directory's fd and this node's name in it. Not for instance roots.
    fn parent_fd(&self, node: &Node) -> io::Result<(Arc<OwnedFd>, nodes::Name)> {
        let loc = node.loc();
        if is_virtual(loc.parent) {
            return Err(errno(libc::EINVAL));
        }
        let parent = self.node(loc.parent)?;
        Ok((self.dir_fd(&parent)?, loc.name))
    }

    /// Fresh attributes of a node, checking it is still the same file.
    fn stat_node(&self, node: &Node) -> io::Result<Statx> {
        let loc = node.loc();
        let cached = if is_virtual(loc.parent) {
            let root = node.inst.root()?;
            if !node.inst.has_process() {
                // Keyed by the instance alone (see `lookup_container`): whatever mount now
                // backs it is its root.
                return Ok(statx(&*root, "", AtFlags::EMPTY_PATH, STATX_MASK)?);
            }
            Some(root)
        } else {
            self.dirs.get(node.ino)
        };
        let st = match cached {
            Some(fd) => statx(&*fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?,
            None => {
                let (pfd, name) = self.parent_fd(node)?;
                statx(
                    &*pfd,
                    OsStr::from_bytes(&name),
                    AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
                    STATX_MASK,
                )?
            }
        };
        check_same(node, &st)?;
        let mut st = st;
        self.shown_stat(&node.inst, &mut st);
        Ok(st)
    }

    /// How a file's stats are shown in `inst`: in a `.diff` view, whiteouts become links.
    fn shown_stat(&self, inst: &Instance, st: &mut Statx) {
        if inst.source == crate::instance::Source::Diff {
            attr::whiteout_as_link(st);
        }
    }

    /// Names from the container root down to directory node `dir`.
    fn path_of(&self, dir: &Node) -> io::Result<Vec<nodes::Name>> {
        let mut names = Vec::new();
        let mut loc = dir.loc();
        while !is_virtual(loc.parent) {
            if names.len() > MAX_DEPTH {
                return Err(stale());
            }
            names.push(loc.name.clone());
            loc = self.node(loc.parent)?.loc();
        }
        names.reverse();
        Ok(names)
    }

    /// The mount id if `name` in directory `dir` is the mountpoint of a mount that is never
    /// touched. Costs nothing for containers without such mounts (the common case).
    fn unserved_child(
        &self,
        dir: &Node,
        dir_path: &mut Option<Vec<u8>>,
        name: &OsStr,
    ) -> io::Result<Option<u64>> {
        let table = dir.inst.mounts(false);
        if !table.has_unserved() {
            return Ok(None);
        }
        if dir_path.is_none() {
            let mut p = Vec::new();
            for c in self.path_of(dir)? {
                p.extend_from_slice(&c);
                p.push(b'/');
            }
            *dir_path = Some(p);
        }
        let mut path = dir_path.clone().unwrap_or_default();
        path.extend_from_slice(name.as_bytes());
        Ok(table.unserved_at(&path))
    }
}

/// ESTALE unless `st` describes the file `node` was created for.
fn check_same(node: &Node, st: &Statx) -> io::Result<()> {
    let k = &node.key;
    if st.stx_ino == k.ino && dev_of(st) == k.dev && st.stx_mnt_id == u64::from(k.mnt) {
        Ok(())
    } else {
        Err(stale())
    }
}
