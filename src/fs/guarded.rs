//! The FUSE handlers whose work may wait on a container (a fanotify permission listener on
//! its files): opening and reading files, `SEEK_DATA`/`SEEK_HOLE`, opening and listing real
//! directories. Each hands the work to a helper thread of [`super::guard`] with a deadline,
//! so the FUSE workers never wait on a container; `fuse.rs` calls these after its cheap checks.
//! Also the replies for log views (`/ctr/.logs` and links to stdout/stderr), which read host
//! files the runtime writes on the FUSE worker.

use std::io;

use fuser::{
    Errno, FileAttr, FileHandle, FopenFlags, INodeNo, OpenFlags, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyLseek, ReplyOpen,
};
use log::debug;

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::dirs::{DirEntry, open_dir, read_more};
use super::guard::Bucket;
use super::listing::{build_listing, entry_bytes, forget_unsent, learn_room};
use super::replies::*;
use super::{CtrFs, FuseFs};

impl FuseFs {
    /// Opens file `ino` for reading (passthrough mode) under the deadline of [`super::guard`].
    pub(super) fn guarded_open(&self, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let ino = ino.0;
        // Finding the file walks its directory: from the dentry cache on this worker (`walk`).
        self.cached_or_guarded(
            ino,
            reply,
            move |fs| fs.file_to_open(ino, flags.0),
            move |fs, r, reply| fs.open_found(ino, r, reply),
        );
    }

    /// What a call on `ino` counts against (its container instance and mount, [`Bucket`]), or
    /// `None` for the mount's own directories (the registry's), which no container can lock.
    pub(super) fn container_of(&self, ino: u64) -> Option<Bucket> {
        if crate::registry::is_virtual(ino) {
            return None;
        }
        self.nodes.get(ino).map(|n| Bucket::of(&n))
    }

    /// Looks `name` up in container directory `parent` under the deadline of [`super::guard`]:
    /// a lookup of a name the kernel has not cached takes the directory's inode lock (shared),
    /// which waits while a container process holds it, or queues behind a writer that waits on
    /// one (a `getdents` into memory the container never serves, a `creat` behind it). A
    /// lookup answered after the deadline is given back (its lookup count undone).
    pub(super) fn guarded_lookup(
        &self,
        seq: Bucket,
        parent: INodeNo,
        name: &std::ffi::OsStr,
        reply: fuser::ReplyEntry,
    ) {
        let fs = self.0.clone();
        let name = name.to_os_string();
        let r = self.guard.run(seq, reply, expired_entry, move |claim| {
            let r = fs.do_lookup(parent.0, &name);
            debug!(
                "lookup {} {name:?}: {:?}",
                parent.0,
                r.as_ref().map(|(a, ttl)| (a.ino.0, ttl.as_secs()))
            );
            let Some(reply) = claim.take() else {
                // Answered EIO at the deadline: the kernel never got this reference.
                match r {
                    Ok((attr, _)) if super::logview::is_log(attr.ino.0) => {
                        fs.log_forget(attr.ino.0, 1)
                    }
                    Ok((attr, _)) => fs.do_forget(attr.ino.0, 1),
                    Err(_) => {}
                }
                return;
            };
            match r {
                Ok((attr, ttl)) => reply.entry(&ttl, &attr, fuser::Generation(0)),
                Err(e) => reply.error(fs.err(&e)),
            }
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }

    /// Reads `size` bytes of file `ino` at `offset` under the deadline of [`super::guard`].
    pub(super) fn guarded_read(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        reply: ReplyData,
    ) {
        // Finding a file not yet open walks its directory: from the dentry cache (`walk`).
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.read_source(ino.0, fh.0),
            move |fs, r, reply| read_found(fs, r, offset, size, reply),
        );
    }

    /// Answers `SEEK_DATA`/`SEEK_HOLE` on file `ino` under the deadline of [`super::guard`].
    pub(super) fn guarded_lseek(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let pos = match super::seek::seek_target(offset, whence) {
            Ok(pos) => pos,
            Err(e) => return reply.error(self.err(&e)),
        };
        // Finding a file not yet open walks its directory: from the dentry cache (`walk`).
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.read_source(ino.0, fh.0),
            move |fs, r, reply| fs.seek_found(r, pos, reply),
        );
    }

