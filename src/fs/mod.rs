//! The FUSE filesystem: the mount root lists the registry; below it, each container's files
//! are served read-only from fds held relative to the container's root.
//!
//! - [`nodes`]: ctrfsd inode numbers and where each node was last seen.
//! - [`fdcache`]: bounded LRUs of directory fds and of read fds.
//! - [`handles`]: open files and directories.
//! - [`guard`]: deadlines for the calls a container can block (opens for reading, reads).
//! - [`attr`]: statx -> FUSE attributes; which filesystems are pseudo.
//! - `resolve` (here): reaching a node's fd one component at a time, `O_NOFOLLOW`, from the
//!   container root, verifying each step is still the same inode, and never crossing onto a
//!   mount that is not served (`Core::child_at`).
//! - `ops`, `dirs`: the request logic, returning `io::Result`; `fuse`: the thin
//!   `Filesystem` impl.
//! - `held`: attributes of an open file no longer at its name, from the fd held for it.
//! - `links`: `readlink` answers, rewritten by [`crate::pathsafe`]; `derived`: taking back
//!   from the kernel, within half a second, answers that depend on other entries.
//! - `probe`: `user.ctrfsd.host_path`, the host path of a file's real inode (for eBPF probes).
//! - `replies`: what the helper threads of [`guard`] need to answer requests themselves.
//! - `seek`: `lseek(SEEK_DATA/SEEK_HOLE)` answered from the real file.
//! - `listing`: a real directory's listing, built under the deadline before its reply.
//! - [`prefetch`]: small files pushed into the kernel's page cache ahead of a walk that reads
//!   a directory file by file (FUSE_NOTIFY_STORE).
//! - [`nextdir`]: a walk's next directory listed and stat'ed ahead, answered only while no
//!   change was reported since.
//!
//! Containment (DESIGN.md invariant 1): every path operation here is relative to a held
//! directory fd with a single-component name and `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, or goes
//! through `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from the
//! container root. No `/proc/<pid>/root/...` path string is ever built for I/O.

pub mod attr;
mod coldahead;
mod derived;
mod dirs;
pub mod fdcache;
mod fuse;
pub mod guard;
mod guarded;
pub mod handles;
mod held;
mod links;
mod listing;
mod logview;
pub mod nextdir;
pub mod nodes;
mod ops;
pub mod prefetch;
mod probe;
mod replies;
mod seek;
pub mod stats;
mod stdio_links;
mod virt;
mod walk;
pub mod watch;

/// The name of the root's request report attribute (`user.ctrfsd.requests`).
pub(crate) use ops::REQUESTS_XATTR;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Statx, statx};

use crate::instance::{Instance, stale};
use crate::mounts::MountKind;
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
    /// `--allow-group`: the group that owns the mount root (mode 0550); `None`: root's, 0555.
    pub allow_group: Option<u32>,
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
    /// Link answers the kernel holds that depend on other entries ([`derived`]).
    derived: Arc<derived::DerivedLinks>,
}

/// The FUSE filesystem: the registry's tree of names, and every container's files below it.
pub struct CtrFs {
    core: Arc<Core>,
    handles: Arc<Handles>,
    /// Runs opens for reading and reads off the FUSE workers, with a deadline.
    guard: guard::Guard,
    opts: Options,
    /// The mount root's timestamps.
    started: std::time::SystemTime,
    /// Passthrough was asked for and the kernel agreed (set in `init`).
    passthrough_on: bool,
    /// Requests answered, by kind, and errors by errno.
    stats: Arc<stats::Stats>,
    /// `/ctr/.logs`: the containers' log stores ([`logview`]).
    logs: logview::LogViews,
    /// Small files stored in the kernel's page cache ahead of a walk ([`prefetch`]).
    prefetch: Arc<prefetch::Prefetch>,
    /// Listings of a walk's next directory, read ahead ([`nextdir`]).
    next_dirs: Arc<nextdir::NextDirs>,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// What the FUSE session runs: the filesystem, shared with the helper threads of [`guard`]
/// that answer the requests a container can block.
pub struct FuseFs(Arc<CtrFs>);

impl std::ops::Deref for FuseFs {
    type Target = CtrFs;
    fn deref(&self) -> &CtrFs {
        &self.0
    }
}

impl CtrFs {
    /// The filesystem over `registry`, ready for `fuser::Session::new` (shared with the
    /// helper threads that answer opens, reads and listings under a deadline).
    ///
    /// # Errors
    ///
    /// If `/proc` cannot be opened, or the helper-thread guard cannot be set up.
    #[allow(clippy::new_ret_no_self)] // the one way to build it is already shared
    pub fn new(registry: Arc<Registry>, opts: Options) -> io::Result<FuseFs> {
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dirs = Arc::new(FdCache::new(opts.fd_cache));
        let files = Arc::new(FdCache::new(opts.fd_cache));
        let watches = Arc::new(watch::Watches::new(opts.cache_ttl, TTL, opts.max_watches));
        // A retired container's directory fds and watches go at once (nothing may be looked
        // up in it any more). Its read fds on its root mount stay until the kernel forgets
        // their inodes: a file a host tool holds open keeps reading, as on a real filesystem
        // after its directory is removed. Those on other mounts (volumes, tmpfs) go by the
        // idle sweep as before, or they would keep those filesystems busy (`fdcache`).
        let (hook_dirs, hook_watches) = (dirs.clone(), watches.clone());
        registry.set_on_retire(Box::new(move |inst: &Instance| {
            hook_dirs.purge_instance(inst.seq);
            hook_watches.drop_instance(inst.seq);
        }));
        // Idle fds on a container's other mounts go within 1.5 s (see `fdcache`).
        fdcache::spawn_sweeper(vec![Arc::downgrade(&dirs), Arc::downgrade(&files)])?;
        Ok(FuseFs(Arc::new(CtrFs {
            core: Arc::new(Core {
                registry,
                nodes: Arc::new(Nodes::default()),
                dirs,
                files,
                proc_fd,
                watches,
                derived: Arc::default(),
            }),
            handles: Arc::new(Handles::default()),
            guard: guard::Guard::new()?,
            opts,
            started: std::time::SystemTime::now(),
            passthrough_on: false,
            stats: Arc::new(stats::Stats::default()),
            logs: logview::LogViews::default(),
            prefetch: Arc::default(),
            next_dirs: Arc::default(),
        })))
    }

