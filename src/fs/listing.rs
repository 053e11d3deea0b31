//! A real directory's listing, built on a helper thread before its reply is claimed
//! (`guarded::guarded_listing`): every call that may wait on the container (getdents, and for
//! readdirplus each entry's `statx` and the `readlink` that sizes a link) runs under the
//! deadline of [`super::guard`], and the lookups counted for entries the kernel does not get
//! are given back.

use std::io;

use fuser::FileAttr;

use super::CtrFs;
use super::dirs::read_batch;
use super::guarded::ListingReply;
use super::handles::Handle;

/// One entry of a listing, built before its reply is claimed (`guarded::guarded_listing`).
pub(super) struct Built {
    pub(super) ino: u64,
    pub(super) offset: u64,
    pub(super) kind: fuser::FileType,
    pub(super) name: std::ffi::OsString,
    pub(super) ttl: std::time::Duration,
    /// Readdirplus: the attributes, and one lookup counted (but for `.` and `..`).
    pub(super) attr: Option<FileAttr>,
}

/// A listing's entries from one batch of names, built before the reply is claimed.
pub(super) struct BuiltListing {
    pub(super) entries: Vec<Built>,
    /// The entries reached [`room_of`] (more names were read than built).
    pub(super) full: bool,
    /// The directory has more names than the batch read.
    pub(super) more: bool,
}

/// Reads the names of directory handle `h` from `offset` and builds the entries of one reply
/// (for readdirplus, with their attributes: one lookup counted each), about as many as the
/// last reply held ([`room_of`]). Runs on a helper thread under the deadline.
pub(super) fn build_listing<R: ListingReply>(
    fs: &CtrFs,
    h: &Handle,
    ino: u64,
    fh: u64,
    offset: u64,
) -> io::Result<BuiltListing> {
    let (batch, more) = read_batch(h, offset, R::PLUS)?;
    let room = room_of(h);
    let (mut entries, mut bytes) = (Vec::new(), 0);
    let full = fs.do_readdir(ino, fh, offset, R::PLUS, Some(batch), |e, attr| {
        let size = entry_bytes::<R>(e.name);
        if bytes + size > room && !entries.is_empty() {
            return true; // not taken: `do_readdir` gives its lookup back
        }
        bytes += size;
        entries.push(Built {
            ino: e.ino,
            offset: e.offset,
            kind: e.kind,
            name: e.name.to_os_string(),
            ttl: e.ttl,
            attr: attr.copied(),
        });
        false
    })?;
    Ok(BuiltListing {
        entries,
        full,
        more,
    })
}

/// Gives back the lookups counted for readdirplus entries the kernel never got.
pub(super) fn forget_unsent<R: ListingReply>(fs: &CtrFs, entries: &[Built]) {
    if !R::PLUS {
        return;
    }
    for e in entries {
        if e.attr.is_none() || e.name == "." || e.name == ".." {
            continue;
        }
        if super::logview::is_log(e.ino) {
            fs.log_forget(e.ino, 1);
        } else {
            fs.do_forget(e.ino, 1);
        }
    }
}

/// Bytes an entry named `name` takes in a reply (fuser's encoding: `struct fuse_dirent`, 24
/// bytes and the name, 8-aligned; readdirplus adds `struct fuse_entry_out`, 128 bytes).
pub(super) fn entry_bytes<R: ListingReply>(name: &std::ffi::OsStr) -> usize {
    let head = if R::PLUS { 152 } else { 24 };
    (head + name.len()).next_multiple_of(8)
}

/// What a first reply is built for: 128 KiB, the kernel's default largest request (32
/// pages), so that a reader with a large buffer (`find`) gets a directory of up to ~700
/// entries with their attributes in one reply. The kernel's request follows the reader's
/// buffer (glibc `readdir`: 32 KiB; up to 1 MiB), which fuser does not tell: a reply that
/// held less teaches the handle ([`learn_room`]), and the lookups of entries built but not
/// sent are given back.
pub(super) const FIRST_ROOM: usize = 128 * 1024;

/// The most one reply may hold (the kernel's largest request, 256 pages).
const MAX_ROOM: usize = 1024 * 1024;

/// Reply bytes to build entries for on handle `h` ([`learn_room`]).
fn room_of(h: &Handle) -> usize {
    match h {
        Handle::Dir(d) => d.lock().unwrap_or_else(|e| e.into_inner()).room,
        _ => FIRST_ROOM,
    }
}

/// After a reply on handle `h`: when it filled before every built entry fit (`overflowed`),
/// the next is built for what it held (`sent_bytes`); when every entry fit and the build
/// stopped at the room (`stopped`), for four times as much (up to [`MAX_ROOM`]).
pub(super) fn learn_room(h: &Handle, overflowed: bool, stopped: bool, sent_bytes: usize) {
    if let Handle::Dir(d) = h {
        let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
        if overflowed {
            d.room = sent_bytes.max(1);
        } else if stopped {
            d.room = (d.room * 4).min(MAX_ROOM);
        }
    }
}
