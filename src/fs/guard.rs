//! Deadlines for the system calls a container can block: no FUSE worker ever waits on one.
//!
//! A container with `CAP_SYS_ADMIN` can mark its own files with a fanotify permission mark
//! (`FAN_OPEN_PERM`, `FAN_ACCESS_PERM`, with `FAN_ONDIR` for directories) and never answer: any
//! `open` for reading, `read` or `getdents` of those files then waits, uninterruptibly for ctrfsd, until the listener answers or dies. The
//! host process reading through `/ctr` waits on ctrfsd's reply and cannot be killed either.
//! (`O_PATH` opens and `statx` raise no permission event: fs/open.c `do_dentry_open` returns
//! before `fsnotify_open_perm` for `O_PATH`.)
//!
//! So such a call runs on a helper thread, which answers the request itself; the FUSE worker
//! goes back to the kernel at once. If the call has not returned after [`DEADLINE`], the request
//! is answered EIO and the helper is counted as stuck against its container until the call
//! returns. Calls are counted per container and per mount of it ([`Bucket`]): one mount of a
//! container with [`MAX_STUCK`] stuck calls, the container with [`MAX_STUCK_TOTAL`], or
//! [`MAX_IN_FLIGHT`] calls in flight, gets EAGAIN for further ones at once. So a block costs
//! the mount it is on (a volume another container shares and marks blocks that volume, not
//! the reader's own image files), never the other containers, and holds a bounded number of
//! threads. Once its listener answers or exits, the stuck calls return and it is served again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long a blockable call may take before its request is answered EIO. Long enough for a
/// local read on a busy machine; a reader waiting on a blocked file gets its error after this.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// Calls on one mount of a container past their deadline and still running, at which calls
/// on that mount get EAGAIN.
pub const MAX_STUCK: usize = 4;

/// Calls of one container past their deadline and still running, on all its mounts, at which
/// all its calls get EAGAIN.
pub const MAX_STUCK_TOTAL: usize = 16;

/// What a call is counted against: container instance `seq` (`Instance::seq`) and the mount
/// id (`statx` `stx_mnt_id`, low 32 bits, as `NodeKey::mnt`) of the file or directory it
/// touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The container instance; 0 for a read of a container already gone.
    pub seq: u64,
    /// The mount id of what the call touches.
    pub mnt: u32,
}

impl Bucket {
    /// The bucket of a call on `node`.
    pub fn of(node: &super::nodes::Node) -> Bucket {
        Bucket {
            seq: node.inst.seq,
            mnt: node.key.mnt,
        }
    }
}

/// Calls of one container running at once, at which it gets EAGAIN (the kernel's readahead
/// alone keeps a few in flight per file; this bounds the threads one container can hold).
pub const MAX_IN_FLIGHT: usize = 64;

/// How long an idle helper thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Count {
    in_flight: usize,
    stuck: usize,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    idle: usize,
}

/// What runs now: per container, per mount of it, and per call with its deadline.
#[derive(Default)]
struct Flights {
    /// By container instance (`Instance::seq`).
    counts: HashMap<u64, Count>,
    /// By container and mount.
    mounts: HashMap<Bucket, Count>,
    /// Calls not yet answered, by submission number: the first is the oldest, so deadlines
    /// (all [`DEADLINE`] after submission) fall in this order. Removed when the call ends.
    pending: BTreeMap<u64, (Instant, Weak<dyn Expire>)>,
    next: u64,
    /// The deadline thread waits for a first call (nothing pending when it last looked): the
    /// next submission wakes it. Otherwise it wakes by itself at the oldest deadline, so a
    /// stream of short calls costs it one wake-up per [`DEADLINE`], not one per call.
    idle: bool,
}

#[derive(Default)]
struct Inner {
    flights: Mutex<Flights>,
    jobs: Mutex<Jobs>,
    job_ready: Condvar,
    first_pending: Condvar,
}

