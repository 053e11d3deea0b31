//! Name walks in container directories on the FUSE workers: from the kernel's dentry cache
//! only, so that no worker waits on a directory's inode lock a container holds.
//!
//! A lookup of a name the container filesystem has not cached (never looked up, or evicted
//! since under memory pressure) takes its directory's inode lock, which a container process
//! can hold for good (README, "What the deadline does not cover"). Lookups already run under
//! the deadline of [`super::guard`], and so does `statfs` ([`FuseFs::guarded`]); the other
//! handlers (`getattr`, `readlink`, `access`, the xattr calls, the first step of `open`,
//! `opendir`, `read` and `lseek`) walk a name of a container directory only to re-find a file
//! the kernel already holds, whose dentry is nearly always still cached. So they run on the
//! worker in [`cached_only`] mode, where every walk ([`openat2`]) adds `RESOLVE_CACHED` (Linux
//! 5.12; fs/namei.c: a walk that would leave RCU mode, a name not in the dcache included, fails
//! with `EAGAIN` before taking any lock), and a handler whose walk missed is run again on a
//! helper thread under the deadline.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use fuser::Errno;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::path::Arg;

use super::{CtrFs, FuseFs};

thread_local! {
    /// Set while a FUSE worker runs a handler in [`cached_only`] mode.
    static CACHED_ONLY: Cell<bool> = const { Cell::new(false) };
    /// Set when a walk in that mode needed more than the dcache.
    static MISSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every [`openat2`] limited to the dentry cache. `None` if a walk needed more
/// (`f`'s answer is then not to be trusted: it may have taken the miss for a missing file):
/// run `f` again where it may wait, under the deadline.
pub(super) fn cached_only<T>(f: impl FnOnce() -> T) -> Option<T> {
    /// Ends the mode however `f` ends (a panic included), so no later call on this thread
    /// inherits it.
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CACHED_ONLY.set(false);
        }
    }
    CACHED_ONLY.set(true);
    MISSED.set(false);
    let mode = Leave;
    let r = f();
    drop(mode);
    (!MISSED.replace(false)).then_some(r)
}

/// `openat2(dir, path, flags, resolve)`, with `RESOLVE_CACHED` added in [`cached_only`] mode.
///
/// # Errors
///
/// What `openat2` answers; in [`cached_only`] mode also `EAGAIN` when the walk needed more than
/// the dentry cache (and [`cached_only`] then returns `None`).
pub(super) fn openat2<P: Arg>(
    dir: impl AsFd,
    path: P,
    flags: OFlags,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    if !CACHED_ONLY.get() {
        return rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve);
    }
    let r = rustix::fs::openat2(
        dir,
        path,
        flags,
        Mode::empty(),
        resolve | ResolveFlags::CACHED,
    );
    if matches!(r, Err(rustix::io::Errno::AGAIN)) {
        MISSED.set(true);
    }
    r
}

/// A FUSE reply that can carry an error (what [`FuseFs::cached_or_guarded`] answers at the
/// deadline, EIO, or when the container holds its share of helpers, EAGAIN).
pub(super) trait ErrorReply: Send + 'static {
    /// Answers with `e`.
    fn error(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {$(
        impl ErrorReply for $t {
            fn error(self, e: Errno) {
                <$t>::error(self, e)
            }
        }
    )*};
}
error_reply!(
    fuser::ReplyAttr,
    fuser::ReplyData,
    fuser::ReplyEmpty,
    fuser::ReplyLseek,
    fuser::ReplyOpen,
    fuser::ReplyStatfs,
    fuser::ReplyXattr
);

/// The answer at the deadline (the walk waits on a directory lock the container holds).
fn expired<R: ErrorReply>(reply: R) {
    reply.error(Errno::EIO);
}

impl FuseFs {
    /// Runs `work` for node `ino` on this FUSE worker with name walks limited to the dentry
    /// cache ([`cached_only`]) and hands its result to `answer`. If a walk needed more, `work`
    /// runs again on a helper thread under the deadline of [`super::guard`]: `answer` is then
    /// called there, or the request is answered EIO after the deadline, or EAGAIN at once when
    /// the container already holds its share of helpers (the errno goes to `answer`).
    pub(super) fn cached_or_guarded<R: ErrorReply, T: Send + 'static>(
        &self,
        ino: u64,
        reply: R,
        work: impl Fn(&CtrFs) -> io::Result<T> + Send + 'static,
        answer: impl FnOnce(&Arc<CtrFs>, io::Result<T>, R) + Send + 'static,
    ) {
        if let Some(r) = cached_only(|| work(&self.0)) {
            return answer(&self.0, r, reply);
        }
        log::debug!("node {ino}: a walk missed the dentry cache; again under the deadline");
        self.guarded(ino, reply, work, answer);
    }

    /// Runs `work` for node `ino` on a helper thread under the deadline of [`super::guard`],
    /// never on this FUSE worker, and hands its result to `answer` (or the request is answered
    /// EIO after the deadline, or EAGAIN at once when the container already holds its share of
    /// helpers). For a call that asks the filesystem beneath the file whatever the walk:
    /// `statfs` of an overlay asks its first layer's filesystem (`ovl_statfs`), a FUSE server
    /// when the overlay is one the README's known holes let through.
    pub(super) fn guarded<R: ErrorReply, T: Send + 'static>(
        &self,
        ino: u64,
        reply: R,
        work: impl Fn(&CtrFs) -> io::Result<T> + Send + 'static,
        answer: impl FnOnce(&Arc<CtrFs>, io::Result<T>, R) + Send + 'static,
    ) {
        let Some(seq) = self.container_of(ino) else {
            // Not a container's node: nothing a container can lock.
            return answer(&self.0, work(&self.0), reply);
        };
        let fs = self.0.clone();
        let r = self.guard.run(seq, reply, expired::<R>, move |claim| {
            let r = work(&fs);
            if let Some(reply) = claim.take() {
                answer(&fs, r, reply);
            }
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }
}
