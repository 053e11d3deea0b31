//! `readlink` answers: the link's text rewritten by [`crate::pathsafe`] so that the host kernel,
//! following it from under the mount, stays inside the container.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use fuser::FileType;
use rustix::fs::{AtFlags, OFlags, ResolveFlags, readlinkat, statx};

use super::attr::{STATX_MASK, kind_of};
use super::{CtrFs, Reached, errno};
use crate::instance::Instance;
use crate::mounts::MountKind;
use crate::pathsafe::{self, Kind};
use crate::registry::is_virtual;

impl CtrFs {
    /// Sets a symlink's `st_size` to the length of the answer `readlink` gives through the
    /// mount (the rewritten text), not of the container's link text: tools size their buffer
    /// from `st_size` (libarchive's `bsdtar` stores a target cut to that length). Where no
    /// answer can be computed (ELOOP, a race), the container's own size stays.
    pub(super) fn answer_size(&self, attr: &mut fuser::FileAttr) {
        if attr.kind == FileType::Symlink
            && !is_virtual(attr.ino.0)
            && let Ok(t) = self.do_readlink(attr.ino.0)
        {
            attr.size = t.len() as u64;
        }
    }

    pub(super) fn do_readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        if is_virtual(ino) {
            return self.virtual_readlink(ino);
        }
        let node = self.node(ino)?;
        if node.kind != FileType::Symlink {
            return Err(errno(libc::EINVAL));
        }
        let loc = node.loc();
        let parent = self.node(loc.parent)?;
        let pfd = self.dir_fd(&parent)?;
        // Through the link's own `O_PATH` fd, reached as every walk on a FUSE worker is
        // (`child_at`, `walk`), never by a name lookup that may wait on the directory's lock.
        let Reached::Here(fd, st) = self.child_at(&node.inst, pfd.as_fd(), loc.name())? else {
            return Err(crate::instance::stale());
        };
        if node.inst.source == crate::instance::Source::Diff && super::attr::is_whiteout(&st) {
            return Ok(super::attr::WHITEOUT_TARGET.as_bytes().to_vec());
        }
        if kind_of(u32::from(st.stx_mode)) != FileType::Symlink {
            return Err(errno(libc::EINVAL));
        }
        let target = readlinkat(&fd, "", Vec::new())?;
        let link_dir = self.path_of(&parent)?;
        let link_dir: Vec<&[u8]> = link_dir.iter().map(|c| c.as_slice()).collect();
        let root = node.inst.root()?;
        let mut prefix = self.opts.mountpoint.as_os_str().as_bytes().to_vec();
        while prefix.last() == Some(&b'/') {
            prefix.pop();
        }
        prefix.push(b'/');
        prefix.extend_from_slice(node.inst.path().as_bytes());
        let answer = pathsafe::rewrite(target.as_bytes(), &link_dir, &prefix, |stack, name| {
            self.classify(&node.inst, &root, stack, name)
        })
        .map_err(errno)?;
        if super::derived::is_derived(target.as_bytes()) {
            self.derived.given(ino);
        }
        Ok(answer)
    }

    /// What `name` is inside directory `stack` of the container, never following anything:
    /// the directory is reached from the container root with `RESOLVE_BENEATH` and no symlinks.
    fn classify(&self, inst: &Instance, root: &OwnedFd, stack: &[Vec<u8>], name: &[u8]) -> Kind {
        let mut path = stack.join(&b'/');
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        if inst.mounts(false).unserved_at(&path).is_some() {
            return Kind::Stop;
        }
        let dir;
        let dir_fd = if stack.is_empty() {
            root
        } else {
            let path = stack.join(&b'/');
            dir = match super::walk::openat2(
                root,
                path.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(_) => return Kind::Stop,
            };
            // The walk may have crossed onto a mount made since (an O_PATH walk asks it
            // nothing): nothing below is asked of it unless it is served.
            match crate::mounts::mount_id_of(dir.as_fd()) {
                Ok(mnt) if inst.mount_kind(mnt) == MountKind::Served => {}
                _ => return Kind::Stop,
            }
            &dir
        };
        let name = OsStr::from_bytes(name);
        let Ok(Reached::Here(fd, st)) = self.child_at(inst, dir_fd.as_fd(), name) else {
            return Kind::Stop;
        };
        match kind_of(u32::from(st.stx_mode)) {
            FileType::Directory => {
                let Ok(here) = statx(dir_fd, "", AtFlags::EMPTY_PATH, STATX_MASK) else {
                    return Kind::Stop;
                };
                let served = st.stx_mnt_id == here.stx_mnt_id
                    || inst.mount_kind(st.stx_mnt_id) == MountKind::Served;
                if served { Kind::Dir } else { Kind::Stop }
            }
            FileType::Symlink => match readlinkat(&fd, "", Vec::new()) {
                Ok(t) => Kind::Symlink(t.into_bytes()),
                Err(_) => Kind::Stop,
            },
            _ => Kind::Stop,
        }
    }
}