    /// The request counters, for the report logged at exit.
    pub fn stats(&self) -> Arc<stats::Stats> {
        self.stats.clone()
    }

    /// The prefetcher, which needs the session's notifier ([`prefetch::Prefetch::set_notifier`]).
    pub fn prefetcher(&self) -> Arc<prefetch::Prefetch> {
        self.prefetch.clone()
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
            derived: self.core.derived.clone(),
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
        let (fd, _) = self.open_verified(&node.inst, pfd.as_fd(), loc.name(), node, true)?;
        let fd = Arc::new(fd);
        self.dirs.put(node, fd.clone());
        Ok(fd)
    }

    /// Opens `name` in `dir` (see [`Self::child_at`]) and checks it is `node`, a directory if
    /// `dir_only`; the `O_PATH` fd and the file's status. A mount that is not served where
    /// `node` was is ESTALE: the kernel looks the name up again and finds the placeholder.
    fn open_verified(
        &self,
        inst: &Instance,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        node: &Node,
        dir_only: bool,
    ) -> io::Result<(OwnedFd, Statx)> {
        let Reached::Here(fd, st) = self.child_at(inst, dir, name)? else {
            return Err(stale());
        };
        check_same(node, &st)?;
        if dir_only && node.kind != fuser::FileType::Directory {
            return Err(errno(libc::ENOTDIR));
        }
        Ok((fd, st))
    }

    /// Reaches `name` in directory `dir` of `inst` without any system call into a mount that
    /// is not served, even one the container made a moment ago (DESIGN.md invariant 4).
    ///
    /// The name is opened `O_PATH|O_NOFOLLOW` with `RESOLVE_NO_XDEV`, which the kernel refuses
    /// (EXDEV) when the name is a mountpoint, before anything is asked of the mounted
    /// filesystem; then its stats come from the fd, on the directory's own filesystem. At a
    /// mountpoint, the name is opened `O_PATH` again, crossing: path walk and an `O_PATH` open
    /// call nothing in a FUSE filesystem (no `open`, no `getattr`; the root's dentry is not
    /// revalidated), and the mount id comes from `/proc/self/fdinfo`, which asks the
    /// filesystem nothing either. Only a mount the (re-read) table calls served or pseudo is
    /// then `statx`ed. (Kernel: fs/namei.c `handle_mounts` returns EXDEV under
    /// `LOOKUP_NO_XDEV`; fs/open.c `do_dentry_open` returns early for `O_PATH`. A network
    /// filesystem with `d_weak_revalidate`, NFS, may be asked to revalidate its root by the
    /// crossing open: README, "Mounts a container makes".)
    pub(crate) fn child_at(
        &self,
        inst: &Instance,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> io::Result<Reached> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // From the dentry cache alone on a FUSE worker (`walk`): a lookup may wait on a
        // directory lock the container holds.
        match self.retry_emfile(|| walk::openat2(dir, name, flags, ResolveFlags::NO_XDEV)) {
            Ok(fd) => {
                let st = statx(&fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
                Ok(Reached::Here(fd, st))
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let fd =
                    self.retry_emfile(|| walk::openat2(dir, name, flags, ResolveFlags::empty()))?;
                let mnt = crate::mounts::mount_id_of(fd.as_fd())?;
                match inst.mount_kind(mnt) {
                    MountKind::Unserved => Ok(Reached::Unserved(mnt)),
                    _ => {
                        let st = statx(&fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
                        if st.stx_mnt_id != mnt {
                            return Err(stale()); // remounted meanwhile: look again
                        }
                        Ok(Reached::Here(fd, st))
                    }
                }
            }
            Err(e) => Err(e),
        }
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
                match self.child_at(&node.inst, pfd.as_fd(), OsStr::from_bytes(&name))? {
                    Reached::Here(_, st) => st,
                    Reached::Unserved(_) => return Err(stale()),
                }
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

/// What [`Core::child_at`] found at a name.
#[allow(clippy::large_enum_variant)] // short-lived, on the stack: boxing would allocate per lookup
pub(crate) enum Reached {
    /// A file on a served (or pseudo) filesystem: its `O_PATH` fd and stats.
    Here(OwnedFd, Statx),
    /// The mountpoint of a mount that is never touched, with its mount id.
    Unserved(u64),
}

impl Core {
    /// EACCES unless a process of the user whose endpoint reports `node`'s container could
    /// have `want` ([`crate::idmap`]) on directory `node`, open as `fd`. Root's runtimes'
    /// containers: no system call.
    fn may_dir(&self, node: &Node, fd: &OwnedFd, want: u32) -> io::Result<()> {
        if !node.inst.is_confined() {
            return Ok(());
        }
        let st = statx(fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
        node.inst.may(&st, want)
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
