//! The watch thread: reads the inotify events of [`super::Watches`] in batches and turns each
//! into the FUSE notifications that take back what the kernel caches (entries, attributes,
//! pages, listings), including the second name invalidation [`super::RESEND`] later and, when
//! the event queue overflowed, the invalidation of everything. What is watched, and how events
//! are read and decoded, is the parent module's.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fuser::{FileType, INodeNo, Notifier};
use log::{debug, warn};
use rustix::fs::inotify::ReadFlags;
use rustix::fs::{AtFlags, statx};

use super::super::attr::{STATX_MASK, dev_of, kind_of};
use super::super::nodes::{NodeKey, Nodes};
use super::{DirFds, Ev, RESEND, Watches};

/// How long to let events gather after a batch, so a file written in a loop costs one
/// invalidation per batch, not one per write.
const GATHER: Duration = Duration::from_millis(5);

impl Watches {
    /// The event loop: runs for the life of the process.
    pub fn run(self: Arc<Self>, nodes: Arc<Nodes>, fds: Arc<dyn DirFds>, notifier: Notifier) {
        let Some(ifd) = &self.fd else { return };
        let mut inv = Invalidator {
            notifier,
            nodes,
            fds,
            watches: self.clone(),
            resend: Vec::new(),
        };
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            // Wait for events, or for the next resend to fall due.
            let timeout = inv.resend.first().map(|(at, _, _)| {
                let left = at.saturating_duration_since(Instant::now());
                rustix::event::Timespec::try_from(left).unwrap_or_default()
            });
            let mut pfd = [rustix::event::PollFd::new(
                ifd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut pfd, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    warn!("polling inotify: {e}; change notification stopped");
                    return;
                }
            }
            let batch = self.read_batch(ifd, &mut buf);
            if !batch.is_empty() {
                inv.handle(batch);
                std::thread::sleep(GATHER);
            }
            inv.resend_due();
        }
    }
}

struct Invalidator {
    notifier: Notifier,
    nodes: Arc<Nodes>,
    fds: Arc<dyn DirFds>,
    watches: Arc<Watches>,
    /// Name invalidations to send again: (when, directory ino, name).
    resend: Vec<(Instant, u64, Vec<u8>)>,
}

impl Invalidator {
    fn count(&self) {
        self.watches.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    fn inval_entry(&self, dir: u64, name: &[u8]) {
        self.count();
        if let Err(e) = self
            .notifier
            .inval_entry(INodeNo(dir), OsStr::from_bytes(name))
        {
            debug!("inval_entry {dir} {:?}: {e}", String::from_utf8_lossy(name));
        }
    }

    /// Attributes (and, with `data`, cached pages and a directory's cached listing).
    fn inval_inode(&self, ino: u64, data: bool) {
        self.count();
        let offset = if data { 0 } else { -1 };
        if let Err(e) = self.notifier.inval_inode(INodeNo(ino), offset, 0) {
            debug!("inval_inode {ino}: {e}");
        }
    }

    fn handle(&mut self, batch: Vec<Ev>) {
        if batch
            .iter()
            .any(|e| e.flags.contains(ReadFlags::QUEUE_OVERFLOW))
        {
            self.everything();
            return;
        }
        let now = Instant::now();
        let mut gone = HashSet::new();
        // Names deleted or moved away: the files last seen there may still be held open.
        let mut left: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for ev in batch {
            if ev.flags.contains(ReadFlags::IGNORED) {
                for (ino, _) in self.watches.ignored(ev.wd) {
                    self.inval_inode(ino, true);
                    gone.insert(ino);
                }
                continue;
            }
            for (dir, _) in self.watches.nodes_of(ev.wd) {
                match &ev.name {
                    None => self.inval_inode(dir, true),
                    Some(name) => {
                        let names_change = ev.flags.intersects(
                            ReadFlags::CREATE
                                | ReadFlags::DELETE
                                | ReadFlags::MOVED_FROM
                                | ReadFlags::MOVED_TO,
                        );
                        if names_change {
                            self.inval_entry(dir, name);
                            self.inval_inode(dir, true);
                            self.resend.push((now + RESEND, dir, name.clone()));
                        }
                        if !ev
                            .flags
                            .intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM)
                        {
                            self.child(dir, name);
                        } else {
                            left.entry(dir).or_default().push(name.clone());
                        }
                        // A file renamed over an existing name replaced the file last seen
                        // there, which no DELETE or MOVED_FROM announces: a host tool may
                        // hold that one open, and its `fstat` (nlink 0, a write made just
                        // before) must not come from before the replacement.
                        if ev.flags.contains(ReadFlags::MOVED_TO) {
                            left.entry(dir).or_default().push(name.clone());
                        }
                    }
                }
            }
        }
        if !gone.is_empty() {
            self.children(&gone);
        }
        if !left.is_empty() {
            self.left(&left);
        }
    }

