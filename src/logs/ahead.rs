//! Read-ahead buffers: the raw bytes a read of a log view fetched past where it stopped,
//! kept for the read that follows, so a sequential reader reads each byte of a store once.

use std::sync::Mutex;

use super::scan::RawBuf;
use super::store::FileId;

/// Raw bytes a read of a view read past where it stopped, kept for the read that follows:
/// (set, file, epoch, the bytes). Shared by every set and bounded ([`AHEAD_KEPT`]), so memory
/// does not grow with the number of containers read.
type Ahead = (u64, FileId, u32, RawBuf);

/// Read-ahead buffers kept (each up to a few hundred KiB).
const AHEAD_KEPT: usize = 4;

static AHEAD: Mutex<Vec<Ahead>> = Mutex::new(Vec::new());

/// A read-ahead buffer of (`set`, `id`, `epoch`) that holds the bytes at raw offset `raw`, or
/// an emptied one at `raw`.
pub(super) fn take_ahead(set: u64, id: FileId, epoch: u32, raw: u64) -> RawBuf {
    let mut pool = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = pool
        .iter()
        .position(|a| (a.0, a.1, a.2, a.3.pos) == (set, id, epoch, raw))
    {
        return pool.remove(i).3;
    }
    let mut rb = if pool.len() >= AHEAD_KEPT {
        pool.remove(0).3
    } else {
        RawBuf::default()
    };
    rb.reset(raw);
    rb
}

/// Drops the read-ahead buffers of file `id` of `set`.
pub(super) fn drop_ahead(set: u64, id: FileId) {
    let mut pool = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    pool.retain(|a| (a.0, a.1) != (set, id));
}

/// Keeps `rb` for the next read of (`set`, `id`, `epoch`), dropping the least recently used.
pub(super) fn keep_ahead(set: u64, id: FileId, epoch: u32, rb: RawBuf) {
    let mut pool = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() >= AHEAD_KEPT {
        pool.remove(0);
    }
    pool.push((set, id, epoch, rb));
}
