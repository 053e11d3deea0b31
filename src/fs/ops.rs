//! Request logic. Each function returns `io::Result` with the errno intact; `fuse.rs` turns it
//! into a reply. Errors are never wrapped with context here (the errno would become EIO).

use super::guard::Bucket;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::{FileAttr, FileType};
use rustix::fs::{AtFlags, Mode, OFlags, Statx, fstatfs, openat, statx};

use super::attr::{STATX_MASK, dev_of, kind_of, placeholder_attr, to_attr};
use super::handles::Handle;
use super::nodes::{Node, NodeKey, Shown};
use super::virt::XATTR_PREFIX;
use super::{Core, CtrFs, Reached, TTL, errno};
use crate::mounts::MountKind;
use crate::pathsafe::is_plain_name;
use crate::registry::{ROOT_INO, is_virtual};

/// Where a read comes from ([`CtrFs::read_source`]).
pub(super) enum ReadFrom {
    /// An fd open for reading.
    Fd(Arc<OwnedFd>),
    /// A file to open for reading first (then kept in the read-fd LRU under this node).
    Open(OwnedFd, Arc<Node>),
}

impl Core {
    /// Opens the file behind `O_PATH` fd `opath` for reading, through `/proc/self/fd` (no
    /// path walk in the container). May wait on a fanotify listener: run it under
    /// [`super::guard`].
    pub(super) fn reopen(&self, opath: &OwnedFd) -> io::Result<OwnedFd> {
        let name = opath.as_raw_fd().to_string();
        let open = |noatime: bool| {
            let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
            if noatime {
                flags |= OFlags::NOATIME;
            }
            self.retry_emfile(|| openat(&self.proc_fd, name.as_str(), flags, Mode::empty()))
        };
        // O_NOATIME is refused (EPERM) where we lack CAP_FOWNER over the file.
        match open(true) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(false),
            r => r,
        }
    }

    /// Reads into `buf` at `offset` from `from`; returns how many bytes were read. May wait on
    /// a fanotify listener: run it under [`super::guard`].
    pub(super) fn read_at(&self, from: ReadFrom, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.fd_for(from)?;
        Ok(rustix::io::pread(&*fd, buf, offset)?)
    }

    /// The fd open for reading that `from` names, opened (and kept in the read-fd LRU) first
    /// if needed. May wait on the container (a fanotify listener): call it under `guard`.
    pub(super) fn fd_for(&self, from: ReadFrom) -> io::Result<Arc<OwnedFd>> {
        Ok(match from {
            ReadFrom::Fd(fd) => fd,
            ReadFrom::Open(opath, node) => {
                let fd = Arc::new(self.reopen(&opath)?);
                self.files.put(&node, fd.clone());
                fd
            }
        })
    }
}

/// The mount root's attribute holding the request counters ([`super::stats`]).
pub(crate) const REQUESTS_XATTR: &str = "user.ctrfsd.requests";

