//! Directories: `opendir` and `readdir`/`readdirplus`.
//!
//! A real directory is read with getdents from the offset the kernel asks for (its cookies are
//! the filesystem's own, so a listing survives entries coming and going). The mount root lists
//! a snapshot of the registry taken at opendir; pseudo filesystems and unserved mounts list
//! only `.` and `..`. With readdirplus every entry is also looked up (one `statx` each, or none
//! for an unserved mountpoint), which spares the kernel one lookup round trip per file.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::time::Duration;

use fuser::{FileAttr, FileType};
use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom, openat, seek, statx};

use super::attr::{STATX_MASK, kind_of, placeholder_attr, to_attr, whiteout_at};
use super::handles::Handle;
use super::nodes::Shown;
use super::virt::listed_ino;
use super::{CtrFs, TTL, errno};
use crate::instance::Source;
use crate::registry::{VEntry, is_virtual};

/// One directory entry to hand to the kernel.
pub struct DirEntry<'a> {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: &'a OsStr,
    /// How long the kernel may keep it (readdirplus).
    pub ttl: Duration,
}

impl CtrFs {
    /// Opens directory `ino`: its handle, and whether a watch covers it (the kernel may then
    /// cache its listing until told otherwise).
    pub(super) fn do_opendir(&self, ino: u64) -> io::Result<(u64, bool)> {
        let mut watched = false;
        let handle = if is_virtual(ino) {
            let (parent, entries) = self.virtual_listing(ino)?;
            Handle::Virtual(parent, entries)
        } else {
            let node = self.node(ino)?;
            if node.kind != FileType::Directory {
                return Err(errno(libc::ENOTDIR));
            }
            if node.shown != Shown::Normal {
                Handle::Empty
            } else {
                let dfd = self.dir_fd(&node)?;
                // Watched before it is read: a change after this point is reported.
                watched = self.watches.watch(&node, &dfd);
                let fd = self.retry_emfile(|| {
                    openat(
                        &*dfd,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOATIME,
                        Mode::empty(),
                    )
                })?;
                Handle::Dir(Mutex::new(fd))
            }
        };
        Ok((self.handles.insert(handle), watched))
    }

