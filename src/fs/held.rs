//! Attributes of a file a host tool holds open after the container renamed it where no watch
//! saw it, replaced it, or deleted it: answered from the fd ctrfsd holds for it (the read fd
//! cache's, or the open handle's with `--passthrough`), so `fstat` on a descriptor describes
//! the open file, as on a local filesystem (`tail -f` relies on it).

use std::io;

use fuser::FileType;
use rustix::fs::{AtFlags, Statx, statx};

use super::attr::STATX_MASK;
use super::nodes::Node;
use super::{CtrFs, check_same};

impl CtrFs {
    /// Attributes of a regular file that is no longer where it was seen (deleted, or renamed
    /// where no watch saw it, `e` is ENOENT or ESTALE) from an fd ctrfsd still holds for it, if
    /// any: `fstat` on a descriptor describes the open file, as `tail -f` expects.
    pub(super) fn held_stat(&self, node: &Node, e: &io::Error) -> Option<Statx> {
        let gone = matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE));
        if !gone || node.kind != FileType::RegularFile {
            return None;
        }
        if let Some(fd) = self.files.get(node.ino) {
            let st = statx(&*fd, "", AtFlags::EMPTY_PATH, STATX_MASK).ok()?;
            return check_same(node, &st).is_ok().then_some(st);
        }
        // With `--passthrough` the fd is an open handle's; `fstat` does not say which (FUSE
        // sends no handle with it), so the handles are searched: only on this error path, and
        // there are as many as files host processes hold open through the mount.
        self.handles.file_fds().into_iter().find_map(|fd| {
            let st = statx(&*fd, "", AtFlags::EMPTY_PATH, STATX_MASK).ok()?;
            check_same(node, &st).is_ok().then_some(st)
        })
    }
}
