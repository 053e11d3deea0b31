//! A bounded LRU of fds by inode number. Two are used: `O_PATH` directory fds, so a lookup in a
//! directory costs one `statx` instead of re-opening the directory's chain from the container
//! root; and read-only file fds, for reads that arrive without an open (the default mode answers
//! `open` with ENOSYS, so the kernel skips that round trip and keeps its page cache).
//!
//! Bounded by construction: each cache holds at most `capacity` fds, whatever the tree size.
//! Entries are tagged with their instance's seq and purged when the instance is retired, so a
//! dead container's mounts are not kept alive by us.
//!
//! Bounded in time too (DESIGN.md invariant 3): an fd held in a container keeps its mount
//! busy, and `umount` inside the container (a tmpfs it mounted) or on the host (a volume that
//! propagates into it, as kubelet tears volumes down) fails with EBUSY while ctrfsd holds one.
//! So a sweeper thread closes every fd on another mount than the container's root that was
//! unused for [`IDLE`]: within `IDLE` + [`SWEEP`] (1.5 s) of the last request that touched it,
//! ctrfsd holds nothing on a container mount but the container's root. Fds on the root mount
//! itself stay (ctrfsd holds that mount anyway, through the root fd), so the image's files, the
//! common case, cost nothing, and a host tool holding such a file open keeps reading it after
//! the container stops. Fds on other mounts go by the same rule after the container's process
//! has exited: its namespace is gone, but an fd still keeps the filesystem itself busy (a
//! volume's block device cannot be detached or reformatted, the kubelet's detach fails), so a
//! host tool holding such a file open across the exit reads it only until the fd is swept.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustix::fs::{AtFlags, StatxFlags, statx};

use super::nodes::Node;

/// How long an unused fd stays cached. Long enough for one walk of a tree (a `grep -r` uses a
/// directory's fd while it reads its files), short enough that mounts are released promptly.
pub const IDLE: Duration = Duration::from_secs(1);

/// How often the sweeper looks for idle fds.
pub const SWEEP: Duration = Duration::from_millis(500);

/// One cached fd: the instance seq it belongs to, when it was last used, and whether it is
/// exempt from the idle sweep (it is on the container's root mount).
struct Entry {
    seq: u64,
    used: Instant,
    keep: bool,
    fd: Arc<OwnedFd>,
}

/// Fds by ctrfsd inode number, at most `capacity` of them, least recently used evicted first.
pub struct FdCache {
    /// One lock for lookups and the sweep: each holds it for a hash lookup, or a pass over at
    /// most 512 entries every [`SWEEP`].
    lru: Mutex<LruCache<u64, Entry>>,
}

impl FdCache {
    /// A cache of at most `capacity` fds (at least one).
    pub fn new(capacity: usize) -> FdCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        FdCache {
            lru: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Entry>> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fd cached for `ino`, marked as used now.
    pub fn get(&self, ino: u64) -> Option<Arc<OwnedFd>> {
        self.lock().get_mut(&ino).map(|e| {
            e.used = Instant::now();
            e.fd.clone()
        })
    }

    /// Caches `fd`, an fd of `node`. It is exempt from the idle sweep if it is on the same
    /// mount as its container's root.
    pub fn put(&self, node: &Node, fd: Arc<OwnedFd>) {
        // A live view's root mount id is known from when its root was opened: no syscall on
        // this path. A detached view's root may be reassembled, so it is asked each time.
        let on_root = match node.inst.root_mnt_id() {
            Some(mnt) => mnt as u32 == node.key.mnt,
            None => node.inst.root().is_ok_and(|root| {
                statx(&*root, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
                    .is_ok_and(|st| st.stx_mnt_id as u32 == node.key.mnt)
            }),
        };
        self.insert(node.ino, node.inst.seq, on_root, fd);
    }

    fn insert(&self, ino: u64, seq: u64, keep: bool, fd: Arc<OwnedFd>) {
        let entry = Entry {
            seq,
            used: Instant::now(),
            keep,
            fd,
        };
        self.lock().put(ino, entry);
    }

    /// Closes the fd of `ino` (the kernel forgot the inode).
    pub fn remove(&self, ino: u64) {
        self.lock().pop(&ino);
    }

    /// Closes every fd of instance `seq` (retired: nothing may be looked up in it any more).
    pub fn purge_instance(&self, seq: u64) {
        let mut lru = self.lock();
        let dead: Vec<u64> = lru
            .iter()
            .filter(|(_, e)| e.seq == seq)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in dead {
            lru.pop(&ino);
        }
    }

    /// Closes every fd unused since `before` (except kept ones); returns how many.
    pub fn drop_idle(&self, before: Instant) -> usize {
        let mut lru = self.lock();
        let idle: Vec<u64> = lru
            .iter()
            .filter(|(_, e)| !e.keep && e.used < before)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in &idle {
            lru.pop(ino);
        }
        idle.len()
    }

    /// Drops every cached fd (used when the process runs out of fds).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many fds are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no fd is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts the thread that closes idle fds of `caches` every [`SWEEP`]; it ends when the caches
/// are gone.
///
/// # Errors
///
/// The `io::Error` of the thread's creation (`EAGAIN` from `clone` when the thread or memory
/// limit is reached).
pub fn spawn_sweeper(caches: Vec<Weak<FdCache>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fd-sweeper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SWEEP);
                let Some(before) = Instant::now().checked_sub(IDLE) else {
                    continue;
                };
                let mut alive = false;
                for cache in caches.iter().filter_map(Weak::upgrade) {
                    alive = true;
                    let n = cache.drop_idle(before);
                    if n > 0 {
                        log::trace!("closed {n} idle fds");
                    }
                }
                if !alive {
                    return;
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> Arc<OwnedFd> {
        Arc::new(OwnedFd::from(std::fs::File::open("/").unwrap()))
    }

    #[test]
    fn idle_fds_go_kept_ones_stay() {
        let c = FdCache::new(8);
        c.insert(1, 7, false, fd());
        c.insert(2, 7, false, fd());
        c.insert(3, 9, false, fd());
        c.insert(5, 9, true, fd());
        // Every entry was last used before `later`.
        let later = Instant::now() + Duration::from_millis(1);
        assert_eq!(c.drop_idle(later), 3);
        assert!(c.get(1).is_none() && c.get(2).is_none() && c.get(3).is_none());
        assert!(c.get(5).is_some(), "a kept fd is not swept");
        let before = Instant::now() - Duration::from_secs(60);
        c.insert(4, 7, false, fd());
        assert_eq!(c.drop_idle(before), 0, "a fresh fd is not idle");
    }
}
