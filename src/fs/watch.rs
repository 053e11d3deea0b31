//! Change notification: inotify watches on the directories the kernel has listed, so that what
//! ctrfsd tells the kernel about them can be trusted for long (`--cache-ttl`), and is taken
//! back the moment something changes.
//!
//! The kernel may keep an entry or attributes for the TTL of the reply that carried them. A
//! short TTL (1 s) costs a `statx` in ctrfsd for every file of every walk that comes more than a
//! second after the last; a long one would serve a rewritten file stale. With a watch on a
//! directory, every change to it or to a file in it made through the container's filesystem
//! (by the container, by `docker cp`, by the host through a volume) reaches ctrfsd as an event,
//! and ctrfsd invalidates the kernel's copy at once. So replies get the long TTL only where a
//! watch covers them:
//!
//! - an entry and its attributes, when its directory is watched and it is on the same mount
//!   (a mountpoint, e.g. a bind-mounted `/etc/hosts`, changes where no watch here sees it);
//! - a directory's own attributes and listing only when it is watched itself (a change inside
//!   a directory is reported to that directory's watch, not its parent's);
//! - never a regular file with more than one link (a write through another link reports to
//!   the other directory).
//!
//! Directories are watched when first opened (`opendir`) or first looked up in, before they
//! are read, so no change between the read and the watch can be missed. A file that a watch
//! sees renamed into (or linked into) a watched directory is found there from then on: a host
//! tool holding it open keeps reading the file, not its old name. Watches end when the kernel forgets the
//! directory (then it holds nothing below it either), when the container is retired, or when
//! the directory is deleted; there are at most `--max-watches`, and past that directories are
//! served with the short TTL, as without watches.
//!
//! Races: attributes the kernel receives in a reply that was in flight when an invalidation
//! arrived are discarded by the kernel itself (FUSE `attr_version`). A name, however, could be
//! linked by the requesting task after its invalidation went by; name invalidations are
//! therefore sent twice, the second time [`RESEND`] later.
//!
//! What no event reports, and so may be served stale for up to the long TTL: writes through a
//! shared memory map, writes into a deleted file through a descriptor still open, mounts
//! changed inside a running container, and changes made to a layer's directory directly
//! instead of through the container's filesystem.
//!
//! This file owns the watch table (which inotify watch covers which directory nodes) and
//! reads and decodes the events; `watch/invalidate.rs` is the watch thread that turns them into
//! invalidations of what the kernel caches.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::Notifier;
use log::{info, warn};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use smallvec::SmallVec;

use super::nodes::{Node, Nodes};

/// When a name invalidation is sent again (see the module comment).
pub const RESEND: Duration = Duration::from_millis(200);

mod invalidate;

/// Everything that changes a directory's entries or an entry's attributes or data.
fn mask() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

/// What the event loop needs of the filesystem: a directory node's fd.
pub trait DirFds: Send + Sync {
    /// An fd of the directory `node` (to add an inotify watch on it).
    ///
    /// # Errors
    ///
    /// Whatever opening it answers; the directory is then not watched.
    fn dir_fd_of(&self, node: &Node) -> std::io::Result<Arc<OwnedFd>>;
}

/// Starts [`Watches::run`] on its own thread, given the session's notifier.
pub struct Starter {
    pub(super) watches: Arc<Watches>,
    pub(super) nodes: Arc<Nodes>,
    pub(super) fds: Arc<dyn DirFds>,
    /// Takes back derived link answers ([`super::derived`]), watching or not.
    pub(super) derived: Arc<super::derived::DerivedLinks>,
}

impl Starter {
    /// No watch thread when watching is off; the derived-answer sweep runs always.
    ///
    /// # Errors
    ///
    /// The `io::Error` of a thread's creation (`EAGAIN` from `clone` when the thread or memory limit
    /// is reached); if the watch thread fails, the derived-links thread already runs.
    pub fn start(self, notifier: Notifier) -> std::io::Result<()> {
        let (derived, n) = (self.derived.clone(), notifier.clone());
        std::thread::Builder::new()
            .name("derived-links".into())
            .spawn(move || derived.run(n))?;
        if !self.watches.enabled() {
            return Ok(());
        }
        std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || self.watches.run(self.nodes, self.fds, notifier))?;
        Ok(())
    }
}

#[derive(Default)]
struct Table {
    /// Watch descriptor -> the directory nodes it covers: (ino, instance seq). One inode can be
    /// two nodes (a volume shared by two containers).
    by_wd: HashMap<i32, SmallVec<[(u64, u64); 1]>>,
    of_node: HashMap<u64, i32>,
}

/// The inotify watches on directories the kernel caches, and their counters.
pub struct Watches {
    /// `None` when watching is off (`--cache-ttl 1`) or inotify is unavailable.
    fd: Option<OwnedFd>,
    long_ttl: Duration,
    max: usize,
    table: Mutex<Table>,
    full_logged: AtomicBool,
    events: AtomicU64,
    /// Reads of the event queue begun (counted before each read: [`Self::quiet_since`]).
    batches: AtomicU64,
    invalidations: AtomicU64,
    overflows: AtomicU64,
}