/// A call's answer slot, as the deadline thread sees it.
trait Expire: Send + Sync {
    /// Answers the call's request at its deadline (EIO) if it is still unanswered, and counts
    /// the call as stuck in `flights` (under the slot's lock, as [`Claim`]'s drop takes them).
    fn expire(&self, flights: &Mutex<Flights>);
}

/// The reply until someone answers it, and the answer at the deadline.
struct Cell<R> {
    slot: Mutex<Slot<R>>,
    expired: fn(R),
    bucket: Bucket,
}

impl<R: Send> Expire for Cell<R> {
    fn expire(&self, flights: &Mutex<Flights>) {
        let mut s = lock(&self.slot);
        if !matches!(*s, Slot::Waiting(_)) {
            return; // answered in time
        }
        if let Slot::Waiting(r) = std::mem::replace(&mut *s, Slot::Expired) {
            log::warn!(
                "an open, read or listing in a container (instance {}) passed its {}s \
                 deadline: answered EIO (a fanotify permission listener that does not answer?)",
                self.bucket.seq,
                DEADLINE.as_secs()
            );
            (self.expired)(r);
            let mut f = lock(flights);
            if let Some(c) = f.counts.get_mut(&self.bucket.seq) {
                c.stuck += 1;
            }
            if let Some(c) = f.mounts.get_mut(&self.bucket) {
                c.stuck += 1;
            }
        }
    }
}

/// The helper threads, the deadline thread and the per-container accounting.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

enum Slot<R> {
    Waiting(R),
    Taken,
    Expired,
}

/// The right to answer a request, held by the helper running its call; see [`Guard::run`].
pub struct Claim<R> {
    cell: Arc<Cell<R>>,
    /// Submission number (`Flights::pending`).
    id: u64,
    inner: Arc<Inner>,
}

impl<R> Claim<R> {
    /// The reply, unless the deadline passed and it was answered EIO already.
    pub fn take(&self) -> Option<R> {
        let mut s = lock(&self.cell.slot);
        match std::mem::replace(&mut *s, Slot::Taken) {
            Slot::Waiting(r) => Some(r),
            other => {
                *s = other;
                None
            }
        }
    }
}

impl<R> Claim<R> {
    /// True once the deadline passed (the request was answered EIO): a job of several steps
    /// stops at the next one.
    pub fn expired(&self) -> bool {
        matches!(*lock(&self.cell.slot), Slot::Expired)
    }
}

impl<R> Drop for Claim<R> {
    fn drop(&mut self) {
        // Slot, then flights: the deadline thread takes them in the same order. A reply never
        // taken (a job that answers nothing, or a panic) is dropped here, so it cannot expire
        // after this call was counted as ended.
        let mut s = lock(&self.cell.slot);
        let expired = matches!(*s, Slot::Expired);
        if matches!(*s, Slot::Waiting(_)) {
            *s = Slot::Taken;
        }
        let mut f = lock(&self.inner.flights);
        f.pending.remove(&self.id);
        let b = self.cell.bucket;
        end_call(&mut f.counts, b.seq, expired);
        end_call(&mut f.mounts, b, expired);
    }
}

/// Counts the end of a call against `key` in `counts` (and the end of its being stuck, if it
/// `expired`); an entry with nothing left is removed.
fn end_call<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, Count>, key: K, expired: bool) {
    if let Some(c) = counts.get_mut(&key) {
        c.in_flight = c.in_flight.saturating_sub(1);
        if expired {
            c.stuck = c.stuck.saturating_sub(1);
        }
        if c.in_flight == 0 && c.stuck == 0 {
            counts.remove(&key);
        }
    }
}

impl Guard {
    /// Starts the deadline thread; helper threads start on demand.
    ///
    /// # Errors
    ///
    /// The `io::Error` of the deadline thread's creation (`EAGAIN` from `clone` when the thread or
    /// memory limit is reached).
    pub fn new() -> std::io::Result<Guard> {
        let inner = Arc::new(Inner::default());
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("deadlines".into())
            .spawn(move || deadlines(weak))?;
        Ok(Guard { inner })
    }