impl CtrFs {
    /// The entry for `name` in `parent`, and how long the kernel may keep it.
    pub(super) fn do_lookup(&self, parent: u64, name: &OsStr) -> io::Result<(FileAttr, Duration)> {
        if !is_plain_name(name) {
            return Err(errno(libc::ENOENT));
        }
        if is_virtual(parent) {
            return Ok((self.lookup_virtual(parent, name)?, TTL));
        }
        let (node, st, ttl) = {
            let pnode = self.node(parent)?;
            if pnode.shown != Shown::Normal || pnode.kind != FileType::Directory {
                return Err(errno(libc::ENOENT));
            }
            // A user's container: looked up only where their processes may search.
            if pnode.inst.is_confined() {
                self.may_dir(&pnode, &*self.dir_fd(&pnode)?, crate::idmap::SEARCH)?;
            }
            // Checked before any system call: a statx of the mountpoint would already reach
            // (and could hang on) the mounted filesystem.
            if let Some(mnt) = self.unserved_child(&pnode, &mut None, name)? {
                let node = self.placeholder_node(&pnode, name, mnt);
                return Ok((placeholder_attr(node.ino), TTL));
            }
            let pfd = self.dir_fd(&pnode)?;
            // Watched before the statx: a later change (a rename of the file the kernel is
            // about to hold) is reported.
            let watched = self.watches.watch(&pnode, &pfd);
            let (fd, mut st) = match self.child_at(&pnode.inst, pfd.as_fd(), name)? {
                Reached::Here(fd, st) => (fd, st),
                Reached::Unserved(mnt) => {
                    let node = self.placeholder_node(&pnode, name, mnt);
                    return Ok((placeholder_attr(node.ino), TTL));
                }
            };
            // A link to the container's stdout/stderr is shown as that log (stdio_links.rs).
            if super::stdio_links::is_link(st.stx_mode)
                && let Some(attr) = self.stdio_link_entry(&pnode.inst, parent, pfd.as_fd(), name)
            {
                return Ok((attr, Duration::ZERO));
            }
            self.shown_stat(&pnode.inst, &mut st);
            let node = self.child_node(&pnode, name, &st);
            if node.kind == FileType::Directory && node.shown == Shown::Normal {
                // Kept: entering it next needs no second open.
                self.dirs.put(&node, Arc::new(fd));
            }
            let ttl = self.ttl_of(watched, &pnode, &node, &st);
            (node, st, ttl)
        };
        let mut attr = to_attr(node.ino, &st);
        self.answer_size(&mut attr);
        Ok((attr, ttl))
    }

    /// Counts a kernel reference to the placeholder of unserved mount `mnt` at `name`.
    pub(super) fn placeholder_node(&self, parent: &Node, name: &OsStr, mnt: u64) -> Arc<Node> {
        let key = NodeKey {
            seq: parent.inst.seq,
            mnt: mnt as u32,
            dev: 0,
            ino: 0,
            link_parent: 0,
        };
        self.nodes.lookup(
            key,
            FileType::Directory,
            Shown::Placeholder,
            &parent.inst,
            parent.ino,
            name,
        )
    }

    /// Counts a kernel reference to `name` (with stats `st`) inside directory `parent`.
    pub(super) fn child_node(&self, parent: &Node, name: &OsStr, st: &Statx) -> Arc<Node> {
        let kind = kind_of(u32::from(st.stx_mode));
        // A mount boundary: pseudo filesystems (and a mount not known to be local that
        // appeared since the table was read) show empty.
        let crosses = kind == FileType::Directory && st.stx_mnt_id != u64::from(parent.key.mnt);
        let shown = if crosses && parent.inst.mount_kind(st.stx_mnt_id) != MountKind::Served {
            Shown::Empty
        } else {
            Shown::Normal
        };
        let key = NodeKey {
            seq: parent.inst.seq,
            mnt: st.stx_mnt_id as u32,
            dev: dev_of(st),
            ino: st.stx_ino,
            link_parent: if kind == FileType::Symlink {
                parent.ino
            } else {
                0
            },
        };
        self.nodes
            .lookup(key, kind, shown, &parent.inst, parent.ino, name)
    }

    pub(super) fn do_forget(&self, ino: u64, n: u64) {
        if !is_virtual(ino) {
            self.dirs.remove(ino);
            self.files.remove(ino);
            if let Some(node) = self.nodes.forget(ino, n)
                && node.kind == FileType::Directory
            {
                // The kernel holds nothing below a directory it forgot: no watch is needed.
                self.watches.unwatch(ino);
            }
        }
    }

    pub(super) fn do_getattr(&self, ino: u64) -> io::Result<FileAttr> {
        self.getattr_ttl(ino).map(|(a, _)| a)
    }