    /// Lists directory `ino` from `offset` into `reply` (a plain listing or readdirplus); a
    /// real directory's entries are read under the deadline of [`super::guard`].
    pub(super) fn guarded_listing<R: ListingReply>(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: R,
    ) {
        let (ino, fh) = (ino.0, fh.0);
        let Some(seq) = self.guarded_dir(ino, fh) else {
            let r = self.do_readdir(ino, fh, offset, R::PLUS, None, |e, attr| {
                reply.add_entry(e, attr)
            });
            return self.ok_or_error(r.map(drop), reply);
        };
        let fs = self.0.clone();
        let r = self.guard.run(seq, reply, R::expired, move |claim| {
            let handle = fs.handles.get(fh);
            // Every call that may wait on the container (getdents, and each entry's `statx`
            // and `readlink` for readdirplus) runs before the reply is claimed, so the
            // deadline answers a listing that blocks anywhere, and this thread counts as stuck
            // against its container until it returns.
            let built = handle
                .as_deref()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
                .and_then(|h| build_listing::<R>(&fs, h, ino, fh, offset));
            let Some(mut reply) = claim.take() else {
                // Answered EIO at the deadline: the kernel got none of these references.
                if let Ok(b) = built {
                    forget_unsent::<R>(&fs, &b.entries);
                }
                return;
            };
            let b = match built {
                Ok(b) => b,
                Err(e) => return reply.error(fs.err(&e)),
            };
            let mut sent = 0;
            let mut bytes = 0;
            for e in &b.entries {
                let d = DirEntry {
                    ino: e.ino,
                    offset: e.offset,
                    kind: e.kind,
                    name: &e.name,
                    ttl: e.ttl,
                };
                if reply.add_entry(d, e.attr.as_ref()) {
                    break;
                }
                sent += 1;
                bytes += entry_bytes::<R>(&e.name);
            }
            forget_unsent::<R>(&fs, &b.entries[sent..]);
            if let Some(h) = handle.as_deref() {
                learn_room(h, sent < b.entries.len(), b.full, bytes);
                if b.more && !b.full && sent == b.entries.len() {
                    read_more(h); // room was left: read more for the next reply
                }
            }
            reply.ok();
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }

    /// Opens log view `ino`: decoded views have no backing file, so reads come through
    /// ctrfsd; anything but read-only is EROFS.
    pub(super) fn log_open(&self, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.log_getattr(ino.0) {
            Ok(_) if flags.0 & libc::O_ACCMODE != libc::O_RDONLY => {
                reply.error(self.errno(Errno::EROFS))
            }
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(self.err(&e)),
        }
    }

    /// Reads log view `ino`: host files the runtime writes (root's or a checked user's),
    /// read on this worker.
    pub(super) fn log_read_reply(&self, ino: INodeNo, offset: u64, size: u32, reply: ReplyData) {
        READ_BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            match self.log_read(ino.0, offset, &mut buf[..size as usize]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(self.err(&e)),
            }
        })
    }

    /// Opens log directory `ino` (ENOTDIR for a log file).
    pub(super) fn log_opendir(&self, ino: INodeNo, reply: ReplyOpen) {
        match self.log_getattr(ino.0) {
            Ok((a, _)) if a.kind == fuser::FileType::Directory => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Ok(_) => reply.error(self.errno(Errno::ENOTDIR)),
            Err(e) => reply.error(self.err(&e)),
        }
    }

    /// Ends a listing: `ok` when it worked, the errno otherwise.
    pub(super) fn ok_or_error<R: ListingReply>(&self, r: io::Result<()>, reply: R) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.err(&e)),
        }
    }
}

/// The two directory replies: a plain listing and readdirplus.
pub(super) trait ListingReply: Send + 'static {
    /// True for readdirplus (each entry comes with its attributes, and counts a lookup).
    const PLUS: bool;
    /// Adds one entry; true when the reply is full.
    fn add_entry(&mut self, e: DirEntry<'_>, attr: Option<&FileAttr>) -> bool;
    /// The listing is complete.
    fn ok(self);
    /// The listing failed with `e`.
    fn error(self, e: Errno);
    /// The answer to a listing that passed its deadline (`guard`): EIO.
    fn expired(self)
    where
        Self: Sized,
    {
        self.error(Errno::EIO)
    }
}

impl ListingReply for ReplyDirectory {
    const PLUS: bool = false;
    fn add_entry(&mut self, e: DirEntry<'_>, _: Option<&FileAttr>) -> bool {
        self.add(INodeNo(e.ino), e.offset, e.kind, e.name)
    }
    fn ok(self) {
        ReplyDirectory::ok(self)
    }
    fn error(self, e: Errno) {
        ReplyDirectory::error(self, e)
    }
}

impl ListingReply for ReplyDirectoryPlus {
    const PLUS: bool = true;
    fn add_entry(&mut self, e: DirEntry<'_>, attr: Option<&FileAttr>) -> bool {
        add_plus(self, e, attr)
    }
    fn ok(self) {
        ReplyDirectoryPlus::ok(self)
    }
    fn error(self, e: Errno) {
        ReplyDirectoryPlus::error(self, e)
    }
}

