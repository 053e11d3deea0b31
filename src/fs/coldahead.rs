//! Starting the disk reads of a cold walk's next files early (`POSIX_FADV_WILLNEED`), for
//! the prefetch job of [`super::prefetch`].
//!
//! Why: after `drop_caches` (or on a tree nobody read since boot) both a direct `grep -r` and
//! one through ctrfsd wait for the disk one file at a time: each read asks for one file's
//! blocks and waits for them before the next is asked for. A prefetch job knows the next
//! files of the directory the walk is reading; asking the kernel to read them ahead costs an
//! open and one `fadvise` each, returns at once, and lets the disk work on many of them
//! together while the walk and the job wait on the first. What the container can see of it:
//! nothing but its page cache holding those files' pages a little earlier than the walk
//! would have put them there (no atime change: the files are opened `O_NOATIME` where
//! permitted, as every read of ctrfsd).
//!
//! When: only for a job whose last candidate file is not in the page cache (reading its
//! first byte took longer than a page cache hit, [`DISK`]); a warm walk pays one open and a
//! one-byte read per job and nothing else. Bounds: the job's own (its names, [`MAX_FILE`]
//! per file, [`MAX_BYTES`] in all, its time limit and deadline), one fd at a time besides
//! the job's.
//!
//! [`MAX_FILE`]: super::prefetch::MAX_FILE

use std::ffi::OsStr;
use std::num::NonZeroU64;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{Advice, fadvise};

use super::CtrFs;
use super::guard::Claim;
use super::nodes::Node;
use super::prefetch::{MAX_BYTES, MAX_TIME};

/// Files whose reading ahead was asked for, over the daemon's life (for the request report).
static FILES: AtomicU64 = AtomicU64::new(0);

/// The `prefetch-readahead N` line of the request report (`user.ctrfsd.requests`).
pub(super) fn report() -> String {
    format!("prefetch-readahead {}\n", FILES.load(Ordering::Relaxed))
}

impl CtrFs {
    /// If the last of `names` (files of `dir`, in listing order) is not in the page cache,
    /// asks the kernel to read ahead every regular file of at most [`MAX_FILE`] bytes among
    /// them (module doc); returns how many. Errors on one file skip that file. The last, not
    /// the first: a job's first files were often read ahead by the job before it (which
    /// listed twice as many names as it stored), its last ones not yet.
    ///
    /// [`MAX_FILE`]: super::prefetch::MAX_FILE
    pub(super) fn read_ahead_if_cold(
        &self,
        dir: &Node,
        dfd: &OwnedFd,
        names: &[Vec<u8>],
        started: Instant,
        claim: &Claim<()>,
    ) -> usize {
        // The last small file among the last few names tells whether the walk is cold.
        let probe = names.iter().rev().take(4).find_map(|name| {
            let name = OsStr::from_bytes(name);
            self.small_file(dir, dfd, name).ok().flatten()
        });
        if !probe.is_some_and(|(fd, _)| is_cold(&fd)) {
            return 0;
        }
        let (mut files, mut bytes) = (0, 0u64);
        for name in names {
            if bytes >= MAX_BYTES as u64 || started.elapsed() > MAX_TIME || claim.expired() {
                break;
            }
            let Ok(Some((fd, size))) = self.small_file(dir, dfd, OsStr::from_bytes(name)) else {
                continue;
            };
            if fadvise(&fd, 0, NonZeroU64::new(size), Advice::WillNeed).is_ok() {
                files += 1;
                bytes += size;
            }
        }
        FILES.fetch_add(files as u64, Ordering::Relaxed);
        files
    }

    /// File `name` of `dir` opened for reading, with its size, if it is a regular file of
    /// 1 to [`MAX_FILE`] bytes on a mount ctrfsd serves ([`CtrFs::small_file_at`]).
    ///
    /// [`MAX_FILE`]: super::prefetch::MAX_FILE
    fn small_file(
        &self,
        dir: &Node,
        dfd: &OwnedFd,
        name: &OsStr,
    ) -> std::io::Result<Option<(OwnedFd, u64)>> {
        match self.small_file_at(dir, dfd, name)? {
            Some((opath, st)) => Ok(Some((self.reopen(&opath)?, st.stx_size))),
            None => Ok(None),
        }
    }
}

/// A read of one byte that takes longer than this went to the disk (a page cache hit takes a
/// few microseconds; a 4 KiB read from this VM's virtio disk 50 us or more).
const DISK: Duration = Duration::from_micros(40);

/// True if the first byte of `fd` was not in the page cache, as far as the time of reading it
/// tells. (`RWF_NOWAIT` would say it exactly, but overlayfs, the container's root, refuses it
/// with `EOPNOTSUPP` on Linux 6.18; `mincore` needs a mapping of the file.) A hit delayed by
/// a busy CPU reads as cold: the cost is reading ahead files that were cached.
fn is_cold(fd: &OwnedFd) -> bool {
    let t = Instant::now();
    rustix::io::pread(fd, &mut [0u8; 1], 0).is_ok() && t.elapsed() > DISK
}
