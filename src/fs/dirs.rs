//! Directories: `opendir` and `readdir`/`readdirplus`.
//!
//! A real directory is read with getdents from the offset the kernel asks for (its cookies are
//! the filesystem's own, so a listing survives entries coming and going). The mount root lists
//! a snapshot of the registry taken at opendir; pseudo filesystems and unserved mounts list
//! only `.` and `..`. With readdirplus every entry is also looked up (one `statx` each, or none
//! for an unserved mountpoint), which spares the kernel one lookup round trip per file.
//! Opening a real directory for reading ([`open_dir`]) and reading it ([`read_batch`]) can be
//! held up by the container (a fanotify permission mark), so both run under the deadline of
//! [`super::guard`]; the entries are then answered from what was read.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{FileAttr, FileType};
use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom, Statx, openat, seek, statx};

use super::attr::{STATX_MASK, kind_of, placeholder_attr, to_attr, whiteout_at};
use super::handles::{DirFd, Handle, Handles};
use super::nodes::Shown;
use super::virt::listed_ino;
use super::{Core, CtrFs, Reached, TTL, errno};
use crate::instance::Source;
use crate::registry::{VEntry, is_virtual};

/// What [`CtrFs::do_opendir`] found.
pub(super) enum Opened {
    /// A handle, and whether a watch covers the directory.
    Ready(u64, bool),
    /// A real directory to open for reading ([`open_dir`]), from its `O_PATH` fd.
    ToOpen {
        dir: Arc<OwnedFd>,
        watched: bool,
        /// Its readdirplus entries may be stat'ed while the listing is read
        /// ([`DirFd::prestat`]), and its first batch, if read ahead ([`super::nextdir`]).
        prestat: Prestat,
        /// What opening it counts against (its container and mount).
        seq: super::guard::Bucket,
    },
}

/// Whether a directory's readdirplus entries are stat'ed with its listing ([`DirFd::prestat`]),
/// and its first batch if it was read ahead ([`super::nextdir`]).
pub(super) struct Prestat {
    pub(super) on: bool,
    pub(super) ahead: Option<super::nextdir::Ahead>,
}

/// Opens directory `dir` for reading and registers its handle; `prestat` as in
/// [`DirFd::prestat`]. This may wait on a fanotify listener (`FAN_OPEN_PERM` on the
/// directory): run it under [`super::guard`].
pub(super) fn open_dir(
    core: &Core,
    handles: &Handles,
    dir: &OwnedFd,
    prestat: Prestat,
) -> io::Result<u64> {
    Ok(handles.insert(dir_handle(core, dir, prestat)?))
}

/// A handle on directory `dir` (an `O_PATH` fd) opened for reading, not yet registered;
/// `prestat` as in [`DirFd::prestat`]. May wait on a fanotify listener, as [`open_dir`].
pub(super) fn dir_handle(core: &Core, dir: &OwnedFd, prestat: Prestat) -> io::Result<Handle> {
    let fd = core.retry_emfile(|| {
        openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOATIME,
            Mode::empty(),
        )
    })?;
    Ok(Handle::Dir(Mutex::new(DirFd {
        fd,
        want: BATCH_BYTES,
        prestat: prestat.on,
        ahead: prestat.ahead,
        room: super::listing::FIRST_ROOM,
    })))
}

/// One entry as getdents returned it, owned: read under a deadline ([`super::guard`]),
/// answered after.
pub(super) struct RawEntry {
    name: Vec<u8>,
    /// Where the next entry starts (the filesystem's own cookie).
    cookie: u64,
    kind: FileType,
    ino: u64,
    /// Its status, when [`read_batch`] took it (readdirplus of a [`DirFd::prestat`] directory).
    st: Option<Statx>,
}

/// How long [`read_batch`] stats entries before leaving the rest to the reply (a cold
/// directory's `statx` may read the disk): well within the guard's deadline.
const PRESTAT_TIME: Duration = Duration::from_millis(500);

