//! Pushing the next small files of a directory into the kernel's page cache before it asks
//! (FUSE_NOTIFY_STORE), when a walk is clearly reading the directory file by file.
//!
//! Why: a first `grep -r` makes one read request per file, a round trip each (the kernel
//! waits for the answer before grep can go on). A store is one write to `/dev/fuse` made by
//! ctrfsd on its own time; the kernel then finds the file's pages cached and sends nothing.
//!
//! When: a read request that found no cached read fd, at offset 0, which read the whole file
//! (the answer was shorter than asked for) is a "whole-file miss". The second whole-file miss
//! in one directory starts one job for it: list the directory and store the regular files
//! that follow the one just read, in listing order (the order `grep -r`, `tar` or `cp -r`
//! read them, and the order readdirplus gave the kernel their entries). A walk that goes on
//! past the stored files misses again and starts the next job, with a larger batch; a walk
//! that overtakes a running job makes it skip ahead to the file the walk read. Once a job
//! ran in a container, the walk is known to read file by file for [`HOT`]: the first miss in
//! another of its directories starts a job of [`MAX_BATCH`] files at once (a `grep -r` goes
//! from one directory to the next; without this, each directory cost a few misses and the
//! batches' ramp-up again). A job stores with [`WORKERS`] helper threads taking names from
//! one cursor: one thread stored a file more slowly than a walk finding files cached reads
//! one, so the walk caught up and both read the same files.
//! Listing, `ls -lR`, `find` and `stat` read no file, so they start nothing.
//!
//! Bounds (waste when the guess is wrong, e.g. `cat a b`): one job per directory at a time; a
//! job stores at most [`FIRST_BATCH`] files the first time (growing to [`MAX_BATCH`], or
//! [`MAX_BATCH`] at once within [`HOT`] of another job in the container), at most
//! [`MAX_BYTES`] in all and only files of at most [`MAX_FILE`] bytes, and stops after
//! [`MAX_TIME`]. It holds at most five fds while it runs (the directory's, and per worker
//! the file's `O_PATH` fd and its read fd) and none after: nothing for the idle sweep of
//! `fdcache`. Its workers run on helper threads of [`super::guard`] under the same deadline
//! as a read, counted against its container: a container whose files are blocked (a
//! fanotify permission listener) holds helpers for a while, never a FUSE worker.
//!
//! Consistency (AUTO_INVAL_DATA, `tail -f`): only files the kernel holds an inode for (it got
//! them from readdirplus or lookup) and whose status has not changed for [`SETTLED`] are
//! stored, so the attributes the kernel holds (at most a second old, or kept by a watch
//! that reports every change) describe the stored bytes. A file whose size is not what its
//! status said is skipped, and one whose status changed between the first look and the
//! store (before, during or after the read) is invalidated right after the store (status
//! checked again), so the kernel never keeps bytes older than the file. A file written to in
//! the last [`SETTLED`] (a live log) is never stored: its reads go through ctrfsd as before.

use std::ffi::OsStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{FileType, INodeNo, Notifier};
use lru::LruCache;
use rustix::fs::{AtFlags, Mode, OFlags, Statx, openat, statx};

use super::attr::{STATX_MASK, dev_of, kind_of};
use super::guard::Claim;
use super::nodes::{Node, NodeKey, Shown};
use super::{CtrFs, Reached};
use crate::registry::is_virtual;

/// Files stored by the first job in a directory; each later job stores four times as many.
pub const FIRST_BATCH: usize = 16;
/// Most files one job stores.
pub const MAX_BATCH: usize = 256;
/// Largest file stored (the kernel's own readahead reads a file this size in one request).
pub const MAX_FILE: u64 = 128 * 1024;
/// Most bytes one job stores.
pub const MAX_BYTES: usize = 4 << 20;
/// Longest one job runs (well within the guard's deadline).
pub const MAX_TIME: Duration = Duration::from_millis(500);
/// How long a file's status must be unchanged before it is stored: more than the 1 s the
/// kernel may keep attributes no watch covers (`fs::TTL`).
pub const SETTLED: Duration = Duration::from_secs(2);
/// Stored files remembered (about 80 bytes each: 1.3 MB at most).
const STORED: usize = 16 * 1024;
/// Directories whose walk is followed at once (least recently read forgotten first).
const WALKS: usize = 64;
/// Helper threads one job stores with, taking the next name from one shared cursor: one
/// thread stores more slowly than a walk that finds its files cached reads them, so the walk
/// caught up with it and both then read the same files (README, "First look: reads").
pub const WORKERS: usize = 2;
/// How long after a job in a container its walk still counts as reading file by file: the
/// first whole-file miss in another of its directories then starts a job of [`MAX_BATCH`]
/// files at once (a `grep -r` goes from one directory to the next within milliseconds).
pub const HOT: Duration = Duration::from_secs(1);