    /// Attributes of `ino` and how long the kernel may keep them.
    pub(super) fn getattr_ttl(&self, ino: u64) -> io::Result<(FileAttr, Duration)> {
        if is_virtual(ino) {
            return Ok((self.virtual_attr(ino)?, TTL));
        }
        let node = match self.node(ino) {
            Ok(node) => node,
            // Its container is gone, but a host tool may hold the file open (fstat, as
            // `tail -f` does): answer from the read fd while the kernel still holds the inode.
            Err(e) => match self.files.get(ino) {
                Some(fd) => {
                    let st = statx(&*fd, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
                    return Ok((to_attr(ino, &st), TTL));
                }
                None => return Err(e),
            },
        };
        if node.shown == Shown::Placeholder {
            return Ok((placeholder_attr(ino), TTL));
        }
        if !node.inst.has_process() && node.is_instance_root() {
            return Ok((self.detached_root_attr(&node), TTL));
        }
        let loc = node.loc();
        let parent = if is_virtual(loc.parent) {
            None
        } else {
            self.nodes.get(loc.parent)
        };
        let watched = parent
            .as_ref()
            .is_some_and(|p| self.watches.is_watched(p.ino));
        let st = match self.stat_node(&node) {
            Ok(st) => st,
            Err(e) => match self.held_stat(&node, &e) {
                Some(st) => return Ok((to_attr(ino, &st), TTL)),
                None => return Err(e),
            },
        };
        let ttl = match &parent {
            Some(p) => self.ttl_of(watched, p, &node, &st),
            None => TTL,
        };
        let mut attr = to_attr(ino, &st);
        self.answer_size(&mut attr);
        Ok((attr, ttl))
    }

    /// Whether `ino` stands for a mount that is never touched (no system call may reach it).
    pub(super) fn is_placeholder(&self, ino: u64) -> bool {
        self.nodes
            .get(ino)
            .is_some_and(|n| n.shown == Shown::Placeholder)
    }

    /// The `O_PATH` fd of a regular file to open for reading (see [`Core::reopen`]), and its
    /// container's instance number. Special files are never opened (EOPNOTSUPP): the file is
    /// opened `O_PATH`, checked to be the same regular file, and only then re-opened for
    /// reading through `/proc/self/fd`, so a FIFO or device swapped in by a race is never
    /// opened.
    pub(super) fn file_to_open(&self, ino: u64, flags: i32) -> io::Result<(OwnedFd, Bucket)> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(errno(libc::EROFS));
        }
        let node = self.node(ino)?;
        Ok((self.opath_of(&node)?, Bucket::of(&node)))
    }

    /// The verified `O_PATH` fd of regular file `node` (no permission event: see [`guard`]);
    /// EACCES in a user's container where their processes could not read it (every read of a
    /// file not read before, and every open in passthrough mode, comes here).
    ///
    /// [`guard`]: super::guard
    fn opath_of(&self, node: &Node) -> io::Result<OwnedFd> {
        match node.kind {
            FileType::RegularFile => {}
            FileType::Directory => return Err(errno(libc::EISDIR)),
            _ => return Err(errno(libc::EOPNOTSUPP)),
        }
        let (pfd, name) = self.parent_fd(node)?;
        let (fd, st) = self.open_verified(
            &node.inst,
            pfd.as_fd(),
            OsStr::from_bytes(&name),
            node,
            false,
        )?;
        // A user's container: read only what their processes may read (`crate::idmap`).
        node.inst.may(&st, crate::idmap::READ)?;
        Ok(fd)
    }

    /// Where a read of `ino` comes from, and what the read counts against ([`Bucket`]:
    /// container 0 if its container is gone). `fh` 0 means the kernel skipped `open` (the default mode): the read
    /// fd then comes from a bounded LRU, or is opened by the read itself ([`ReadFrom::Open`]).
    pub(super) fn read_source(&self, ino: u64, fh: u64) -> io::Result<(ReadFrom, Bucket)> {
        if fh == 0 {
            let node = match self.node(ino) {
                Ok(node) => node,
                Err(e) => match self.files.get(ino) {
                    Some(fd) => return Ok((ReadFrom::Fd(fd), Bucket { seq: 0, mnt: 0 })),
                    None => return Err(e),
                },
            };
            let seq = Bucket::of(&node);
            return Ok(match self.files.get(ino) {
                Some(fd) => (ReadFrom::Fd(fd), seq),
                None => (ReadFrom::Open(self.opath_of(&node)?, node.clone()), seq),
            });
        }
        let seq = self
            .nodes
            .get(ino)
            .map_or(Bucket { seq: 0, mnt: 0 }, |n| Bucket::of(&n));
        match self.handles.get(fh).as_deref() {
            Some(Handle::File { fd, .. }) => Ok((ReadFrom::Fd(fd.clone()), seq)),
            _ => Err(errno(libc::EBADF)),
        }
    }

    pub(super) fn do_release(&self, fh: u64) {
        self.handles.remove(fh);
    }

    pub(super) fn do_statfs(&self, ino: u64) -> io::Result<rustix::fs::StatFs> {
        let node = self.node(ino)?;
        let fd = if node.kind == FileType::Directory {
            self.dir_fd(&node)?
        } else {
            self.parent_fd(&node)?.0
        };
        Ok(fstatfs(&*fd)?)
    }

    /// A path naming the node for the xattr calls: `/proc/self/fd/<fd>` of the node's own
    /// `O_PATH` fd (or of the root fd for an instance root), and whether to follow it (always,
    /// now: the magic link is the file). The fd is returned to stay open during the call.
    fn xattr_path(&self, node: &Node) -> io::Result<(Arc<OwnedFd>, CString, bool)> {
        if node.is_instance_root() {
            let root = node.inst.root()?;
            let p = format!("/proc/self/fd/{}", root.as_raw_fd());
            return Ok((
                root,
                CString::new(p).map_err(|_| errno(libc::EINVAL))?,
                true,
            ));
        }
        // Through the node's own `O_PATH` fd, reached without crossing into a mount that is
        // not served (a path through the parent would walk into one made since).
        let (pfd, name) = self.parent_fd(node)?;
        let fd = match self.child_at(&node.inst, pfd.as_fd(), OsStr::from_bytes(&name))? {
            Reached::Here(fd, st) => {
                super::check_same(node, &st)?;
                fd
            }
            Reached::Unserved(_) => return Err(errno(libc::ENODATA)),
        };
        // The magic link leads to the file itself, a symlink included (not followed further).
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        Ok((
            Arc::new(fd),
            CString::new(p).map_err(|_| errno(libc::EINVAL))?,
            true,
        ))
    }

    /// Reads xattr `name` (`size` 0: only its length is used). Container directories also
    /// carry ctrfsd's own `user.ctrfsd.*`; other files' attributes are served only with
    /// `--xattrs` (EOPNOTSUPP otherwise, which `ls -l` and `cp -a` remember per filesystem, so
    /// they stop asking).
    pub(super) fn do_getxattr(&self, ino: u64, name: &OsStr, size: u32) -> io::Result<Vec<u8>> {
        if ino == ROOT_INO && name.as_bytes() == REQUESTS_XATTR.as_bytes() {
            let mut report = self.stats.report();
            report.push_str(&self.watches.report());
            report.push_str(&self.prefetch.report());
            report.push_str(&self.next_dirs.report());
            let mut report = report.into_bytes();
            if size == 0 {
                // Room for the counts to grow before the caller asks for the value.
                report.resize(report.len() + 256, 0);
            }
            return Ok(report);
        }
        if is_virtual(ino) || self.is_placeholder(ino) {
            return Err(errno(libc::ENODATA));
        }
        let node = self.node(ino)?;
        let root = node.is_instance_root();
        if root && name.as_bytes().starts_with(XATTR_PREFIX.as_bytes()) {
            return self
                .container_xattrs(&node)
                .into_iter()
                .find(|(k, _)| k.as_bytes() == name.as_bytes())
                .map(|(_, v)| v)
                .ok_or_else(|| errno(libc::ENODATA));
        }
        if name.as_bytes() == super::probe::HOST_PATH_XATTR.as_bytes() {
            return self.host_path(&node);
        }
        if !self.opts.xattrs {
            return Err(errno(if root {
                libc::ENODATA
            } else {
                libc::EOPNOTSUPP
            }));
        }
        if node.inst.is_confined() {
            self.user_xattr(&node, name.as_bytes())?;
        }
        let (_keep, path, follow) = self.xattr_path(&node)?;
        if size == 0 {
            let n = if follow {
                rustix::fs::getxattr_query(&*path, name)?
            } else {
                rustix::fs::lgetxattr_query(&*path, name)?
            };
            return Ok(vec![0; n]);
        }
        let mut buf = vec![0u8; size as usize];
        let n = if follow {
            rustix::fs::getxattr(&*path, name, &mut buf[..])?
        } else {
            rustix::fs::lgetxattr(&*path, name, &mut buf[..])?
        };
        buf.truncate(n);
        Ok(buf)
    }

    /// The names of a node's xattrs, NUL-terminated (see [`Self::do_getxattr`]).
    pub(super) fn do_listxattr(&self, ino: u64) -> io::Result<Vec<u8>> {
        if ino == ROOT_INO {
            return Ok(format!("{REQUESTS_XATTR}\0").into_bytes());
        }
        if is_virtual(ino) || self.is_placeholder(ino) {
            return Ok(Vec::new());
        }
        let node = self.node(ino)?;
        let root = node.is_instance_root();
        let mut list = if self.opts.xattrs {
            let (_keep, path, follow) = self.xattr_path(&node)?;
            // XATTR_LIST_MAX: no list is longer.
            let mut buf = vec![0u8; 65536];
            let n = if follow {
                rustix::fs::listxattr(&*path, &mut buf[..])?
            } else {
                rustix::fs::llistxattr(&*path, &mut buf[..])?
            };
            buf.truncate(n);
            if node.inst.is_confined() {
                buf = without_trusted(&buf);
            }
            buf
        } else if root {
            Vec::new()
        } else {
            return Err(errno(libc::EOPNOTSUPP));
        };
        if root {
            for (k, _) in self.container_xattrs(&node) {
                list.extend_from_slice(k.as_bytes());
                list.push(0);
            }
        }
        Ok(list)
    }

    /// What a process of the user whose endpoint reports `node`'s container would get for
    /// xattr `name` (`crate::idmap`): `trusted.*` ones are not there for it (ENODATA, the
    /// kernel's answer without `CAP_SYS_ADMIN`: fs/xattr.c `xattr_permission`), `user.*` ones
    /// need read permission on the file (EACCES); others are readable.
    fn user_xattr(&self, node: &Node, name: &[u8]) -> io::Result<()> {
        if name.starts_with(b"trusted.") {
            return Err(errno(libc::ENODATA));
        }
        if name.starts_with(b"user.") {
            node.inst.may(&self.stat_node(node)?, crate::idmap::READ)?;
        }
        Ok(())
    }

    /// `access(2)` for root on a read-only view: writing is refused, executing needs an x bit.
    pub(super) fn do_access(&self, ino: u64, mask: i32) -> io::Result<()> {
        if mask & libc::W_OK != 0 {
            return Err(errno(libc::EROFS));
        }
        if is_virtual(ino) || mask & libc::X_OK == 0 || self.is_placeholder(ino) {
            return Ok(());
        }
        let node = self.node(ino)?;
        let st = self.stat_node(&node)?;
        if node.kind != FileType::Directory && st.stx_mode & 0o111 == 0 {
            return Err(errno(libc::EACCES));
        }
        Ok(())
    }
}

/// A NUL-separated xattr name list without its `trusted.*` names (which a process without
/// `CAP_SYS_ADMIN` is not shown).
fn without_trusted(list: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"trusted.") {
            out.extend_from_slice(name);
            out.push(0);
        }
    }
    out
}
