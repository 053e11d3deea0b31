//! One container's log store as three growing texts (stdout, stderr, both), read through an
//! index of offsets.
//!
//! The store's files (oldest rotation first, the live file last) are *segments*. Each segment
//! keeps its fd (so a rotated-away file stays readable while the kernel holds the view), how
//! much of it is decoded (`raw_done`), the decoded length per stream, and a *mark* every
//! 64 KiB of raw bytes (`segment.rs`): (raw offset, decoded offsets). A read decodes forward from the
//! nearest mark, or from where the last read of that stream stopped (`Carry`: the rest of the
//! record it had no room for, and the raw bytes it fetched past its end, so a sequential reader
//! decodes and reads each byte once); memory is a few dozen bytes per mark (about 500 KiB for
//! 1 GiB) and a few read-ahead buffers shared by every set.
//!
//! Sizes only ever grow while the kernel holds any of the set's files: segments whose files the
//! runtime deleted stay (their fds held, up to the bounds of `away.rs`) and new ones are
//! appended, so a follower neither repeats nor loses lines across a rotation (`follow.rs` opens
//! each new file as the runtime creates it). A `.gz` rotation whose content is a segment
//! already held (Docker compresses `x.log.1` after renaming it) replaces that segment's backing
//! instead of adding one (`rescan.rs`: files are known by identity, never by name). Decoded
//! sizes count only complete records, so `stat` agrees with what `read` returns.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use super::ahead::{drop_ahead, keep_ahead, take_ahead};
use super::away;
use super::open::{OpenError, open_dir};
use super::scan::{Ev, PRead, scan_buf};
use super::segment::{Segment, gz_bytes, order_key};
use super::{LogSource, Stream};

/// A store is looked at again at most this often (growth shows within a second).
const RECHECK: Duration = Duration::from_millis(200);

/// Where the last read of a stream stopped: in file `id` (at `epoch`), after the record
/// ending at raw offset `raw`, where `stream` is at offset `out`; `text` is the end of that
/// record's text the read had no room for (it lies at `out - text.len()..out`). The next read
/// of a sequential reader starts from here and decodes nothing twice.
#[derive(Debug)]
struct Carry {
    id: FileId,
    epoch: u32,
    stream: Stream,
    raw: u64,
    out: u64,
    text: Vec<u8>,
}

/// (st_dev, st_ino) of a store file.
pub(super) type FileId = (u64, u64);

#[derive(Default)]
pub(super) struct State {
    pub(super) segs: Vec<Segment>,
    checked: Option<Instant>,
    /// Why nothing (more) is served, if so.
    problem: Option<OpenError>,
    /// `.gz` files seen: (dev, ino) -> ((size, mtime, ctime) when decompressed, (decompressed
    /// length, head hash)); stale once the stamp differs (a deleted file's inode number
    /// comes back for a new file).
    pub(super) gz_seen: HashMap<FileId, (GzStamp, (u64, u64))>,
    /// Where the last read stopped.
    carry: Option<Carry>,
    /// `.gz` files refused for good (they decompress to more than `MAX_GZ`).
    pub(super) gz_refused: HashSet<FileId>,
    /// How many files the runtime deleted this set keeps open (its share in `away.rs`).
    away: usize,
    /// A file was let go (logged once per set).
    let_go_logged: bool,
    /// A file no read had reached was let go (logged once per set).
    unread_logged: bool,
    /// How far any read reached in each stream (decoded offset): files before it are "read
    /// past", the first to be let go.
    pub(super) read_to: [u64; 3],
    /// `.gz` files seen still being written, and since when (`rescan.rs` waits for them).
    pub(super) gz_wait: HashMap<FileId, Instant>,
    /// New files (contents) found while the store was followed ([`LogSet::created`] counts
    /// the runtime's): the difference is files deleted before ctrfsd could open them.
    pub(super) found: u64,
    /// Such lost files already said (a note in the view, `rescan.rs`).
    pub(super) lost: u64,
}

/// (size, mtime ns, ctime ns) of a `.gz` file when it was decompressed.
pub(super) type GzStamp = (u64, i64, i64);

/// One container's log views.
pub struct LogSet {
    /// Unique among sets (names its read-ahead buffers).
    id: u64,
    source: LogSource,
    /// Shown in warnings: the container's path under the mount.
    label: String,
    state: Mutex<State>,
    /// Kernel references to this set's files, kept by the FUSE side: while any is held, a
    /// segment the runtime deleted is kept (its offsets must not move).
    pub refs: AtomicU64,
    /// Store files the follower (`follow.rs`) opened the moment the runtime created or
    /// renamed them, not yet looked at: one the runtime deletes before the next look is still
    /// read from this fd.
    pub(super) early: Mutex<Vec<(std::ffi::OsString, std::fs::File)>>,
    /// Live files the runtime created since the store is followed (inotify `IN_CREATE` of
    /// the store's own name), to tell files it deleted unread.
    pub(super) created: AtomicU64,
    /// The follower watches this set's store (`created` counts).
    pub(super) following: std::sync::atomic::AtomicBool,
}

