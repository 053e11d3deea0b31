//! A bounded LRU of `O_PATH` directory fds, so lookups in a directory cost one `statx` instead
//! of re-opening the directory's whole chain from the container root.
//!
//! Bounded by construction: the cache holds at most `capacity` fds, whatever the tree size.
//! Entries are tagged with their instance's seq and purged when the instance is retired, so a
//! dead container's mounts are not kept alive by us.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use lru::LruCache;

pub struct DirCache {
    lru: Mutex<LruCache<u64, (u64, Arc<OwnedFd>)>>,
}

impl DirCache {
    pub fn new(capacity: usize) -> DirCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        DirCache {
            lru: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, (u64, Arc<OwnedFd>)>> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, ino: u64) -> Option<Arc<OwnedFd>> {
        self.lock().get(&ino).map(|(_, fd)| fd.clone())
    }

    pub fn put(&self, ino: u64, seq: u64, fd: Arc<OwnedFd>) {
        self.lock().put(ino, (seq, fd));
    }

    pub fn remove(&self, ino: u64) {
        self.lock().pop(&ino);
    }

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
