//! Link answers derived from other entries: a target with `..` is resolved through the
//! container's directories and links ([`crate::pathsafe`]) and through the path of the link's
//! own directory, so when one of those changes, the answer changes although nothing happened
//! to the link itself. The kernel keeps a link's answer with the inode (`CACHE_SYMLINKS`) and
//! no event reaches it, so each such answer is taken back from the kernel within [`BOUND`]
//! of being given: the next `readlink` computes it afresh.
//!
//! Cost: one inode invalidation per such link per [`BOUND`] in which it was read; links
//! without `..` (the common case: absolute and downward ones) depend on nothing and stay
//! cached.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{INodeNo, Notifier};
use log::debug;

/// How long the kernel may keep a derived answer at most.
pub(super) const BOUND: Duration = Duration::from_millis(500);

/// Links whose derived answer the kernel may hold now.
#[derive(Default)]
pub(super) struct DerivedLinks {
    /// Inode numbers answered since the last sweep.
    given: Mutex<HashSet<u64>>,
}

impl DerivedLinks {
    /// Notes that the answer just given for link `ino` depends on other entries.
    pub(super) fn given(&self, ino: u64) {
        self.given
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino);
    }

    /// Every [`BOUND`], takes back from the kernel each derived answer given since the last
    /// sweep (its attributes too: a link's size is its answer's length). Runs for the life of
    /// the session on its own thread.
    pub(super) fn run(self: Arc<Self>, notifier: Notifier) {
        loop {
            std::thread::sleep(BOUND);
            let given = std::mem::take(&mut *self.given.lock().unwrap_or_else(|e| e.into_inner()));
            for ino in given {
                if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                    debug!("inval_inode {ino} (derived link): {e}");
                }
            }
        }
    }
}

/// True if a link with text `target` is answered from other entries (it has a `..`).
pub(super) fn is_derived(target: &[u8]) -> bool {
    target.split(|&b| b == b'/').any(|c| c == b"..")
}

#[cfg(test)]
mod tests {
    use super::is_derived;

    #[test]
    fn only_links_with_dotdot_are_derived() {
        assert!(is_derived(b"../x"));
        assert!(is_derived(b"/usr/../etc"));
        assert!(is_derived(b".."));
        assert!(!is_derived(b"/usr/share/zoneinfo/UTC"));
        assert!(!is_derived(b"lib/x..y"));
        assert!(!is_derived(b"./x"));
    }
}