impl LogSet {
    /// The views of `source`; `label` names the container in warnings.
    pub fn new(source: LogSource, label: String) -> LogSet {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        LogSet {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            source,
            label,
            state: Mutex::new(State::default()),
            refs: AtomicU64::new(0),
            early: Mutex::default(),
            created: AtomicU64::new(0),
            following: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Where this set reads from.
    pub fn source(&self) -> &LogSource {
        &self.source
    }

    /// Unique among sets.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The container's path under the mount, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The store's directory, opened as its files are (no symlink, owner checked); `None`
    /// without a store or when it cannot be opened.
    pub(crate) fn dir_fd(&self) -> Option<std::os::fd::OwnedFd> {
        let LogSource::Files { path, owner, .. } = &self.source else {
            return None;
        };
        open_dir(path.parent()?, *owner).ok()
    }

    /// Whether `name` (in the store's directory) is one of the store's files.
    pub(crate) fn is_store_name(&self, name: &[u8]) -> bool {
        let LogSource::Files { path, .. } = &self.source else {
            return false;
        };
        path.file_name()
            .is_some_and(|base| order_key(base, OsStr::from_bytes(name)).is_some())
    }

    /// Looks at the store now, whenever it was looked at last (the runtime just created or
    /// renamed one of its files: `follow.rs`).
    pub(crate) fn look_now(&self) {
        self.lock().checked = None;
        self.refresh();
    }

    /// Makes the next `refresh` look at the store whenever it was looked at last (a new
    /// instance of the container reads this set: its store changed as the old one ended).
    pub fn look_soon(&self) {
        self.lock().checked = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at the store again (at most every 200 ms) and returns why nothing is served,
    /// if nothing is: the runtime keeps no store, or it was refused, or it cannot be read and
    /// nothing was read before.
    pub fn refresh(&self) -> Option<String> {
        let (format, path, owner) = match &self.source {
            LogSource::Unavailable(why) => return Some(why.clone()),
            LogSource::Files {
                format,
                path,
                owner,
            } => (*format, path, *owner),
        };
        let mut st = self.lock();
        if st.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            st.checked = Some(Instant::now());
            let held = self.refs.load(Ordering::Relaxed) > 0;
            if let Err(e) = self.rescan(&mut st, format, path, owner, held) {
                if matches!(e, OpenError::Refused(_)) || st.problem.is_none() {
                    warn!("{}: log store not served: {e}", self.label);
                }
                if matches!(e, OpenError::Refused(_)) {
                    st.segs.clear();
                }
                st.problem = Some(e);
            } else {
                st.problem = None;
            }
            self.bound_away(&mut st);
        }
        match &st.problem {
            Some(OpenError::Refused(why)) => Some(why.clone()),
            Some(OpenError::Failed(why)) if st.segs.is_empty() => Some(why.clone()),
            _ => None,
        }
    }

    /// Bounds the files the runtime deleted that this set keeps open ([`away::bound`]); what
    /// was read from one it lets go is forgotten (its inode number may come back for a new
    /// file, whose bytes it must not be taken for).
    fn bound_away(&self, st: &mut State) {
        // Where each segment ends, per stream: read past once any read went beyond it.
        let (mut starts, mut ends) = (Vec::new(), Vec::with_capacity(st.segs.len()));
        let mut end = [0u64; 3];
        for s in &st.segs {
            starts.push(end);
            for (e, o) in end.iter_mut().zip(s.out) {
                *e += o;
            }
            ends.push(end);
        }
        let read_to = st.read_to;
        let read_past = |i: usize| (0..3).any(|k| read_to[k] > 0 && ends[i][k] <= read_to[k]);
        // The one a read is inside is kept (its reader would go on in ctrfsd's filler line).
        let reading = |i: usize| {
            !read_past(i) && (0..3).any(|k| starts[i][k] < read_to[k] && read_to[k] < ends[i][k])
        };
        let (let_go, unread) = away::bound(&mut st.segs, &mut st.away, read_past, reading);
        if unread > 0 && !st.unread_logged {
            st.unread_logged = true;
            warn!(
                "{}: let go of {unread} rotated-away log file(s) no reader had reached \
                 ({}; logged once): their ranges read as a line of ctrfsd's",
                self.label,
                away::LIMITS
            );
        }
        for id in &let_go {
            if st.carry.as_ref().is_some_and(|c| c.id == *id) {
                st.carry = None;
            }
            drop_ahead(self.id, *id);
        }
        if !let_go.is_empty() && !st.let_go_logged {
            st.let_go_logged = true;
            info!(
                "{}: let go of {} rotated-away log file(s) kept for readers ({}; logged once); \
                 their ranges read as a line of ctrfsd's",
                self.label,
                let_go.len(),
                away::LIMITS
            );
        }
    }

    /// The decoded size of `stream`, and the newest modification time of the store's files.
    pub fn size(&self, stream: Stream) -> (u64, SystemTime) {
        let st = self.lock();
        let size = st.segs.iter().map(|s| s.out[stream as usize]).sum();
        let mtime = st
            .segs
            .iter()
            .map(|s| s.mtime)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        (size, mtime)
    }

    /// Reads `stream` from decoded offset `off` into `buf`; returns how many bytes were read.
    ///
    /// # Errors
    ///
    /// The `io::Error` of reading a segment file (`pread`, errno intact), or of decompressing a
    /// gzip-rotated segment (`InvalidInput`/`InvalidData` for a corrupt one).
    pub fn read(&self, stream: Stream, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.lock();
        let mut filled = 0;
        let mut base = 0;
        for i in 0..st.segs.len() {
            let len = st.segs[i].out[stream as usize];
            if filled == buf.len() {
                break;
            }
            if off + filled as u64 >= base + len {
                base += len;
                continue;
            }
            if let Some(t) = &st.segs[i].note {
                let from = (off + filled as u64 - base) as usize;
                let n = (t.len() - from).min(buf.len() - filled);
                buf[filled..filled + n].copy_from_slice(&t[from..from + n]);
                filled += n;
                base += len;
                continue;
            }
            if st.segs[i].released {
                // Its fd was let go (`bound_away`): its range reads as one line of ctrfsd's
                // saying so, padded to its length, so offsets after it do not move.
                let from = off + filled as u64 - base;
                let n = ((len - from) as usize).min(buf.len() - filled);
                away::let_go_fill(len, from, &mut buf[filled..filled + n]);
                filled += n;
                base += len;
                continue;
            }
            let (id, epoch) = ((st.segs[i].dev, st.segs[i].ino), st.segs[i].epoch);
            let carry = st
                .carry
                .take()
                .filter(|c| (c.id, c.epoch, c.stream) == (id, epoch, stream));
            // What the last read decoded but had no room for.
            if let Some(c) = &carry {
                let (rel, from) = (off + filled as u64 - base, c.out - c.text.len() as u64);
                if (from..c.out).contains(&rel) {
                    let t = &c.text[(rel - from) as usize..];
                    let n = t.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&t[..n]);
                    filled += n;
                }
            }
            let rel = off + filled as u64 - base;
            if filled == buf.len() || rel >= len {
                st.carry = carry;
                base += len;
                continue;
            }
            let gz = if st.segs[i].gz {
                Some(gz_bytes(&st.segs[i])?)
            } else {
                None
            };
            let seg = &st.segs[i];
            let k = seg.marks.partition_point(|m| m.out[stream as usize] <= rel);
            let mark = seg.marks[k.saturating_sub(1)];
            // From where the last read stopped, if between the mark and here.
            let (start_raw, start_out) = match &carry {
                Some(c) if c.out <= rel && c.out >= mark.out[stream as usize] => (c.raw, c.out),
                _ => (mark.raw, mark.out[stream as usize]),
            };
            let mut rb = take_ahead(self.id, id, epoch, start_raw);
            if rb.held_end() > seg.raw_done {
                rb.reset(start_raw);
            }
            let mut src: Box<dyn Read> = match &gz {
                Some(g) => Box::new(&g[rb.held_end() as usize..seg.raw_done as usize]),
                None => Box::new(PRead {
                    file: &seg.file,
                    pos: rb.held_end(),
                    end: seg.raw_done,
                }),
            };
            let mut at = start_out;
            let mut dec = seg.dec.fresh();
            let mut rest = carry.map(|c| c.text).unwrap_or_default();
            rest.clear();
            let end = scan_buf(&mut *src, &mut rb, &mut dec, true, |ev| {
                let Ev::Rec {
                    stream: s, text, ..
                } = ev
                else {
                    return true;
                };
                if stream != Stream::All && s != stream {
                    return true;
                }
                let (a, b) = (at, at + text.len() as u64);
                at = b;
                // Where the caller's next byte lies, relative to this segment.
                let from = off + filled as u64 - base;
                if b > from {
                    let skip = from.saturating_sub(a) as usize;
                    let n = (text.len() - skip).min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&text[skip..skip + n]);
                    filled += n;
                    // No room for the rest of this record: the next read starts with it.
                    rest.extend_from_slice(&text[skip + n..]);
                }
                filled < buf.len() && at < len
            })?;
            drop(src);
            keep_ahead(self.id, id, epoch, rb);
            st.carry = Some(Carry {
                id,
                epoch,
                stream,
                raw: end,
                out: at,
                text: rest,
            });
            base += len;
        }
        let reached = &mut st.read_to[stream as usize];
        *reached = (*reached).max(off + filled as u64);
        Ok(filled)
    }
}

impl Drop for LogSet {
    fn drop(&mut self) {
        away::forget(self.lock().away);
    }
}

/// The path to show for a source in messages.
pub fn describe(source: &LogSource) -> String {
    match source {
        LogSource::Files { path, .. } => path.display().to_string(),
        LogSource::Unavailable(why) => why.clone(),
    }
}