/// One job's work, shared by its workers: the names to store, in listing order, the cursor
/// (the next name to take), and its bounds.
struct Job {
    names: Vec<Vec<u8>>,
    /// Most files stored.
    n: usize,
    next: AtomicUsize,
    files: AtomicUsize,
    bytes: AtomicUsize,
    started: Instant,
}

/// What is known of the reading of one directory.
#[derive(Default)]
struct Walk {
    /// Whole-file misses seen in it.
    misses: u32,
    /// A job for it is running.
    busy: bool,
    /// Files the next job stores.
    batch: usize,
    /// The latest whole-file miss while a job ran: the walk got past the job, which then
    /// skips ahead of it rather than store files already read.
    ahead: Option<Vec<u8>>,
}

/// The prefetcher's state: walks followed, the notifier (set once the session exists), counts.
pub struct Prefetch {
    notifier: OnceLock<Notifier>,
    walks: Mutex<LruCache<u64, Walk>>,
    /// Files stored lately, by inode: the size and mtime stored. A file stored unchanged since
    /// is not stored again (a directory re-read after one of its files changed would otherwise
    /// push the unchanged rest into the kernel once more).
    stored: Mutex<LruCache<u64, (u64, i64, u32)>>,
    /// The container instance whose walk started a job last, and when ([`HOT`]).
    hot: Mutex<Option<(u64, Instant)>>,
    /// Files stored, bytes stored, and stores taken back (the file changed meanwhile).
    files: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    /// Jobs started, and names a job looked at without storing them.
    jobs: AtomicU64,
    passed: AtomicU64,
}

impl Default for Prefetch {
    fn default() -> Prefetch {
        Prefetch {
            notifier: OnceLock::new(),
            walks: Mutex::new(LruCache::new(
                NonZeroUsize::new(WALKS).unwrap_or(NonZeroUsize::MIN),
            )),
            stored: Mutex::new(LruCache::new(
                NonZeroUsize::new(STORED).unwrap_or(NonZeroUsize::MIN),
            )),
            hot: Mutex::new(None),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        }
    }
}

impl Prefetch {
    /// Gives the prefetcher the session's notifier; nothing is stored before.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// `name prefetch-files N` lines for the request report (`user.ctrfsd.requests`).
    pub fn report(&self) -> String {
        format!(
            "prefetch-files {}\nprefetch-bytes {}\nprefetch-dropped {}\nprefetch-jobs {}\n\
             prefetch-passed {}\n{}",
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
            self.passed.load(Ordering::Relaxed),
            super::coldahead::report()
        )
    }

