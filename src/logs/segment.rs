//! One store file as a segment of a container's log: its fd, how far it is decoded, its
//! decoded length per stream, and the marks (raw offset, decoded offsets) a read starts from.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use log::warn;

use super::decode::Decoder;
use super::scan::{Ev, PRead, decompress, scan};
use super::{Format, Stream};

/// Raw bytes between two marks.
const MARK_EVERY: u64 = 64 * 1024;
/// Bytes hashed to recognise a rotation after compression.
const HEAD: usize = 4096;

/// Where a read may start: a record boundary at raw offset `raw`, with the decoded offsets
/// of stdout, stderr and both there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub raw: u64,
    pub out: [u64; 3],
}

/// One store file.
pub(super) struct Segment {
    pub(super) file: Arc<File>,
    pub(super) gz: bool,
    pub(super) name: OsString,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Still in the store's directory (else held only by our fd).
    pub(super) present: bool,
    pub(super) live: bool,
    /// Decoded up to here (raw bytes; decompressed bytes for `.gz`).
    pub(super) raw_done: u64,
    /// No more bytes will come: a trailing partial record was skipped.
    pub(super) complete: bool,
    pub(super) out: [u64; 3],
    pub(super) marks: Vec<Mark>,
    pub(super) dec: Decoder,
    pub(super) warned: bool,
    pub(super) mtime: SystemTime,
    /// Times the file was truncated in place and decoded afresh: offsets kept from before
    /// (a read's carry) are void once it changes.
    pub(super) epoch: u32,
    /// Its fd was let go (too many rotated-away files held, `store.rs`): its lengths stay, so
    /// offsets after it do not move, but its bytes cannot be read any more.
    pub(super) released: bool,
    /// (raw length, head hash) once known for good (the file is rotated: it no longer
    /// grows), kept after its fd is let go so its `.gz` copy is still recognised.
    pub(super) fp: Option<(u64, u64)>,
    /// Not a file: a line ctrfsd says in the view (lines the runtime deleted unread), the
    /// same text in every stream.
    pub(super) note: Option<Vec<u8>>,
}

/// A hash of the first bytes of a file, to recognise its compressed copy.
pub(super) fn head_hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(&b[..b.len().min(HEAD)]);
    h.finish()
}