impl CtrFs {
    /// Opens the file [`CtrFs::file_to_open`] found (`r`) for reading, on a helper thread.
    fn open_found(&self, ino: u64, r: io::Result<(OwnedFd, Bucket)>, reply: ReplyOpen) {
        let (opath, seq) = match r {
            Ok(o) => o,
            Err(e) => {
                debug!("open {ino}: {:?}", e.raw_os_error());
                return reply.error(self.err(&e));
            }
        };
        // The open for reading may wait on the container (a fanotify listener): off the
        // FUSE workers, with a deadline (`guard`).
        let (core, handles, stats) = (self.core.clone(), self.handles.clone(), self.stats.clone());
        let r = self.guard.run(seq, reply, expired_open, move |claim| {
            let fd = core.reopen(&opath);
            let Some(reply) = claim.take() else {
                return;
            };
            match fd {
                Ok(fd) => answer_open(&handles, ino, fd, reply),
                Err(e) => {
                    debug!("open {ino}: {:?}", e.raw_os_error());
                    reply.error(counted(&stats, &e));
                }
            }
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }

    /// Answers a seek to `pos` in what [`CtrFs::read_source`] found (`r`), on a helper thread.
    fn seek_found(
        &self,
        r: io::Result<(super::ops::ReadFrom, Bucket)>,
        pos: rustix::fs::SeekFrom,
        reply: ReplyLseek,
    ) {
        let (from, seq) = match r {
            Ok(r) => r,
            Err(e) => return reply.error(self.err(&e)),
        };
        // Opening the file may wait on the container (a fanotify listener), as a read does:
        // off the FUSE workers, with the same deadline (`guard`).
        let (core, stats) = (self.core.clone(), self.stats.clone());
        let r = self.guard.run(seq, reply, expired_lseek, move |claim| {
            let r = core.seek_at(from, pos);
            let Some(reply) = claim.take() else {
                return;
            };
            match r {
                Ok(at) => reply.offset(at),
                Err(e) => reply.error(counted(&stats, &e)),
            }
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }

    /// Opens real directory `dir` for reading under the deadline of [`super::guard`]; `flags`:
    /// whether a watch covers it, and `dirs::DirFd::prestat`.
    pub(super) fn guarded_opendir(
        &self,
        dir: std::sync::Arc<std::os::fd::OwnedFd>,
        (watched, prestat): (bool, super::dirs::Prestat),
        seq: Bucket,
        reply: ReplyOpen,
    ) {
        let (core, handles, stats) = (self.core.clone(), self.handles.clone(), self.stats.clone());
        let r = self.guard.run(seq, reply, expired_open, move |claim| {
            let fh = open_dir(&core, &handles, &dir, prestat);
            let Some(reply) = claim.take() else {
                if let Ok(fh) = fh {
                    handles.remove(fh); // answered EIO already: never released
                }
                return;
            };
            match fh {
                Ok(fh) => reply.opened(FileHandle(fh), dir_flags(watched)),
                Err(e) => reply.error(counted(&stats, &e)),
            }
        });
        if let Err(reply) = r {
            reply.error(self.errno(Errno::EAGAIN));
        }
    }
}

/// Reads `size` bytes at `offset` from what [`CtrFs::read_source`] found (`r`), on a helper
/// thread under the deadline of [`super::guard`].
fn read_found(
    this: &Arc<CtrFs>,
    r: io::Result<(super::ops::ReadFrom, Bucket)>,
    offset: u64,
    size: u32,
    reply: ReplyData,
) {
    let (from, seq) = match r {
        Ok(r) => r,
        Err(e) => return reply.error(this.err(&e)),
    };
    // A read of a file not read before, from its start: if it reads the whole file, the
    // walk may be reading the directory file by file (`prefetch`).
    let first = match &from {
        super::ops::ReadFrom::Open(_, node) if offset == 0 => Some(node.clone()),
        _ => None,
    };
    // The read may wait on the container (a fanotify listener): off the FUSE workers,
    // with a deadline (`guard`).
    let (core, stats, fs) = (this.core.clone(), this.stats.clone(), this.clone());
    let r = this.guard.run(seq, reply, expired_data, move |claim| {
        READ_BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let r = core.read_at(from, offset, &mut buf[..size as usize]);
            let Some(reply) = claim.take() else {
                return;
            };
            match r {
                Ok(n) => {
                    reply.data(&buf[..n]);
                    if let Some(node) = first.filter(|_| n < size as usize) {
                        fs.after_whole_miss(&node);
                    }
                }
                Err(e) => reply.error(counted(&stats, &e)),
            }
        })
    });
    if let Err(reply) = r {
        reply.error(this.errno(Errno::EAGAIN));
    }
}