/// The `statx` of an entry while its listing is read: the name itself, never followed, no
/// automount, and nothing asked of a remote or FUSE server (`AT_STATX_DONT_SYNC`: FUSE's
/// `fuse_update_get_attr` and NFS's `nfs_getattr` answer from what they hold). It is used only
/// when it names the directory's own mount, a local filesystem ctrfsd serves, where the flag
/// changes nothing; a name that turns out to be a mountpoint (made since the directory was
/// opened) is reached again as every lookup reaches it ([`super::Core::child_at`]).
fn prestat_flags() -> AtFlags {
    AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT | AtFlags::STATX_DONT_SYNC
}

/// What one getdents call reads at most, and what a listing reads for its first reply.
pub(super) const BATCH_BYTES: usize = 32 * 1024;

/// The most a listing reads for one reply: the largest request the kernel sends (its
/// `max_pages`, at most 256 pages), in `linux_dirent64` bytes, which are about a plain FUSE
/// entry's.
const MAX_WANT: usize = 1024 * 1024;

/// What a readdirplus reply reads at least: the names of about as many entries as the
/// kernel's largest request holds with their attributes (a readdirplus entry is 4 to 5 times
/// a name's `linux_dirent64` record). A directory ends sooner, and the attributes of names
/// read but not sent are never fetched.
const PLUS_WANT: usize = 256 * 1024;

/// Reads entries of directory handle `handle` from `offset`: about as many bytes as one
/// reply has needed so far ([`DirFd::want`]; for readdirplus, `plus`, at least
/// [`PLUS_WANT`]), in getdents calls of [`BATCH_BYTES`]. For readdirplus of a
/// [`DirFd::prestat`] directory it also stats the entries by name for up to
/// [`PRESTAT_TIME`] ([`prestat_flags`]): one `statx` each instead of the reply's `O_PATH` open,
/// `statx` and `close`. Returns them and whether the directory has more. This may wait on a
/// fanotify listener (`FAN_ACCESS_PERM` on the directory), and a `statx` on a filesystem the
/// container mounted a moment ago: run it under [`super::guard`].
pub(super) fn read_batch(
    handle: &Handle,
    offset: u64,
    plus: bool,
) -> io::Result<(Vec<RawEntry>, bool)> {
    let Handle::Dir(dir) = handle else {
        return Err(errno(libc::ENOTDIR));
    };
    let mut dir = dir.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ahead) = dir.ahead.take()
        && plus
        && offset == 0
        && ahead.still_true()
    {
        return Ok((ahead.entries, ahead.more));
    }
    seek(&dir.fd, SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    // Calls getdents again each time its buffer is used up.
    let mut raw = rustix::fs::RawDir::new(&dir.fd, buf.spare_capacity_mut());
    let want = if plus {
        dir.want.max(PLUS_WANT)
    } else {
        dir.want
    };
    let prestat = plus && dir.prestat;
    let started = std::time::Instant::now();
    let (mut out, mut bytes) = (Vec::new(), 0);
    while bytes < want {
        let Some(entry) = raw.next() else {
            return Ok((out, false)); // the end
        };
        let entry = entry?;
        let cname = entry.file_name();
        let st = if prestat
            && cname.to_bytes() != b"."
            && cname.to_bytes() != b".."
            && started.elapsed() < PRESTAT_TIME
        {
            statx(&dir.fd, cname, prestat_flags(), STATX_MASK).ok()
        } else {
            None
        };
        let name = cname.to_bytes().to_vec();
        // linux_dirent64: 19 bytes and the NUL-terminated name, 8-aligned.
        bytes += (19 + name.len() + 1).next_multiple_of(8);
        out.push(RawEntry {
            kind: kind_of(entry.file_type().as_raw_mode() & libc::S_IFMT),
            cookie: entry.next_entry_cookie(),
            ino: entry.ino(),
            name,
            st,
        });
    }
    Ok((out, true))
}

