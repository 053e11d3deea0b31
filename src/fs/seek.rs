//! `lseek(SEEK_DATA/SEEK_HOLE)` answered from the container's real file, so tools that skip
//! holes (`cp`, `tar --sparse`, `rsync -S`) do not read them through ctrfsd. The kernel answers
//! `SEEK_SET/CUR/END` itself and sends only these two.

use std::io;

use rustix::fs::SeekFrom;

use super::ops::ReadFrom;
use super::{Core, errno};

/// Which way `lseek` looks from an offset: `SEEK_DATA` or `SEEK_HOLE` (the kernel answers
/// `SEEK_SET/CUR/END` itself and sends only these two).
///
/// # Errors
///
/// EINVAL for any other `whence` or a negative offset.
pub(super) fn seek_target(offset: i64, whence: i32) -> io::Result<SeekFrom> {
    let offset = u64::try_from(offset).map_err(|_| errno(libc::EINVAL))?;
    match whence {
        libc::SEEK_DATA => Ok(SeekFrom::Data(offset)),
        libc::SEEK_HOLE => Ok(SeekFrom::Hole(offset)),
        _ => Err(errno(libc::EINVAL)),
    }
}

impl Core {
    /// The offset of the next data or hole (`pos`) in the file `from` names, as the
    /// container's filesystem reports it. Opens the file as a read would (so it may wait on
    /// the container: the caller runs it under `guard`).
    ///
    /// # Errors
    ///
    /// ENXIO from the filesystem (no data, or the offset is past the end), EOVERFLOW for an
    /// offset past `i64::MAX`, and whatever opening the file gives.
    pub(super) fn seek_at(&self, from: ReadFrom, pos: SeekFrom) -> io::Result<i64> {
        let fd = self.fd_for(from)?;
        // The fd's own position is never used for reads (they are `pread`), so moving it here
        // is harmless even when several requests share it.
        let at = rustix::fs::seek(&*fd, pos)?;
        i64::try_from(at).map_err(|_| errno(libc::EOVERFLOW))
    }
}
