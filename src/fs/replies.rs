//! Replies answered from the helper threads of [`super::guard`]: what they need besides the
//! filesystem (counted errors, the answers at a deadline, passthrough opens, directory flags).

use std::cell::RefCell;
use std::io;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, ReplyData, ReplyDirectoryPlus, ReplyOpen,
};
use log::debug;

use super::CtrFs;

thread_local! {
    /// One read buffer per helper thread (`guard`): no allocation per read.
    pub(super) static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The errno for an error reply, counted in `stats` (for the helper threads of `guard`).
pub(super) fn counted(stats: &super::stats::Stats, e: &io::Error) -> Errno {
    let n = e.raw_os_error().unwrap_or(libc::EIO);
    stats.error(n);
    Errno::from_i32(n)
}

/// The answer to an open that passed its deadline (`guard`).
pub(super) fn expired_open(reply: ReplyOpen) {
    reply.error(Errno::EIO);
}

/// The open flags of a directory: a watched directory's listing is kept by the kernel (and
/// dropped when an event says it changed), so a repeated walk reads no directory through ctrfsd.
pub(super) fn dir_flags(watched: bool) -> FopenFlags {
    if watched {
        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
    } else {
        FopenFlags::empty()
    }
}

/// Adds a readdirplus entry; true when the reply is full.
pub(super) fn add_plus(
    reply: &mut ReplyDirectoryPlus,
    e: super::dirs::DirEntry<'_>,
    attr: Option<&fuser::FileAttr>,
) -> bool {
    match attr {
        Some(attr) => reply.add(
            INodeNo(e.ino),
            e.offset,
            e.name,
            &e.ttl,
            attr,
            Generation(0),
        ),
        None => false,
    }
}

impl CtrFs {
    /// The instance number of the container whose real directory `fh` lists (its reads go
    /// under `guard`); `None` for the mount root's listings and empty directories.
    pub(super) fn guarded_dir(&self, ino: u64, fh: u64) -> Option<super::guard::Bucket> {
        let h = self.handles.get(fh)?;
        match &*h {
            super::handles::Handle::Dir(_) => {
                self.nodes.get(ino).map(|n| super::guard::Bucket::of(&n))
            }
            _ => None,
        }
    }
}

/// The answer to a read that passed its deadline (`guard`).
pub(super) fn expired_data(reply: ReplyData) {
    reply.error(Errno::EIO);
}

/// A lookup past the deadline (the directory's inode lock is held in the container): EIO.
pub(super) fn expired_entry(reply: fuser::ReplyEntry) {
    reply.error(Errno::EIO);
}

/// A seek past the deadline (opening the file waits on the container): EIO.
pub(super) fn expired_lseek(reply: fuser::ReplyLseek) {
    reply.error(Errno::EIO);
}

/// Answers an open with `fd`: kernel passthrough where the file can back it, else reads
/// through ctrfsd.
pub(super) fn answer_open(
    handles: &super::handles::Handles,
    ino: u64,
    fd: std::os::fd::OwnedFd,
    reply: ReplyOpen,
) {
    use super::handles::Handle;
    use std::sync::Arc;
    match reply.open_backing(&fd) {
        Ok(backing) => {
            // The backing id lives in the handle until release; the handle is registered
            // before the reply so a racing release always finds it.
            let fh = handles.insert(Handle::File {
                fd: Arc::new(fd),
                backing: Some(backing),
            });
            debug!("open {ino}: passthrough fh {fh}");
            match handles.get(fh) {
                Some(h) => match &*h {
                    Handle::File {
                        backing: Some(b), ..
                    } => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), b),
                    _ => reply.error(Errno::EIO),
                },
                None => reply.error(Errno::EIO),
            }
        }
        Err(e) => {
            // Not every file can back passthrough (e.g. a stack too deep): serve it through
            // ctrfsd instead.
            debug!("open {ino}: no passthrough ({e}); reads go through ctrfsd");
            let fh = handles.insert(Handle::File {
                fd: Arc::new(fd),
                backing: None,
            });
            reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }
}
