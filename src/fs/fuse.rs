//! The `fuser::Filesystem` impl: each handler logs one debug line, calls the logic in `ops`
//! and turns its `io::Result` into a reply. Anything that would write answers EROFS.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use super::dirs::Opened;
use super::logview::{LOGS_DIR, is_log};
use super::replies::*;
use super::stats::Op;
use super::{CtrFs, FuseFs};
use crate::registry::ROOT_INO;

impl CtrFs {
    /// The errno for an error reply, counted.
    pub(super) fn err(&self, e: &io::Error) -> Errno {
        let n = e.raw_os_error().unwrap_or(libc::EIO);
        self.stats.error(n);
        Errno::from_i32(n)
    }

    /// An errno reply that is not a failure of ours (EROFS, the ENOSYS of no-open mode).
    pub(super) fn errno(&self, e: Errno) -> Errno {
        self.stats.error(e.code());
        e
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // fuser negotiates almost nothing by itself (DESIGN.md). Ask for each separately so
        // that one the kernel lacks does not cost the others.
        for (flag, name) in [
            (InitFlags::FUSE_PARALLEL_DIROPS, "PARALLEL_DIROPS"),
            // Readdirplus where it pays, the kernel deciding (READDIRPLUS_AUTO): the first
            // reply of a listing, and every reply after a lookup or a first use of an entry
            // readdirplus made. A listing nobody stats (`ls -f`) then costs no `statx` and no
            // inode per entry past its first reply: the first `ls -f` of 1,000,000 entries
            // went from 25.2 s (always plus) to 1.15 s. Walks that read a whole directory
            // before they stat (find, grep -r: fts) still get every entry's attributes in that
            // first reply, because directories report a large `st_blksize` (`attr::DIR_BLKSIZE`)
            // which glibc sizes its getdents buffer, and so the kernel its request, by:
            // without it, auto mode cost 10,702 lookups on the first `find` of 30k files.
            (InitFlags::FUSE_DO_READDIRPLUS, "DO_READDIRPLUS"),
            (InitFlags::FUSE_READDIRPLUS_AUTO, "READDIRPLUS_AUTO"),
            (InitFlags::FUSE_CACHE_SYMLINKS, "CACHE_SYMLINKS"),
            (InitFlags::FUSE_AUTO_INVAL_DATA, "AUTO_INVAL_DATA"),
        ] {
            if config.add_capabilities(flag).is_err() {
                warn!("the kernel does not offer FUSE {name}; continuing without it");
            }
        }
        if self.opts.passthrough {
            // Container roots are overlayfs (stack depth 1): the FUSE mount must allow 2.
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            if !ok {
                warn!("the kernel does not offer FUSE passthrough; reads go through ctrfsd");
            }
            // Nothing shares the filesystem before the session starts serving.
            let fs = std::sync::Arc::get_mut(&mut self.0)
                .ok_or_else(|| io::Error::other("the filesystem was shared before init"))?;
            fs.passthrough_on = ok;
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.stats.op(Op::Lookup);
        let r = if is_log(parent.0) || parent.0 == ROOT_INO && name == LOGS_DIR {
            self.log_lookup(parent.0, name)
        } else if let Some(seq) = self.container_of(parent.0) {
            // A name not yet cached in a container's directory takes that directory's inode
            // lock, which a container process can hold indefinitely: off the FUSE workers.
            return self.guarded_lookup(seq, parent, name, reply);
        } else {
            self.do_lookup(parent.0, name)
        };
        debug!(
            "lookup {} {name:?}: {:?}",
            parent.0,
            r.as_ref().map(|(a, ttl)| (a.ino.0, ttl.as_secs()))
        );
        match r {
            // Alias links (ids, id prefixes, qualified names) are not cached: a prefix that
            // names one container now may name none, or another, after the next change.
            Ok((attr, _))
                if crate::registry::is_virtual(attr.ino.0)
                    && attr.kind == fuser::FileType::Symlink =>
            {
                reply.entry(&Duration::ZERO, &attr, Generation(0))
            }
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(self.err(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.stats.op(Op::Forget);
        if is_log(ino.0) {
            return self.log_forget(ino.0, nlookup);
        }
        self.do_forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.stats.op(Op::Getattr);
        let answer =
            move |fs: &CtrFs, r: io::Result<(fuser::FileAttr, Duration)>, reply: ReplyAttr| {
                debug!(
                    "getattr {}: {}",
                    ino.0,
                    if r.is_ok() { "ok" } else { "error" }
                );
                match r {
                    Ok((attr, ttl)) => reply.attr(&ttl, &attr),
                    Err(e) => reply.error(fs.err(&e)),
                }
            };
        if is_log(ino.0) {
            return answer(self, self.log_getattr(ino.0), reply);
        }
        // Walks of container directories from the dentry cache only (`walk`).
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.getattr_ttl(ino.0),
            move |fs, r, reply| answer(fs, r, reply),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.stats.op(Op::Readlink);
        if is_log(ino.0) {
            return reply.error(self.errno(Errno::EINVAL));
        }
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.do_readlink(ino.0),
            move |fs, r, reply| {
                debug!(
                    "readlink {}: {:?}",
                    ino.0,
                    r.as_ref().map(|t| String::from_utf8_lossy(t))
                );
                match r {
                    Ok(t) => reply.data(&t),
                    Err(e) => reply.error(fs.err(&e)),
                }
            },
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.stats.op(Op::Open);
        if !self.passthrough_on {
            // The default mode: ENOSYS tells the kernel to stop sending opens (FUSE no_open);
            // it keeps its page cache across opens, and reads arrive with fh 0.
            debug!("open {}: ENOSYS (no-open mode)", ino.0);
            return reply.error(self.errno(Errno::ENOSYS));
        }
        if is_log(ino.0) {
            return self.log_open(ino, flags, reply);
        }
        self.guarded_open(ino, flags, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.stats.op(Op::Read);
        debug!("read {} fh {} at {offset} size {size}", ino.0, fh.0);
        if is_log(ino.0) {
            return self.log_read_reply(ino, offset, size, reply);
        }
        self.guarded_read(ino, fh, offset, size, reply);
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.stats.op(Op::Lseek);
        debug!("lseek {} fh {} {offset} whence {whence}", ino.0, fh.0);
        if is_log(ino.0) {
            return match self.log_seek(ino.0, offset, whence) {
                Ok(at) => reply.offset(at),
                Err(e) => reply.error(self.err(&e)),
            };
        }
        self.guarded_lseek(ino, fh, offset, whence, reply);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever buffered for writing. ENOSYS makes the kernel stop sending FLUSH on
        // every close (FUSE no_flush): one round trip fewer per file.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.op(Op::Release);
        self.do_release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.stats.op(Op::Opendir);
        if is_log(ino.0) {
            return self.log_opendir(ino, reply);
        }
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.do_opendir(ino.0),
            move |fs, r, reply| {
                debug!(
                    "opendir {}: {:?}",
                    ino.0,
                    r.as_ref().map_err(|e| e.raw_os_error()).map(|_| ())
                );
                match r {
                    Ok(Opened::Ready(fh, watched)) => {
                        reply.opened(FileHandle(fh), dir_flags(watched))
                    }
                    // Opening it for reading may wait on the container (a fanotify listener):
                    // off the FUSE workers, with a deadline (`guard`).
                    Ok(Opened::ToOpen {
                        dir,
                        watched,
                        prestat,
                        seq,
                    }) => fs.guarded_opendir(dir, (watched, prestat), seq, reply),
                    Err(e) => reply.error(fs.err(&e)),
                }
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.stats.op(Op::Readdir);
        debug!("readdir {} fh {} from {offset}", ino.0, fh.0);
        if is_log(ino.0) {
            let r = self.log_readdir(ino.0, offset, false, |e, _| {
                reply.add(INodeNo(e.ino), e.offset, e.kind, e.name)
            });
            return self.ok_or_error(r, reply);
        }
        self.guarded_listing(ino, fh, offset, reply);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.stats.op(Op::Readdirplus);
        debug!("readdirplus {} fh {} from {offset}", ino.0, fh.0);
        if is_log(ino.0) {
            let r = self.log_readdir(ino.0, offset, true, |e, attr| add_plus(&mut reply, e, attr));
            return self.ok_or_error(r, reply);
        }
        self.guarded_listing(ino, fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.op(Op::Release);
        self.do_release(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.stats.op(Op::Statfs);
        if crate::registry::is_virtual(ino.0) || is_log(ino.0) || self.is_placeholder(ino.0) {
            return reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
        }
        // Always under the deadline: an overlay's statfs asks its first layer's filesystem
        // (README, Known holes: an overlay on a container's FUSE mount may be served).
        self.guarded(
            ino.0,
            reply,
            move |fs| fs.do_statfs(ino.0),
            |fs, r, reply| match r {
                Ok(s) => reply.statfs(
                    s.f_blocks,
                    s.f_bfree,
                    s.f_bavail,
                    s.f_files,
                    s.f_ffree,
                    s.f_bsize as u32,
                    s.f_namelen as u32,
                    s.f_frsize as u32,
                ),
                Err(e) => reply.error(fs.err(&e)),
            },
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.stats.op(Op::Getxattr);
        if is_log(ino.0) {
            let r = self
                .log_xattrs(ino.0)
                .into_iter()
                .find(|(k, _)| OsStr::new(k) == name)
                .map(|(_, v)| v)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODATA));
            return xattr_reply(self, r, size, reply);
        }
        let name = name.to_os_string();
        self.cached_or_guarded(
            ino.0,
            reply,
            {
                let name = name.clone();
                move |fs| fs.do_getxattr(ino.0, &name, size)
            },
            move |fs, r, reply| {
                debug!(
                    "getxattr {} {name:?}: {:?}",
                    ino.0,
                    r.as_ref().map(Vec::len)
                );
                xattr_reply(fs, r, size, reply);
            },
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.stats.op(Op::Listxattr);
        if is_log(ino.0) {
            let list = self.log_xattrs(ino.0).into_iter();
            let r = Ok(list
                .flat_map(|(k, _)| [k.as_bytes(), b"\0"].concat())
                .collect());
            return xattr_reply(self, r, size, reply);
        }
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.do_listxattr(ino.0),
            move |fs, r, reply| {
                debug!("listxattr {}: {:?}", ino.0, r.as_ref().map(Vec::len));
                xattr_reply(fs, r, size, reply);
            },
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.stats.op(Op::Access);
        let mask = mask.bits();
        let answer = |fs: &CtrFs, r: io::Result<()>, reply: ReplyEmpty| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fs.err(&e)),
        };
        if is_log(ino.0) {
            return answer(self, self.log_access(ino.0, mask), reply);
        }
        self.cached_or_guarded(
            ino.0,
            reply,
            move |fs| fs.do_access(ino.0, mask),
            move |fs, r, reply| answer(fs, r, reply),
        );
    }

    // Everything below would change the container: the view is read-only.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.stats.op(Op::Write);
        reply.error(self.errno(Errno::EROFS));
    }
}

/// A size query (`size == 0`) answers the length; otherwise the data, or ERANGE if it does not
/// fit.
fn xattr_reply(fs: &CtrFs, r: io::Result<Vec<u8>>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(fs.errno(Errno::ERANGE)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(fs.err(&e)),
    }
}
