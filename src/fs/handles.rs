//! Open file and directory handles, by FUSE file handle number.
//!
//! Their count is bounded by what host processes hold open through the mount, not by tree size.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

/// What an open file handle holds.
pub enum Handle {
    /// A regular file opened read-only; with kernel passthrough, also its backing id (which
    /// must live until release).
    File {
        /// The read-only fd.
        fd: Arc<OwnedFd>,
        /// The kernel's backing id, with passthrough.
        backing: Option<fuser::BackingId>,
    },
    /// A real directory, read with getdents from the offset the kernel asks for.
    Dir(Mutex<DirFd>),
    /// A made-up directory (the mount root, `k8s/...`): its parent and entries when opened.
    Virtual(u64, Vec<(String, crate::registry::VEntry)>),
    /// A directory shown empty (a pseudo filesystem that is not proxied).
    Empty,
}

/// A real directory open for reading, and how many bytes of entries to read for one reply.
pub struct DirFd {
    /// The directory, open for reading.
    pub fd: OwnedFd,
    /// Bytes of `linux_dirent64` records read per reply: starts small and grows when a reply
    /// had room left while entries remained (the kernel's request size follows the reader's
    /// getdents buffer, 32 KiB to 1 MiB; fuser does not tell it).
    pub want: usize,
    /// Readdirplus entries are stat'ed by name while the listing is read, under the deadline
    /// (`dirs::read_batch`): set when a watch covered the directory before it was opened and
    /// its container had no mount that is never touched.
    pub prestat: bool,
    /// Its first readdirplus batch, read ahead ([`super::nextdir`]).
    pub(super) ahead: Option<super::nextdir::Ahead>,
    /// Bytes of reply entries a listing builds before its reply is claimed: what the last
    /// reply held (`guarded::learn_room`).
    pub room: usize,
}

/// Open handles by the number handed to the kernel (`fh`).
#[derive(Default)]
pub struct Handles {
    /// fh -> handle, until release.
    map: DashMap<u64, Arc<Handle>>,
    /// The last fh handed out; never reused.
    next: AtomicU64,
}

impl Handles {
    /// Holds `h` and returns its new handle number.
    pub fn insert(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.insert(fh, Arc::new(h));
        fh
    }

    /// The handle `fh`, if open.
    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.get(&fh).map(|h| h.clone())
    }

    /// The fds of every open file handle (their count is what host processes hold open).
    pub fn file_fds(&self) -> Vec<Arc<OwnedFd>> {
        self.map
            .iter()
            .filter_map(|h| match &**h {
                Handle::File { fd, .. } => Some(fd.clone()),
                _ => None,
            })
            .collect()
    }

    /// Releases the handle `fh`.
    pub fn remove(&self, fh: u64) {
        self.map.remove(&fh);
    }
}