    /// Runs `work`, a call on mount `bucket.mnt` of container `bucket.seq`, on a helper thread;
    /// `work` answers `reply` through its [`Claim`]. After [`DEADLINE`], `expired` answers it
    /// instead (EIO). If the mount or the container already holds its share of helpers,
    /// `reply` comes back at once (answer EAGAIN).
    ///
    /// # Errors
    ///
    /// `Err(reply)`, untouched, when the container already has [`MAX_IN_FLIGHT`] requests in
    /// flight or [`MAX_STUCK_TOTAL`] stuck past their deadline, or the mount [`MAX_STUCK`]:
    /// the caller answers it (EAGAIN) so one hung container cannot take every helper thread.
    pub fn run<R: Send + 'static>(
        &self,
        bucket: Bucket,
        reply: R,
        expired: fn(R),
        work: impl FnOnce(Claim<R>) + Send + 'static,
    ) -> Result<(), R> {
        let (cell, id) = {
            let mut f = lock(&self.inner.flights);
            let c = f.counts.entry(bucket.seq).or_default();
            if c.stuck >= MAX_STUCK_TOTAL
                || c.in_flight >= MAX_IN_FLIGHT
                || f.mounts.get(&bucket).is_some_and(|m| m.stuck >= MAX_STUCK)
            {
                return Err(reply);
            }
            f.counts.entry(bucket.seq).or_default().in_flight += 1;
            f.mounts.entry(bucket).or_default().in_flight += 1;
            let cell = Arc::new(Cell {
                slot: Mutex::new(Slot::Waiting(reply)),
                expired,
                bucket,
            });
            let id = f.next;
            f.next += 1;
            let weak: Weak<dyn Expire> = Arc::downgrade(&cell) as Weak<dyn Expire>;
            f.pending.insert(id, (Instant::now() + DEADLINE, weak));
            if f.idle {
                f.idle = false;
                self.inner.first_pending.notify_one();
            }
            (cell, id)
        };
        let claim = Claim {
            cell,
            id,
            inner: self.inner.clone(),
        };
        self.submit(Box::new(move || work(claim)));
        Ok(())
    }

    fn submit(&self, job: Job) {
        let mut jobs = lock(&self.inner.jobs);
        jobs.queue.push_back(job);
        if jobs.idle >= jobs.queue.len() {
            self.inner.job_ready.notify_one();
            return;
        }
        drop(jobs);
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("blockable".into())
            .spawn(move || helper(inner));
        if let Err(e) = spawned {
            // The queued job runs when a helper frees up; its deadline still answers it.
            log::warn!("starting a helper thread: {e}");
        }
    }
}

fn helper(inner: Arc<Inner>) {
    loop {
        let job = {
            let mut jobs = lock(&inner.jobs);
            loop {
                if let Some(job) = jobs.queue.pop_front() {
                    break job;
                }
                jobs.idle += 1;
                let (j, timeout) = inner
                    .job_ready
                    .wait_timeout(jobs, IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                jobs = j;
                jobs.idle -= 1;
                if timeout.timed_out() && jobs.queue.is_empty() {
                    return;
                }
            }
        };
        // A panic drops the job's claim (its reply answers EIO as fuser drops it).
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

fn deadlines(inner: Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut due = Vec::new();
        {
            let mut f = lock(&inner.flights);
            let now = Instant::now();
            match f.pending.first_key_value().map(|(_, (at, _))| *at) {
                None => {
                    f.idle = true;
                    let _ = inner.first_pending.wait_timeout(f, Duration::from_secs(5));
                }
                Some(at) if at > now => {
                    let _ = inner.first_pending.wait_timeout(f, at - now);
                }
                Some(_) => {
                    while let Some(e) = f.pending.first_entry() {
                        if e.get().0 > now {
                            break;
                        }
                        let (_, cell) = e.remove();
                        due.push(cell);
                    }
                }
            }
        }
        // Answered outside the lock (a reply writes to /dev/fuse).
        for cell in due {
            if let Some(c) = cell.upgrade() {
                c.expire(&inner.flights);
            }
        }
    }
}
