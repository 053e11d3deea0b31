//! Files the runtime deleted that log sets keep open for their readers (`store.rs`: a
//! segment stays while the kernel holds its set), bounded per set and in all so the daemon's
//! fds stay bounded however long a view is followed: past a bound the oldest such file of a
//! set is let go (`Segment::released`): its lengths stay, so offsets after it do not move, and
//! reading it gives EIO.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::segment::Segment;
use super::store::FileId;

/// Most files the runtime deleted that one set keeps open for its readers (README, "Logs"):
/// past this the oldest is let go (`Segment::released`). A follower passes each within a
/// poll (a second); 32 is eight seconds of Docker rotating four times a second.
pub(super) const AWAY_PER_SET: usize = 32;
/// Most such files kept open by all sets together, so that many followed containers stay
/// within a 1024-fd limit (the daemon's other caches take a quarter of it each).
pub(super) const AWAY_TOTAL: usize = 128;
/// Files the runtime deleted held open by all sets now.
static AWAY: AtomicUsize = AtomicUsize::new(0);

/// The bounds, as told in messages.
pub(super) const LIMITS: &str = "at most 32 per container, 128 in all";

/// Counts the files `segs` keeps open that the runtime deleted (`share`: this set's part of
/// [`AWAY`], updated), and lets go of the oldest while this set holds more than
/// [`AWAY_PER_SET`] or all sets more than [`AWAY_TOTAL`]. Returns the files let go.
pub(super) fn bound(segs: &mut [Segment], share: &mut usize) -> Vec<FileId> {
    let away = |s: &Segment| !s.present && !s.released;
    let mut n = segs.iter().filter(|s| away(s)).count();
    if n >= *share {
        AWAY.fetch_add(n - *share, Ordering::Relaxed);
    } else {
        AWAY.fetch_sub(*share - n, Ordering::Relaxed);
    }
    *share = n;
    let mut let_go = Vec::new();
    while n > 0 && (n > AWAY_PER_SET || AWAY.load(Ordering::Relaxed) > AWAY_TOTAL) {
        let Some(null) = dev_null() else { break };
        let Some(s) = segs.iter_mut().find(|s| away(s)) else {
            break;
        };
        (s.file, s.released, s.complete, s.gz) = (null, true, true, false);
        let_go.push((s.dev, s.ino));
        n -= 1;
        *share -= 1;
        AWAY.fetch_sub(1, Ordering::Relaxed);
    }
    let_go
}

/// A set holding `share` such files is gone.
pub(super) fn forget(share: usize) {
    AWAY.fetch_sub(share, Ordering::Relaxed);
}

/// `/dev/null`, opened once: what a segment whose fd was let go holds instead.
fn dev_null() -> Option<Arc<std::fs::File>> {
    static NULL: std::sync::OnceLock<Option<Arc<std::fs::File>>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok().map(Arc::new))
        .clone()
}