/// A reply to a listing of `handle` had room left while entries remained: read more next
/// time, up to [`MAX_WANT`].
pub(super) fn read_more(handle: &Handle) {
    if let Handle::Dir(dir) = handle {
        let mut dir = dir.lock().unwrap_or_else(|e| e.into_inner());
        dir.want = (dir.want * 4).min(MAX_WANT);
    }
}

/// One directory entry to hand to the kernel.
pub(crate) struct DirEntry<'a> {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: &'a OsStr,
    /// How long the kernel may keep it (readdirplus).
    pub ttl: Duration,
}

impl CtrFs {
    /// The inode number a plain listing of directory `dir` gives the entry whose real inode
    /// number is `real` (kind `kind`, as listed): the number a lookup of it gives, or gave
    /// (`nodes::number_of`), so that `ls -i` agrees with `stat`. The key assumes the entry is
    /// on the directory's mount and device, true of every entry that is not a mountpoint on
    /// overlayfs (Docker's, Podman's), tmpfs and every single-device filesystem; see README,
    /// "First look: directories", for where it is not.
    fn listed_number(&self, dir: &super::nodes::Node, real: u64, kind: FileType) -> u64 {
        let key = super::nodes::NodeKey {
            seq: dir.inst.seq,
            ino: real,
            link_parent: if kind == FileType::Symlink {
                dir.ino
            } else {
                0
            },
            mnt: dir.key.mnt,
            dev: dir.key.dev,
        };
        match self.nodes.find(&key) {
            Some(node) => node.ino,
            None => super::nodes::number_of(&key),
        }
    }