    /// Lists directory `ino` from `offset`, calling `add` for each entry until it reports
    /// the reply full. With `plus`, each entry other than `.`/`..` is also looked up (it
    /// counts a kernel reference, handed back through `forget_unsent` if `add` refuses it).
    pub(super) fn do_readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(DirEntry<'_>, Option<&FileAttr>) -> bool,
    ) -> io::Result<()> {
        let handle = self.handles.get(fh).ok_or_else(|| errno(libc::EBADF))?;
        let parent_ino = match &*handle {
            Handle::Virtual(parent, _) => *parent,
            _ => self.node(ino)?.loc().parent,
        };
        // The directory's own attributes, for `.`/`..` in readdirplus: fetched only when a dot
        // entry is actually sent (for a real directory, only in its first batch).
        let mut dots_attr = None;
        let dot_attr = |slot: &mut Option<FileAttr>| -> io::Result<Option<FileAttr>> {
            if plus && slot.is_none() {
                *slot = Some(self.do_getattr(ino)?);
            }
            Ok(*slot)
        };
        // `.` and `..` at offsets 1 and 2; the kernel never counts references for them.
        let dots = [(".", ino), ("..", parent_ino)];
        for (i, (name, dino)) in dots.iter().enumerate() {
            let off = i as u64 + 1;
            if offset < off && matches!(&*handle, Handle::Virtual(..) | Handle::Empty) {
                let attr = dot_attr(&mut dots_attr)?;
                let e = DirEntry {
                    ino: *dino,
                    offset: off,
                    kind: FileType::Directory,
                    name: OsStr::new(name),
                    ttl: TTL,
                };
                if add(e, attr.as_ref()) {
                    return Ok(());
                }
            }
        }
        match &*handle {
            Handle::Empty => Ok(()),
            Handle::Virtual(_, entries) => {
                for (i, (name, entry)) in entries
                    .iter()
                    .enumerate()
                    .skip(offset.saturating_sub(2) as usize)
                {
                    let name = OsStr::new(name.as_str());
                    let off = i as u64 + 3;
                    let looked_up = if plus {
                        match entry {
                            VEntry::Dir(dino) => Some((*dino, self.made_up_dir_attr(*dino))),
                            VEntry::Container(inst) => match self.lookup_container(inst, ino, name)
                            {
                                Ok((node, attr)) => Some((node.ino, attr)),
                                Err(_) => continue, // gone since opendir
                            },
                        }
                    } else {
                        None
                    };
                    let entry_ino = match &looked_up {
                        Some((n, _)) => *n,
                        None => listed_ino(entry, u64::MAX - i as u64),
                    };
                    let e = DirEntry {
                        ino: entry_ino,
                        offset: off,
                        kind: FileType::Directory,
                        name,
                        ttl: TTL,
                    };
                    if add(e, looked_up.as_ref().map(|(_, a)| a)) {
                        if looked_up.is_some() {
                            self.do_forget(entry_ino, 1);
                        }
                        return Ok(());
                    }
                }
                Ok(())
            }
            Handle::Dir(fd) => {
                let node = if plus { Some(self.node(ino)?) } else { None };
                // Asked before any statx: a watch that exists then reports later changes.
                let watched = plus && self.watches.is_watched(ino);
                let mut dir_path = None;
                let fd = fd.lock().unwrap_or_else(|e| e.into_inner());
                seek(&*fd, SeekFrom::Start(offset))?;
                let mut buf = Vec::with_capacity(32 * 1024);
                let mut dir = rustix::fs::RawDir::new(&*fd, buf.spare_capacity_mut());
                while let Some(entry) = dir.next() {
                    let entry = entry?;
                    let name = OsStr::from_bytes(entry.file_name().to_bytes());
                    let off = entry.next_entry_cookie();
                    let is_dot = name == "." || name == "..";
                    let mut kind = kind_of(entry.file_type().as_raw_mode() & libc::S_IFMT);
                    if kind == FileType::CharDevice
                        && !plus
                        && self.node(ino)?.inst.source == Source::Diff
                        && whiteout_at(std::os::fd::AsFd::as_fd(&*fd), name)
                    {
                        kind = FileType::Symlink; // as `shown_stat` shows it
                    }
                    match &node {
                        Some(dnode) if !is_dot => {
                            let (child, attr, ttl) = if let Some(mnt) =
                                self.unserved_child(dnode, &mut dir_path, name)?
                            {
                                let child = self.placeholder_node(dnode, name, mnt);
                                let attr = placeholder_attr(child.ino);
                                (child, attr, TTL)
                            } else {
                                let mut st = match statx(
                                    &*fd,
                                    name,
                                    AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
                                    STATX_MASK,
                                ) {
                                    Ok(st) => st,
                                    Err(_) => continue, // gone since getdents: skip it
                                };
                                self.shown_stat(&dnode.inst, &mut st);
                                let child = self.child_node(dnode, name, &st);
                                let attr = to_attr(child.ino, &st);
                                let ttl = self.ttl_of(watched, dnode, &child, &st);
                                (child, attr, ttl)
                            };
                            let e = DirEntry {
                                ino: child.ino,
                                offset: off,
                                kind: attr.kind,
                                name,
                                ttl,
                            };
                            if add(e, Some(&attr)) {
                                self.do_forget(child.ino, 1);
                                return Ok(());
                            }
                        }
                        _ => {
                            let dino = match name.as_bytes() {
                                b"." => ino,
                                b".." => parent_ino,
                                _ => entry.ino(),
                            };
                            let e = DirEntry {
                                ino: dino,
                                offset: off,
                                kind,
                                name,
                                ttl: TTL,
                            };
                            let attr = dot_attr(&mut dots_attr)?;
                            if add(e, attr.as_ref()) {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok(())
            }
            Handle::File { .. } => Err(errno(libc::ENOTDIR)),
        }
    }
}
