//! The process-wide bound on assembled detached views (stopped containers' overlay mounts and
//! `.diff` writable-layer fds): the least recently assembled is released first, and assembled
//! again when next used.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// How many stopped-container mounts and writable-layer fds are held at most; the least
/// recently assembled is released first (and assembled again when next used).
static MAX_DETACHED: AtomicUsize = AtomicUsize::new(256);

/// Sets how many detached views may be held at once (`--max-detached`).
pub fn set_max_detached(n: usize) {
    MAX_DETACHED.store(n.max(1), Ordering::Relaxed);
}

/// Where an instance holds its root fd (`None` until assembled, or once released).
pub(super) type RootSlot = RwLock<Option<Arc<OwnedFd>>>;

/// Assembled detached views, oldest first: (instance seq, its root slot).
static DETACHED: Mutex<VecDeque<(u64, Weak<RootSlot>)>> = Mutex::new(VecDeque::new());

/// Remembers an assembled detached view; releases the oldest beyond [`MAX_DETACHED`]. A
/// released view is assembled again when next used: its new mount has new inode keys, so the
/// kernel's old inodes answer ESTALE and the VFS looks them up again.
pub(super) fn track_detached(seq: u64, slot: &Arc<RootSlot>) {
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