    fn stored_lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, (u64, i64, u32)>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn walks(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Walk>> {
        self.walks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a whole-file miss in directory `dir` of container instance `seq`; returns how
    /// many files to store if a job should start now (the caller then calls [`Self::done`]
    /// when it ends). The second miss in a directory starts a job; the first one does when a
    /// job ran in the same container within [`HOT`] (the walk has moved on to this directory).
    fn note_miss(&self, seq: u64, dir: u64, name: &[u8]) -> Option<usize> {
        let hot = {
            let h = self.hot.lock().unwrap_or_else(|e| e.into_inner());
            h.is_some_and(|(s, at)| s == seq && at.elapsed() < HOT)
        };
        let mut walks = self.walks();
        let w = walks.get_or_insert_mut(dir, || Walk {
            batch: if hot { MAX_BATCH } else { FIRST_BATCH },
            ..Walk::default()
        });
        w.misses += 1;
        if w.busy {
            w.ahead = Some(name.to_vec());
            drop(walks);
            // Still reading file by file: its next directory's first miss starts a full job.
            self.set_hot(seq);
            return None;
        }
        if w.misses < 2 && !hot {
            return None;
        }
        w.busy = true;
        let n = w.batch;
        w.batch = (w.batch * 4).min(MAX_BATCH);
        drop(walks);
        self.set_hot(seq);
        Some(n)
    }

    fn set_hot(&self, seq: u64) {
        *self.hot.lock().unwrap_or_else(|e| e.into_inner()) = Some((seq, Instant::now()));
    }

    fn done(&self, dir: u64) {
        if let Some(w) = self.walks().get_mut(&dir) {
            w.busy = false;
            w.ahead = None;
        }
    }

    /// The name the walk was last seen reading past a running job, if any since last asked.
    fn take_ahead(&self, dir: u64) -> Option<Vec<u8>> {
        self.walks().get_mut(&dir).and_then(|w| w.ahead.take())
    }
}

impl CtrFs {
    /// Called after a read of `file` that found no cached fd, started at offset 0 and read
    /// the whole file: may start a prefetch job for the files after it (module doc).
    pub(super) fn after_whole_miss(self: &Arc<CtrFs>, file: &Node) {
        let loc = file.loc();
        if is_virtual(loc.parent)
            || file.kind != FileType::RegularFile
            || self.prefetch.notifier.get().is_none()
        {
            return;
        }
        let Some(n) = self
            .prefetch
            .note_miss(file.inst.seq, loc.parent, &loc.name)
        else {
            return;
        };
        self.start_job(loc.parent, loc.name.to_vec(), n);
    }

    /// Starts a job storing up to `n` files of directory `dir_ino` listed after `after`; the
    /// walk of `dir_ino` was marked busy by the caller ([`Prefetch::note_miss`]).
    fn start_job(self: &Arc<CtrFs>, dir_ino: u64, after: Vec<u8>, n: usize) {
        let dir = match self.node(dir_ino) {
            Ok(d) if d.kind == FileType::Directory && d.shown == Shown::Normal => d,
            _ => return self.prefetch.done(dir_ino),
        };
        let Ok(dfd) = self.dir_fd(&dir) else {
            return self.prefetch.done(dir_ino);
        };
        let fs = self.clone();
        let seq = super::guard::Bucket::of(&dir);
        self.prefetch.jobs.fetch_add(1, Ordering::Relaxed);
        let r = self.guard.run(
            seq,
            (),
            |()| {},
            move |claim| {
                // Listed once, on this helper; then stored by `WORKERS` helpers.
                let job = fs.names_after(&dfd, &after, 2 * n).map(|names| {
                    Arc::new(Job {
                        names,
                        n,
                        next: AtomicUsize::new(0),
                        files: AtomicUsize::new(0),
                        bytes: AtomicUsize::new(0),
                        started: Instant::now(),
                    })
                });
                let Ok(job) = job else {
                    return fs.prefetch.done(dir.ino);
                };
                let (dir, dfd) = (Arc::new(dir), Arc::new(dfd));
                let left = Arc::new(AtomicUsize::new(WORKERS));
                for _ in 1..WORKERS {
                    let (fs2, job2, dir2, dfd2, left2) = (
                        fs.clone(),
                        job.clone(),
                        dir.clone(),
                        dfd.clone(),
                        left.clone(),
                    );
                    let r = fs.guard.run(
                        seq,
                        (),
                        |()| {},
                        move |claim| {
                            fs2.store_job(&dir2, &dfd2, &job2, &claim);
                            if left2.fetch_sub(1, Ordering::AcqRel) == 1 {
                                fs2.prefetch.done(dir2.ino);
                            }
                        },
                    );
                    if r.is_err() {
                        left.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                // A cold walk: start the disk reads of the job's files now (coldahead.rs),
                // while the other workers already store.
                fs.read_ahead_if_cold(&dir, &dfd, &job.names, job.started, &claim);
                fs.store_job(&dir, &dfd, &job, &claim);
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    fs.prefetch.done(dir.ino);
                }
            },
        );
        if r.is_err() {
            self.prefetch.done(dir_ino);
        }
    }

    /// One worker of a job: stores the files of `job` (regular files listed in directory
    /// `dir`), taking the next name from the job's cursor, until the job's bounds are reached.
    fn store_job(&self, dir: &Node, dfd: &OwnedFd, job: &Job, claim: &Claim<()>) {
        let Some(notifier) = self.prefetch.notifier.get() else {
            return;
        };
        loop {
            let (files, bytes) = (
                job.files.load(Ordering::Relaxed),
                job.bytes.load(Ordering::Relaxed),
            );
            if files >= job.n
                || bytes >= MAX_BYTES
                || job.started.elapsed() > MAX_TIME
                || claim.expired()
            {
                break;
            }
            // The walk read a file further on itself: go on after it.
            if let Some(past) = self.prefetch.take_ahead(dir.ino) {
                let at = job.next.load(Ordering::Relaxed).min(job.names.len());
                if let Some(j) = job.names[at..].iter().position(|m| *m == past) {
                    job.next.fetch_max(at + j + 1, Ordering::Relaxed);
                }
            }
            let i = job.next.fetch_add(1, Ordering::Relaxed);
            let Some(name) = job.names.get(i) else {
                break;
            };
            if let Ok(Some(len)) = self.store_one(dir, dfd, OsStr::from_bytes(name), notifier) {
                job.files.fetch_add(1, Ordering::Relaxed);
                job.bytes.fetch_add(len, Ordering::Relaxed);
            } else {
                self.prefetch.passed.fetch_add(1, Ordering::Relaxed);
            }
        }
        log::trace!("prefetch in {}: worker done", dir.ino);
    }

    /// Names of possible regular files listed after `after` in `dfd` (at most `n` of them).
    fn names_after(&self, dfd: &OwnedFd, after: &[u8], n: usize) -> io::Result<Vec<Vec<u8>>> {
        let fd = self.retry_emfile(|| {
            openat(
                dfd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOATIME,
                Mode::empty(),
            )
        })?;
        let mut dir = rustix::fs::Dir::new(fd)?;
        let (mut past, mut out) = (false, Vec::new());
        while let Some(e) = dir.read() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if !past {
                past = name == after;
                continue;
            }
            let t = e.file_type();
            if t == rustix::fs::FileType::RegularFile || t == rustix::fs::FileType::Unknown {
                out.push(name.to_vec());
                if out.len() >= n {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// File `name` of `dir`, reached as [`Core::child_at`](super::Core::child_at) does, if it
    /// is a regular file of 1 to [`MAX_FILE`] bytes on a mount ctrfsd serves: its `O_PATH` fd
    /// and status. What a prefetch job stores and a cold walk reads ahead (`coldahead`).
    ///
    /// # Errors
    ///
    /// What [`Core::child_at`](super::Core::child_at) answers (the name is gone, a walk failed).
    pub(super) fn small_file_at(
        &self,
        dir: &Node,
        dfd: &OwnedFd,
        name: &OsStr,
    ) -> io::Result<Option<(OwnedFd, Statx)>> {
        let Reached::Here(opath, st) = self.child_at(&dir.inst, dfd.as_fd(), name)? else {
            return Ok(None);
        };
        let size = st.stx_size;
        let small = kind_of(u32::from(st.stx_mode)) == FileType::RegularFile
            && size > 0
            && size <= MAX_FILE;
        Ok(small.then_some((opath, st)))
    }

    /// Stores file `name` of `dir` if it qualifies (module doc); its length if stored.
    fn store_one(
        &self,
        dir: &Node,
        dfd: &OwnedFd,
        name: &OsStr,
        notifier: &Notifier,
    ) -> io::Result<Option<usize>> {
        let Some((opath, st)) = self.small_file_at(dir, dfd, name)? else {
            return Ok(None);
        };
        if !settled(&st) {
            return Ok(None);
        }
        let size = st.stx_size;
        let key = NodeKey {
            seq: dir.inst.seq,
            mnt: st.stx_mnt_id as u32,
            dev: dev_of(&st),
            ino: st.stx_ino,
            link_parent: 0,
        };
        // Only an inode the kernel holds can take the bytes (and its attributes came from us).
        let Some(node) = self.nodes.find(&key) else {
            return Ok(None);
        };
        if node.shown != Shown::Normal || self.files.get(node.ino).is_some() {
            return Ok(None); // read through ctrfsd already: the kernel has asked for it
        }
        // Never a file a user's container may not show: a read of it would be EACCES, but
        // bytes in the page cache are read without asking ctrfsd (no-open mode).
        if dir.inst.may(&st, crate::idmap::READ).is_err() {
            return Ok(None);
        }
        let version = (size, st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec);
        if self.prefetch.stored_lock().get(&node.ino) == Some(&version) {
            return Ok(None); // stored before and unchanged since
        }
        let fd = self.reopen(&opath)?;
        let mut buf = vec![0u8; size as usize + 1];
        let got = rustix::io::pread(&fd, &mut buf, 0)?;
        if got as u64 != size {
            return Ok(None); // changing as we read: left to the kernel's own reads
        }
        if let Err(e) = notifier.store(INodeNo(node.ino), 0, &buf[..got]) {
            log::debug!("prefetch store {}: {e}", node.ino);
            return Ok(None);
        }
        // Changed since its status was taken (before or during the read, or before the
        // store): take the bytes back.
        let now = statx(&fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
        if !same(&st, &now) {
            let _ = notifier.inval_inode(INodeNo(node.ino), 0, 0);
            self.prefetch.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.prefetch.stored_lock().put(node.ino, version);
        self.prefetch.files.fetch_add(1, Ordering::Relaxed);
        self.prefetch.bytes.fetch_add(got as u64, Ordering::Relaxed);
        Ok(Some(got))
    }
}

/// True if `st` shows no change (data or status) for [`SETTLED`].
fn settled(st: &Statx) -> bool {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return false;
    };
    let newest = st.stx_ctime.tv_sec.max(st.stx_mtime.tv_sec);
    let Ok(newest) = u64::try_from(newest) else {
        return false; // before 1970: odd, not stored
    };
    // Whole seconds, rounded up: a change at any point of second `newest` counts as its end.
    now.as_secs() >= newest + 1 + SETTLED.as_secs()
}

/// The same file with the same contents, as far as status tells.
fn same(a: &Statx, b: &Statx) -> bool {
    let t = |x: &rustix::fs::StatxTimestamp| (x.tv_sec, x.tv_nsec);
    a.stx_ino == b.stx_ino
        && a.stx_size == b.stx_size
        && t(&a.stx_mtime) == t(&b.stx_mtime)
        && t(&a.stx_ctime) == t(&b.stx_ctime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_miss_starts_a_job_batches_grow_and_a_walk_ahead_is_remembered() {
        let p = Prefetch::default();
        assert_eq!(p.note_miss(1, 7, b"a"), None, "one file read is not a walk");
        assert_eq!(p.note_miss(1, 7, b"b"), Some(FIRST_BATCH));
        // While the job runs: no second job; the walk's position is kept for it.
        assert_eq!(p.note_miss(1, 7, b"x"), None);
        assert_eq!(p.take_ahead(7).as_deref(), Some(&b"x"[..]));
        assert_eq!(p.take_ahead(7), None);
        p.done(7);
        assert_eq!(p.note_miss(1, 7, b"y"), Some(FIRST_BATCH * 4));
        p.done(7);
        assert_eq!(
            p.note_miss(1, 7, b"z"),
            Some(MAX_BATCH.min(FIRST_BATCH * 16))
        );
        p.done(7);
        // The walk of container 1 goes on to another directory: its first miss starts a
        // full job there; a file read in another container's directory starts nothing.
        assert_eq!(p.note_miss(1, 8, b"a"), Some(MAX_BATCH));
        assert_eq!(p.note_miss(2, 9, b"a"), None);
    }

    #[test]
    fn a_container_stays_hot_for_a_while_only() {
        let p = Prefetch::default();
        *p.hot.lock().unwrap() = Some((1, Instant::now() - HOT));
        assert_eq!(p.note_miss(1, 8, b"a"), None, "an old walk is not this one");
    }
}