impl Watches {
    /// Watching with `long_ttl` for what watches cover, at most `max` watches. A TTL no longer
    /// than `short` turns watching off.
    pub fn new(long_ttl: Duration, short: Duration, max: usize) -> Watches {
        let fd = if long_ttl <= short || max == 0 {
            None
        } else {
            match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    warn!(
                        "inotify unavailable ({e}): entries are cached for {} s only",
                        short.as_secs()
                    );
                    None
                }
            }
        };
        Watches {
            long_ttl: if fd.is_some() { long_ttl } else { short },
            fd,
            max,
            table: Mutex::default(),
            full_logged: AtomicBool::new(false),
            events: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    /// True if directories are watched at all.
    pub fn enabled(&self) -> bool {
        self.fd.is_some()
    }

    /// The TTL for what a watch covers.
    pub fn long_ttl(&self) -> Duration {
        self.long_ttl
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many directories are watched now.
    pub fn count(&self) -> usize {
        self.table().by_wd.len()
    }

    /// Lines for the request counters (`user.ctrfsd.requests`).
    pub fn report(&self) -> String {
        if !self.enabled() {
            return String::new();
        }
        format!(
            "watched-dirs {}\nwatch-events {}\ninvalidations {}\nqueue-overflows {}\n",
            self.count(),
            self.events.load(Ordering::Relaxed),
            self.invalidations.load(Ordering::Relaxed),
            self.overflows.load(Ordering::Relaxed)
        )
    }

    /// How many reads of the event queue have begun; see [`Self::quiet_since`].
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::SeqCst)
    }

    /// True if no change was reported to any watch since [`Self::batches`] returned `n`: no
    /// read of the event queue began since, and no event waits in it (`FIONREAD`). An event
    /// is queued by the change itself (fsnotify runs in the changing call), so a change made
    /// before this call either waits in the queue or was read after `n`. False when watching
    /// is off.
    pub fn quiet_since(&self, n: u64) -> bool {
        let Some(fd) = &self.fd else { return false };
        self.batches.load(Ordering::SeqCst) == n
            && rustix::io::ioctl_fionread(fd).is_ok_and(|queued| queued == 0)
    }

    /// True if the directory `ino` is watched (its entries may be cached for the long TTL).
    pub fn is_watched(&self, ino: u64) -> bool {
        self.fd.is_some() && self.table().of_node.contains_key(&ino)
    }

    /// Watches directory `node`, whose `O_PATH` fd is `dir`; true if it is watched.
    pub fn watch(&self, node: &Node, dir: &OwnedFd) -> bool {
        let Some(ifd) = &self.fd else { return false };
        let mut t = self.table();
        if t.of_node.contains_key(&node.ino) {
            return true;
        }
        if t.by_wd.len() >= self.max {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                info!(
                    "{} directories watched (--max-watches): further ones are cached for 1 s only",
                    self.max
                );
            }
            return false;
        }
        // The fd's magic link names exactly the directory already verified: no path walk in
        // the container.
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        match inotify::add_watch(ifd, path.as_str(), mask()) {
            Ok(wd) => {
                t.by_wd
                    .entry(wd)
                    .or_default()
                    .push((node.ino, node.inst.seq));
                t.of_node.insert(node.ino, wd);
                true
            }
            Err(e) => {
                if !self.full_logged.swap(true, Ordering::Relaxed) {
                    warn!(
                        "inotify_add_watch: {e} (fs.inotify.max_user_watches reached?): \
                         further directories are cached for 1 s only"
                    );
                }
                false
            }
        }
    }

    /// Ends the watch of node `ino` (the kernel forgot it).
    pub fn unwatch(&self, ino: u64) {
        let Some(ifd) = &self.fd else { return };
        let mut t = self.table();
        let Some(wd) = t.of_node.remove(&ino) else {
            return;
        };
        if let Some(list) = t.by_wd.get_mut(&wd) {
            list.retain(|(i, _)| *i != ino);
            if list.is_empty() {
                t.by_wd.remove(&wd);
                let _ = inotify::remove_watch(ifd, wd);
            }
        }
    }

    /// Ends every watch of instance `seq` (its container is gone).
    pub fn drop_instance(&self, seq: u64) {
        let inos: Vec<u64> = {
            let t = self.table();
            t.by_wd
                .values()
                .flatten()
                .filter(|(_, s)| *s == seq)
                .map(|(i, _)| *i)
                .collect()
        };
        for ino in inos {
            self.unwatch(ino);
        }
    }

    fn nodes_of(&self, wd: i32) -> SmallVec<[(u64, u64); 1]> {
        self.table().by_wd.get(&wd).cloned().unwrap_or_default()
    }

    /// Forgets a watch the kernel removed (its directory was deleted or unmounted).
    fn ignored(&self, wd: i32) -> SmallVec<[(u64, u64); 1]> {
        let mut t = self.table();
        let list = t.by_wd.remove(&wd).unwrap_or_default();
        for (ino, _) in &list {
            t.of_node.remove(ino);
        }
        list
    }

    /// Reads every queued event, deduplicated.
    fn read_batch(&self, ifd: &OwnedFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> Vec<Ev> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // Before the queue is read: `quiet_since` must see a change this read takes.
        self.batches.fetch_add(1, Ordering::SeqCst);
        let mut reader = inotify::Reader::new(ifd, buf);
        loop {
            match reader.next() {
                Ok(e) => {
                    self.events.fetch_add(1, Ordering::Relaxed);
                    let ev = Ev {
                        wd: e.wd(),
                        flags: e.events(),
                        name: e.file_name().map(|n| n.to_bytes().to_vec()),
                    };
                    if seen.insert((ev.wd, ev.flags.bits(), ev.name.clone())) {
                        out.push(ev);
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: drained
            }
            if out.len() >= 16 * 1024 {
                break;
            }
        }
        out
    }
}

struct Ev {
    wd: i32,
    flags: ReadFlags,
    name: Option<Vec<u8>>,
}

/// The default `--max-watches`: a quarter of the per-user inotify limit, which every other
/// root process on the host (systemd, kubelet) shares.
pub fn default_max_watches() -> usize {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(|n| n / 4)
        .unwrap_or(8192)
}