    /// Opens directory `ino`: its handle and whether a watch covers it (the kernel may then
    /// cache its listing until told otherwise); or, for a real directory, what
    /// [`open_dir`] needs to open it.
    pub(super) fn do_opendir(&self, ino: u64) -> io::Result<Opened> {
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
                self.may_dir(&node, &dfd, crate::idmap::LIST)?;
                // Watched before it is read: a change after this point is reported.
                let watched = self.watches.watch(&node, &dfd);
                // Entries are stat'ed with the listing only where no mount is never touched
                // (`unserved_child` would skip it by its path), and where a watch covered the
                // directory before any statx (the long TTL of `ttl_of` needs that).
                let on = watched && !node.inst.mounts(false).has_unserved();
                let ahead = if on {
                    self.next_dirs.take(node.ino)
                } else {
                    None
                };
                let prestat = Prestat { on, ahead };
                return Ok(Opened::ToOpen {
                    dir: dfd,
                    watched,
                    prestat,
                    seq: super::guard::Bucket::of(&node),
                });
            }
        };
        Ok(Opened::Ready(self.handles.insert(handle), false))
    }

    /// Lists directory `ino` from `offset`, calling `add` for each entry until it reports
    /// the reply full. For a real directory, `batch` holds what [`read_batch`] read from
    /// `offset`. With `plus`, each entry other than `.`/`..` is also looked up (it
    /// counts a kernel reference, handed back through `forget_unsent` if `add` refuses it).
    /// Returns true when `add` reported the reply full.
    pub(super) fn do_readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        batch: Option<Vec<RawEntry>>,
        mut add: impl FnMut(DirEntry<'_>, Option<&FileAttr>) -> bool,
    ) -> io::Result<bool> {
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
                    return Ok(true);
                }
            }
        }
        match &*handle {
            Handle::Empty => Ok(false),
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
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Handle::Dir(_) => {
                let dir = self.node(ino)?;
                let entries = batch.ok_or_else(|| errno(libc::EIO))?;
                let node = if plus { Some(dir.clone()) } else { None };
                // Asked before any statx: a watch that exists then reports later changes.
                let watched = plus && self.watches.is_watched(ino);
                let mut dir_path = None;
                let mut first_sub = offset == 0;
                if plus && offset == 0 {
                    // A walk reading this listing (not the kernel's cached copy) will most
                    // likely read the next one soon: read it ahead (`nextdir`).
                    self.read_next_after(&dir);
                }
                // Names are reached from the directory's `O_PATH` fd: the read fd may still be
                // held by a read that waits on the container.
                let fd = self.dir_fd(&dir)?;
                for entry in &entries {
                    let name = OsStr::from_bytes(&entry.name);
                    let off = entry.cookie;
                    let is_dot = name == "." || name == "..";
                    let mut kind = entry.kind;
                    if kind == FileType::Symlink
                        && !plus
                        && self.is_stdio_link(&self.node(ino)?.inst, ino, fd.as_fd(), name)
                    {
                        kind = FileType::RegularFile; // as a lookup shows it (stdio_links.rs)
                    }
                    if kind == FileType::CharDevice
                        && !plus
                        && self.node(ino)?.inst.source == Source::Diff
                        && whiteout_at(std::os::fd::AsFd::as_fd(&*fd), name)
                    {
                        kind = FileType::Symlink; // as `shown_stat` shows it
                    }
                    match &node {
                        Some(dnode) if !is_dot => {
                            // Stat'ed with the listing, on the directory's own mount.
                            let pre = entry
                                .st
                                .filter(|st| st.stx_mnt_id == u64::from(dnode.key.mnt));
                            let unserved = match pre {
                                Some(_) => None,
                                None => self.unserved_child(dnode, &mut dir_path, name)?,
                            };
                            let (child, attr, ttl) = if let Some(mnt) = unserved {
                                let child = self.placeholder_node(dnode, name, mnt);
                                let attr = placeholder_attr(child.ino);
                                (child, attr, TTL)
                            } else {
                                let at = match pre {
                                    Some(st) => Ok(Err(st)),
                                    None => self
                                        .child_at(&dnode.inst, std::os::fd::AsFd::as_fd(&*fd), name)
                                        .map(Ok),
                                };
                                let mut st = match at {
                                    Ok(Err(st)) | Ok(Ok(Reached::Here(_, st))) => st,
                                    Ok(Ok(Reached::Unserved(mnt))) => {
                                        let child = self.placeholder_node(dnode, name, mnt);
                                        let attr = placeholder_attr(child.ino);
                                        let e = DirEntry {
                                            ino: child.ino,
                                            offset: off,
                                            kind: attr.kind,
                                            name,
                                            ttl: TTL,
                                        };
                                        if add(e, Some(&attr)) {
                                            self.do_forget(child.ino, 1);
                                            return Ok(true);
                                        }
                                        continue;
                                    }
                                    Err(_) => continue, // gone since getdents: skip it
                                };
                                if super::stdio_links::is_link(st.stx_mode)
                                    && let Some(attr) =
                                        self.stdio_link_entry(&dnode.inst, ino, fd.as_fd(), name)
                                {
                                    let e = DirEntry {
                                        ino: attr.ino.0,
                                        offset: off,
                                        kind: attr.kind,
                                        name,
                                        ttl: Duration::ZERO,
                                    };
                                    if add(e, Some(&attr)) {
                                        self.log_forget(attr.ino.0, 1);
                                        return Ok(true);
                                    }
                                    continue;
                                }
                                self.shown_stat(&dnode.inst, &mut st);
                                let child = self.child_node(dnode, name, &st);
                                let mut attr = to_attr(child.ino, &st);
                                self.answer_size(&mut attr);
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
                                return Ok(true);
                            }
                            if attr.kind == FileType::Directory && child.shown == Shown::Normal {
                                // The order a walk visits them in (`nextdir`).
                                self.next_dirs.subdir(ino, first_sub, child.ino);
                                first_sub = false;
                            }
                        }
                        _ => {
                            let dino = match name.as_bytes() {
                                b"." => ino,
                                b".." => parent_ino,
                                _ => self.listed_number(&dir, entry.ino, kind),
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
                                return Ok(true);
                            }
                        }
                    }
                }
                Ok(false)
            }
            Handle::File { .. } => Err(errno(libc::ENOTDIR)),
        }
    }
}
