//! `lseek(SEEK_DATA/SEEK_HOLE)` answered from the container's real file, so tools that skip
//! holes (`cp`, `tar --sparse`, `rsync -S`) do not read them through ctrfsd. The kernel answers
//! `SEEK_SET/CUR/END` itself and sends only these two.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::SeekFrom;

use super::handles::Handle;
use super::{CtrFs, errno};

impl CtrFs {
    /// The offset of the next data (`SEEK_DATA`) or hole (`SEEK_HOLE`) at or after `offset`
    /// in file `ino`, as the container's filesystem reports it.
    ///
    /// # Errors
    ///
    /// ENXIO from the filesystem (no data, or `offset` past the end), EINVAL for any other
    /// `whence` or a negative offset, and whatever opening the file gives.
    pub(super) fn do_lseek(&self, ino: u64, fh: u64, offset: i64, whence: i32) -> io::Result<i64> {
        let offset = u64::try_from(offset).map_err(|_| errno(libc::EINVAL))?;
        let pos = match whence {
            libc::SEEK_DATA => SeekFrom::Data(offset),
            libc::SEEK_HOLE => SeekFrom::Hole(offset),
            _ => return Err(errno(libc::EINVAL)),
        };
        let fd = self.read_fd(ino, fh)?;
        // The fd's own position is never used for reads (they are `pread`), so moving it here
        // is harmless even when several requests share it.
        let at = rustix::fs::seek(&*fd, pos)?;
        i64::try_from(at).map_err(|_| errno(libc::EOVERFLOW))
    }

    /// The fd a read of `ino` would use: the open handle's (`fh` != 0, passthrough mode) or
    /// the read fd cache's, opened on a miss as a read opens it.
    fn read_fd(&self, ino: u64, fh: u64) -> io::Result<Arc<OwnedFd>> {
        if fh != 0 {
            return match self.handles.get(fh).as_deref() {
                Some(Handle::File { fd, .. }) => Ok(fd.clone()),
                _ => Err(errno(libc::EBADF)),
            };
        }
        if let Some(fd) = self.files.get(ino) {
            return Ok(fd);
        }
        let node = self.node(ino)?;
        let fd = Arc::new(self.open_file(ino, libc::O_RDONLY)?);
        self.files.put(ino, node.inst.seq, fd.clone());
        Ok(fd)
    }
}
