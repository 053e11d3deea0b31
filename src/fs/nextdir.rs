//! Reading a walk's next directory before it is asked: while `find` or `grep -r` works through
//! one directory's entries, its next sibling is listed and stat'ed on a helper thread.
//!
//! Why: a first walk waits for each listing (the reader blocks on its readdirplus while ctrfsd
//! lists the directory and stats every entry), then works through the entries while ctrfsd
//! idles: the two costs add up. `find` and `grep -r` (fts) read one directory whole, then
//! visit its subdirectories in listing order, so when a subdirectory's listing is read through
//! ctrfsd (its first readdirplus: a walk the kernel cannot answer from its own cache) the walk
//! will most likely open the next one in its parent's listing soon after. That one is listed
//! on a helper thread at once; its readdirplus then answers from what was read. A walk the
//! kernel answers from its cache (a repeated `find`) sends no readdirplus and reads nothing
//! ahead.
//!
//! When what was read may be given: the directory was watched before it was read (as for
//! every listing whose entries get the long TTL), no change notification came in or waits to be
//! read since then (any event in any watched directory counts: [`Watches::quiet_since`]), and
//! it is at most [`FRESH`] old. Otherwise the directory is read when asked, as without this.
//! The answer a reader gets is then the same as a listing read at the time the directory was
//! read ahead, with nothing changed since: what the kernel would have been told by a reply
//! sent at that moment.
//!
//! Bounds: one directory read ahead per listing read from its start, only a subdirectory a
//! readdirplus reply just handed to the kernel, only in a container without unserved mounts,
//! one batch (`dirs::read_batch`: at most the `dirs` readdirplus size and 500 ms of `statx`),
//! at most `READY` (4) listings kept (the oldest dropped), one fd while it reads; under the
//! guard's deadline and per-container limit, like every listing.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::FileType;
use lru::LruCache;

use super::dirs::{Prestat, RawEntry, dir_handle, read_batch};
use super::nodes::{Node, Shown};
use super::watch::Watches;
use super::{Core, CtrFs};

/// Directories whose subdirectory order is remembered (the walk's current path and a few).
const ORDERS: usize = 32;
/// Listings read ahead and not yet asked for.
const READY: usize = 4;
/// How old a listing read ahead may be when it is asked for.
pub const FRESH: Duration = Duration::from_secs(1);

/// A listing read ahead: the first batch of a directory, as `dirs::read_batch` reads it.
pub struct Ahead {
    pub(super) entries: Vec<RawEntry>,
    pub(super) more: bool,
    /// The watches' read count before the directory was read ([`Watches::batches`]).
    batches: u64,
    at: Instant,
    watches: Arc<Watches>,
}

impl Ahead {
    /// True if it may still be given: nothing changed in a watched directory since it was
    /// read, and it is at most [`FRESH`] old.
    pub(super) fn still_true(&self) -> bool {
        self.at.elapsed() < FRESH && self.watches.quiet_since(self.batches)
    }
}

/// Subdirectory orders and listings read ahead.
pub struct NextDirs {
    /// Directory -> its subdirectories' inode numbers, in the order readdirplus sent them.
    order: Mutex<LruCache<u64, Vec<u64>>>,
    /// Directory -> its listing read ahead (`None` while a helper reads it).
    ready: Mutex<LruCache<u64, Option<Ahead>>>,
    /// Listings read ahead, and given to a reader.
    read: AtomicU64,
    used: AtomicU64,
}

impl Default for NextDirs {
    fn default() -> NextDirs {
        let n = |x| NonZeroUsize::new(x).unwrap_or(NonZeroUsize::MIN);
        NextDirs {
            order: Mutex::new(LruCache::new(n(ORDERS))),
            ready: Mutex::new(LruCache::new(n(READY))),
            read: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }
}

impl NextDirs {
    /// `name count` lines for the request report (`user.ctrfsd.requests`).
    pub fn report(&self) -> String {
        format!(
            "nextdir-read {}\nnextdir-used {}\n",
            self.read.load(Ordering::Relaxed),
            self.used.load(Ordering::Relaxed)
        )
    }

    /// Notes that a readdirplus reply for `dir` handed subdirectory `child` to the kernel;
    /// `first`: the first one of a listing read from its start (the order starts afresh).
    pub(super) fn subdir(&self, dir: u64, first: bool, child: u64) {
        let mut o = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let list = o.get_or_insert_mut(dir, Vec::new);
        if first {
            list.clear();
        }
        if !list.contains(&child) {
            list.push(child);
        }
    }

    /// The listing read ahead for directory `ino`, if it may still be given.
    pub(super) fn take(&self, ino: u64) -> Option<Ahead> {
        let a = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(&ino)??;
        if !a.still_true() {
            return None;
        }
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(a)
    }

    /// The subdirectory after `ino` in its parent `parent`'s order, if known and not read
    /// ahead already; marked as being read.
    fn claim_next(&self, parent: u64, ino: u64) -> Option<u64> {
        let next = {
            let mut o = self.order.lock().unwrap_or_else(|e| e.into_inner());
            let list = o.get(&parent)?;
            let at = list.iter().position(|&c| c == ino)?;
            *list.get(at + 1)?
        };
        let mut r = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if r.contains(&next) {
            return None;
        }
        r.put(next, None);
        Some(next)
    }

    fn put(&self, ino: u64, a: Option<Ahead>) {
        let mut r = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        match a {
            Some(a) => {
                self.read.fetch_add(1, Ordering::Relaxed);
                r.put(ino, Some(a));
            }
            None => {
                r.pop(&ino);
            }
        }
    }
}

impl CtrFs {
    /// The listing of directory `node` is being read from its start (readdirplus): reads its
    /// next sibling ahead on a helper thread (module doc).
    pub(super) fn read_next_after(&self, node: &Node) {
        let parent = node.loc().parent;
        let Some(next) = self.next_dirs.claim_next(parent, node.ino) else {
            return;
        };
        let (core, nd) = (self.core.clone(), self.next_dirs.clone());
        let r = self.guard.run(
            super::guard::Bucket::of(node),
            (),
            |()| {},
            move |_claim| {
                let a = read_ahead(&core, next);
                nd.put(next, a);
            },
        );
        if r.is_err() {
            self.next_dirs.put(next, None);
        }
    }
}

/// Reads directory `ino` ahead if it qualifies (module doc).
fn read_ahead(core: &Core, ino: u64) -> Option<Ahead> {
    let node = core.node(ino).ok()?;
    if node.kind != FileType::Directory
        || node.shown != Shown::Normal
        || node.inst.mounts(false).has_unserved()
    {
        return None;
    }
    let dfd = core.dir_fd(&node).ok()?;
    // Watched before it is read (as `do_opendir` does): a change after this point is reported.
    if !core.watches.watch(&node, &dfd) {
        return None;
    }
    let (batches, at) = (core.watches.batches(), Instant::now());
    let (entries, more) = read_ahead_batch(core, &dfd).ok()?;
    Some(Ahead {
        entries,
        more,
        batches,
        at,
        watches: core.watches.clone(),
    })
}

/// Reads the first readdirplus batch of directory `dir` (an `O_PATH` fd) ahead, with its
/// entries' status ([`super::nextdir`]). This may wait on the container as [`read_batch`]
/// does: run it under [`super::guard`].
fn read_ahead_batch(core: &Core, dir: &OwnedFd) -> io::Result<(Vec<RawEntry>, bool)> {
    let prestat = Prestat {
        on: true,
        ahead: None,
    };
    read_batch(&dir_handle(core, dir, prestat)?, 0, true)
}