    /// Invalidates the attributes of files last seen at names that were deleted, moved away
    /// or renamed over (`(directory, name)` pairs): a host tool may hold one open, and its
    /// `fstat` must
    /// not describe it from before a write that came just before the delete, for the long TTL.
    /// A file renamed into a watched directory was already moved there ([`Self::child`]). One
    /// pass over the table per batch.
    fn left(&self, names: &HashMap<u64, Vec<Vec<u8>>>) {
        let mut hit = Vec::new();
        self.nodes.for_each(|n| {
            if n.kind == FileType::Directory || !n.inst.is_current() {
                return;
            }
            let loc = n.loc();
            if names
                .get(&loc.parent)
                .is_some_and(|v| v.iter().any(|name| name[..] == loc.name[..]))
            {
                hit.push(n.ino);
            }
        });
        for ino in hit {
            self.inval_inode(ino, false);
        }
    }

    /// Invalidates the attributes of `name` in directory node `dir`, found by its identity.
    fn child(&self, dir: u64, name: &[u8]) {
        let Some(dnode) = self.nodes.get(dir) else {
            return;
        };
        let Ok(fd) = self.fds.dir_fd_of(&dnode) else {
            return;
        };
        let Ok(st) = statx(
            &*fd,
            OsStr::from_bytes(name),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
            STATX_MASK,
        ) else {
            return;
        };
        let kind = kind_of(u32::from(st.stx_mode));
        let key = NodeKey {
            seq: dnode.inst.seq,
            mnt: st.stx_mnt_id as u32,
            dev: dev_of(&st),
            ino: st.stx_ino,
            link_parent: if kind == FileType::Symlink { dir } else { 0 },
        };
        if let Some(node) = self.nodes.find(&key) {
            // Renamed here (or linked here): the file is found at this name from now on, so
            // a host tool holding it open keeps reading it, not whatever took its old name.
            // An instance root is never moved (its parent is made up).
            if kind != FileType::Symlink && !node.is_instance_root() {
                node.seen_at(dir, name);
            }
            self.inval_inode(node.ino, false);
        }
    }

    /// Invalidates every entry last seen in one of directories `dirs`, whose watches the
    /// kernel ended (deleted, or unmounted inside the container). One pass over the table.
    fn children(&self, dirs: &HashSet<u64>) {
        let mut hit = Vec::new();
        self.nodes.for_each(|n| {
            if !n.inst.is_current() {
                return; // a retired container: the registry invalidated it already
            }
            let loc = n.loc();
            if dirs.contains(&loc.parent) {
                hit.push((n.ino, loc.parent, loc.name));
            }
        });
        for (ino, dir, name) in hit {
            self.inval_entry(dir, &name);
            self.inval_inode(ino, false);
        }
    }

    /// Events were lost (the queue overflowed): nothing the kernel holds can be trusted.
    fn everything(&self) {
        self.watches.overflows.fetch_add(1, Ordering::Relaxed);
        let mut all = Vec::new();
        self.nodes.for_each(|n| all.push(n.clone()));
        warn!(
            "inotify queue overflowed: invalidating all {} cached entries",
            all.len()
        );
        for n in all {
            let loc = n.loc();
            if !crate::registry::is_virtual(loc.parent) {
                self.inval_entry(loc.parent, &loc.name);
            }
            self.inval_inode(n.ino, n.kind == FileType::Directory);
        }
    }

    fn resend_due(&mut self) {
        let now = Instant::now();
        let due = self.resend.partition_point(|(at, _, _)| *at <= now);
        let items: Vec<_> = self.resend.drain(..due).collect();
        for (_, dir, name) in items {
            self.inval_entry(dir, &name);
        }
    }
}
