//! A bounded LRU of fds by inode number. Two are used: `O_PATH` directory fds, so a lookup in a
//! directory costs one `statx` instead of re-opening the directory's chain from the container
//! root; and read-only file fds, for reads that arrive without an open (the default mode answers
//! `open` with ENOSYS, so the kernel skips that round trip and keeps its page cache).
//!
//! Bounded by construction: each cache holds at most `capacity` fds, whatever the tree size.
//! Entries are tagged with their instance's seq and purged when the instance is retired, so a
//! dead container's mounts are not kept alive by us.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// A bounded LRU of fds by inode number, each tagged with its instance's `seq`.
pub struct FdCache {
    /// inode -> (instance seq, fd): least recently used first out, so the fds held stay
    /// bounded whatever the kernel holds.
    lru: Mutex<LruCache<u64, (u64, Arc<OwnedFd>)>>,
}

impl FdCache {
    /// An empty cache holding at most `capacity` fds (at least one).
    pub fn new(capacity: usize) -> FdCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        FdCache {
            lru: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, (u64, Arc<OwnedFd>)>> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached fd of `ino`, marked as just used.
    pub fn get(&self, ino: u64) -> Option<Arc<OwnedFd>> {
        self.lock().get(&ino).map(|(_, fd)| fd.clone())
    }

    /// Caches `fd` for `ino` of instance `seq`, pushing out the least recently used.
    pub fn put(&self, ino: u64, seq: u64, fd: Arc<OwnedFd>) {
        self.lock().put(ino, (seq, fd));
    }

    /// Drops the fd of `ino`, if cached.
    pub fn remove(&self, ino: u64) {
        self.lock().pop(&ino);
    }

    /// Drops every fd of instance `seq` (it was retired: its mounts must not stay busy).
    pub fn purge_instance(&self, seq: u64) {
        let mut lru = self.lock();
        let dead: Vec<u64> = lru
            .iter()
            .filter(|(_, (s, _))| *s == seq)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in dead {
            lru.pop(&ino);
        }
    }

    /// Drops every cached fd (used when the process runs out of fds).
    pub fn clear(&self) {
        self.lock().clear();
    }
}
