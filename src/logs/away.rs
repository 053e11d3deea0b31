//! Files the runtime deleted that log sets keep open for their readers (`store.rs`: a
//! segment stays while the kernel holds its set), bounded per set and in all so the daemon's
//! fds stay bounded however long a view is followed: past a bound the oldest such file of a
//! set that its readers have read past is let go (`Segment::released`): its lengths stay, so
//! offsets after it do not move, and its range reads as a line of ctrfsd's saying so. A file no read has reached yet is
//! let go only past a larger bound, so a reader that follows is not the one to lose lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::segment::Segment;
use super::store::FileId;

/// Most files the runtime deleted that one set keeps open for its readers when its readers
/// have read past them (README, "Logs"): past this the oldest is let go
/// (`Segment::released`). 32 is eight seconds of Docker rotating four times a second.
pub(super) const AWAY_PER_SET: usize = 32;
/// Most such files kept open by all sets together before sets let go of files their readers
/// have read past, whatever their own count, so that many followed containers stay within a
/// 1024-fd limit (the daemon's other caches take a quarter of it each).
pub(super) const AWAY_TOTAL: usize = 128;
/// Most such files one set keeps open, read or not: a file that no read has reached yet is
/// let go only past this (a reader that follows loses lines only if it falls this many files
/// behind: at Docker's four rotations a second, about a minute).
pub(super) const AWAY_UNREAD: usize = 256;
/// Files the runtime deleted held open by all sets now.
static AWAY: AtomicUsize = AtomicUsize::new(0);

/// The bounds, as told in messages.
pub(super) const LIMITS: &str =
    "files read past: at most 32 per container, 128 in all; unread: at most 256 per container";

/// Counts the files `segs` keeps open that the runtime deleted (`share`: this set's part of
/// [`AWAY`], updated), and lets go of the oldest of those `read_past` says every reader has
/// read past while this set holds more than [`AWAY_PER_SET`] or all sets more than
/// [`AWAY_TOTAL`], and of the oldest unread ones (but the one a read is inside, `reading`)
/// while it holds more than [`AWAY_UNREAD`].
/// Returns the files let go, and how many of them no read had reached.
pub(super) fn bound(
    segs: &mut [Segment],
    share: &mut usize,
    read_past: impl Fn(usize) -> bool,
    reading: impl Fn(usize) -> bool,
) -> (Vec<FileId>, usize) {
    let mut n = segs.iter().filter(|s| s.away()).count();
    if n >= *share {
        AWAY.fetch_add(n - *share, Ordering::Relaxed);
    } else {
        AWAY.fetch_sub(*share - n, Ordering::Relaxed);
    }
    *share = n;
    let (mut let_go, mut unread) = (Vec::new(), 0);
    loop {
        let over = n > AWAY_PER_SET || AWAY.load(Ordering::Relaxed) > AWAY_TOTAL;
        let pick = if n > AWAY_UNREAD {
            (0..segs.len()).find(|&i| segs[i].away() && !reading(i))
        } else if over {
            (0..segs.len()).find(|&i| segs[i].away() && read_past(i))
        } else {
            None
        };
        let (Some(i), Some(null)) = (pick, dev_null()) else {
            break;
        };
        if !read_past(i) {
            unread += 1;
        }
        let s = &mut segs[i];
        // Its `.gz` copy must still be known as its bytes once the fd is gone.
        s.fingerprint();
        (s.file, s.released, s.complete, s.gz) = (null, true, true, false);
        let_go.push((s.dev, s.ino));
        n -= 1;
        *share -= 1;
        AWAY.fetch_sub(1, Ordering::Relaxed);
    }
    (let_go, unread)
}

/// Fills `out` with the bytes from `from` of what the range of a file let go reads as
/// (`len` bytes): one line of ctrfsd's saying so, padded with spaces to `len` (cut short if
/// `len` is shorter), ending in a newline. Nothing of size `len` is allocated.
pub(super) fn let_go_fill(len: u64, from: u64, out: &mut [u8]) {
    let msg = format!(
        "ctrfsd: {len} bytes of log let go here (the runtime deleted their file; ctrfsd keeps \
         a bounded number open: README, \"Logs\")"
    );
    for (k, b) in out.iter_mut().enumerate() {
        let at = from + k as u64;
        *b = if at + 1 == len {
            b'\n'
        } else {
            msg.as_bytes().get(at as usize).copied().unwrap_or(b' ')
        };
    }
}

/// A set holding `share` such files is gone.
pub(super) fn forget(share: usize) {
    AWAY.fetch_sub(share, Ordering::Relaxed);
}

/// `/dev/null`, opened once: what a segment whose fd was let go holds instead.
pub(super) fn dev_null() -> Option<Arc<std::fs::File>> {
    static NULL: std::sync::OnceLock<Option<Arc<std::fs::File>>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok().map(Arc::new))
        .clone()
}