impl Segment {
    pub(super) fn new(file: File, name: &OsStr, gz: bool, format: Format) -> io::Result<Segment> {
        let md = file.metadata()?;
        // Read front to back (indexing, and most reads): a larger readahead window when the
        // store is not in the page cache. Only a hint; failure changes nothing.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        Ok(Segment {
            file: Arc::new(file),
            gz,
            name: name.to_owned(),
            dev: md.dev(),
            ino: md.ino(),
            present: true,
            live: false,
            raw_done: 0,
            complete: false,
            out: [0; 3],
            marks: vec![Mark {
                raw: 0,
                out: [0; 3],
            }],
            dec: Decoder::new(format),
            warned: false,
            mtime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            epoch: 0,
            released: false,
            fp: None,
            note: None,
        })
    }

    /// A segment that is not a file but `text`, shown in every stream (`file`: any fd, never
    /// read).
    pub(super) fn note(file: Arc<File>, text: Vec<u8>) -> Segment {
        let n = text.len() as u64;
        Segment {
            file,
            gz: false,
            name: OsString::from("(ctrfsd)"),
            dev: 0,
            ino: 0,
            present: false,
            live: false,
            raw_done: 0,
            complete: true,
            out: [n; 3],
            marks: vec![Mark {
                raw: 0,
                out: [0; 3],
            }],
            dec: Decoder::new(Format::JsonFile),
            warned: true,
            mtime: SystemTime::UNIX_EPOCH,
            epoch: 0,
            released: false,
            fp: None,
            note: Some(text),
        }
    }

    /// A file the runtime deleted that this segment keeps open (what `away.rs` bounds).
    pub(super) fn away(&self) -> bool {
        !self.present && !self.released && self.note.is_none()
    }

    /// Decodes what was added since the last call. `gz`: the decompressed bytes, if compressed.
    pub(super) fn extend(&mut self, label: &str, gz: Option<&[u8]>) -> io::Result<()> {
        if self.complete || self.note.is_some() {
            return Ok(());
        }
        let md = self.file.metadata()?;
        self.mtime = md.modified().unwrap_or(self.mtime);
        let len = gz.map_or(md.len(), |g| g.len() as u64);
        if len < self.raw_done {
            // Truncated in place (Podman's log-size-max): decode it afresh.
            warn!(
                "{label}: log file {} shrank; reading it again from its start",
                self.name.to_string_lossy()
            );
            self.raw_done = 0;
            self.out = [0; 3];
            self.marks.truncate(1);
            self.dec = self.dec.fresh();
            self.warned = false;
            self.epoch = self.epoch.wrapping_add(1);
        }
        let at_end = !self.live || gz.is_some();
        if len == self.raw_done && !at_end {
            return Ok(());
        }
        let mut src: Box<dyn Read> = match gz {
            Some(g) => Box::new(&g[self.raw_done as usize..]),
            None => Box::new(PRead {
                file: &self.file,
                pos: self.raw_done,
                end: len,
            }),
        };
        let (mut out, mut last) = (
            self.out,
            *self.marks.last().unwrap_or(&Mark {
                raw: 0,
                out: [0; 3],
            }),
        );
        let mut marks = Vec::new();
        let mut skipped: Option<(u64, &'static str)> = None;
        let mut dec = self.dec.clone();
        let end = scan(&mut *src, self.raw_done, &mut dec, at_end, |ev| {
            match ev {
                Ev::Rec { end, stream, text } => {
                    out[stream as usize] += text.len() as u64;
                    out[Stream::All as usize] += text.len() as u64;
                    if end - last.raw >= MARK_EVERY {
                        last = Mark { raw: end, out };
                        marks.push(last);
                    }
                }
                Ev::Skip { at, reason } => {
                    skipped.get_or_insert((at, reason));
                }
            }
            true
        })?;
        if dec.in_record() {
            // A mark inside an over-long record would start a read in its middle.
            marks.retain(|m| m.raw < end);
        }
        if let Some((at, reason)) = skipped
            && !self.warned
        {
            self.warned = true;
            warn!(
                "{label}: log file {}: skipped {reason} at byte {at} (and any later bad records \
                 of this file); serving the rest",
                self.name.to_string_lossy()
            );
        }
        self.marks.extend(marks);
        self.out = out;
        self.raw_done = end;
        self.dec = dec;
        self.complete = at_end;
        Ok(())
    }

    /// (raw length, head hash) of a plain segment, to match it with its compressed copy
    /// (Docker writes `x.log.1` again as `x.log.1.gz` and deletes it: the same bytes under two
    /// names and inodes, so a file is known by its content, not by its name). Kept once the
    /// file is rotated (it no longer grows), so it is read once and survives the fd being
    /// let go. `None` for a compressed segment, a note, or a file that cannot be read.
    pub(super) fn fingerprint(&mut self) -> Option<(u64, u64)> {
        if self.fp.is_some() || self.released || self.gz || self.note.is_some() {
            return self.fp;
        }
        let len = self.file.metadata().ok()?.len();
        let mut head = vec![0; HEAD.min(len as usize)];
        self.file.read_exact_at(&mut head, 0).ok()?;
        let fp = (len, head_hash(&head));
        if !self.live {
            self.fp = Some(fp);
        }
        Some(fp)
    }
}

/// Orders the store's file names: rotations oldest first (`x.log.3`, `x.log.2.gz`, `x.log.1`;
/// timestamped ones ascending), the live file last. `None`: not one of the store's files.
pub(super) fn order_key(base: &OsStr, name: &OsStr) -> Option<(u8, i64, Vec<u8>)> {
    let (b, n) = (base.as_bytes(), name.as_bytes());
    if n == b {
        return Some((2, 0, Vec::new()));
    }
    let suffix = n.strip_prefix(b)?.strip_prefix(b".")?;
    let plain = suffix.strip_suffix(b".gz").unwrap_or(suffix);
    if plain.is_empty() || plain.ends_with(b".tmp") {
        return None;
    }
    match std::str::from_utf8(plain)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        Some(num) => Some((0, -num, Vec::new())),
        None => Some((1, 0, plain.to_vec())),
    }
}

/// The decompressed bytes of the one `.gz` segment read last, of any container: one cache
/// for all log views, so its memory is bounded by `MAX_GZ` whatever the number of containers.
static GZ_CACHE: Mutex<Option<(super::store::FileId, Arc<Vec<u8>>)>> = Mutex::new(None);

fn gz_cache() -> std::sync::MutexGuard<'static, Option<(super::store::FileId, Arc<Vec<u8>>)>> {
    GZ_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `bytes`, the decompressed content of `.gz` file `id`, as the one cached.
pub(super) fn keep_gz(id: super::store::FileId, bytes: Vec<u8>) {
    *gz_cache() = Some((id, Arc::new(bytes)));
}

/// The decompressed bytes of `.gz` segment `seg` (one is cached for all sets: [`GZ_CACHE`]).
pub(super) fn gz_bytes(seg: &Segment) -> io::Result<Arc<Vec<u8>>> {
    let id = (seg.dev, seg.ino);
    if let Some((cid, bytes)) = &*gz_cache()
        && *cid == id
    {
        return Ok(bytes.clone());
    }
    let bytes = Arc::new(decompress(&seg.file)?);
    *gz_cache() = Some((id, bytes.clone()));
    Ok(bytes)
}
