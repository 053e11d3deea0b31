//! Opening host log files: a runtime names the path, but the directories may belong to an
//! unprivileged user (rootless Podman) who could plant `ctr.log -> /etc/shadow`. Every
//! component is resolved without following symlinks (`openat2` `RESOLVE_NO_SYMLINKS`), files
//! are opened `O_NOFOLLOW | O_NONBLOCK` relative to the held directory (a FIFO never blocks
//! us), and each must be a regular file (directory) owned by the runtime's user or root.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, openat2};

/// Why a log file or directory cannot be served: a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// It is not what the runtime makes (a symlink, another owner, not a regular file):
    /// nothing of this store is served.
    Refused(String),
    /// It cannot be opened (gone, permission, I/O): what was already read stays served.
    Failed(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Refused(s) | OpenError::Failed(s) => f.write_str(s),
        }
    }
}

/// Opens directory `dir` (absolute) as an `O_PATH` fd without following any symlink on the way,
/// and checks it is a directory owned by root or `owner`. A user's store (`owner` not 0) must
/// also lie below the user's home directory and be reached without crossing a mount, as the
/// user's layers (`trust::Owner::open_dir`).
///
/// # Errors
///
/// [`OpenError::Refused`] when a component of `dir` is a symbolic link (`openat2` answered
/// `ELOOP` or `EXDEV`), when `dir` is owned by neither root nor `owner`, or, for a user's store,
/// when it is not below the home directory, is across a mount or the home is not local;
/// [`OpenError::Failed`] with the path and the errno text for any other failure of `openat2` or
/// `fstat` (`ENOENT`, `ENOTDIR` for a non-directory, `EACCES`, ...).
pub fn open_dir(dir: &Path, owner: u32) -> Result<OwnedFd, OpenError> {
    if owner != 0 {
        // A user's store, as the user's layers: below their home directory, no symlink, no
        // mount crossed (one of the user's own FUSE mounts could hold the reader's worker),
        // the home on a local filesystem (`trust::Owner::open_dir`).
        return crate::trust::Owner::of(owner)
            .open_dir(dir)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    OpenError::Failed(format!("{}: {e}", dir.display()))
                }
                _ => OpenError::Refused(format!("{}: refused: {e}", dir.display())),
            });
    }
    let fd = openat2(
        rustix::fs::CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => OpenError::Refused(format!(
            "{}: refused: a component is a symbolic link",
            dir.display()
        )),
        e => OpenError::Failed(format!("{}: {}", dir.display(), std::io::Error::from(e))),
    })?;
    let st = fstat(&fd).map_err(|e| OpenError::Failed(format!("{}: {e}", dir.display())))?;
    if st.st_uid != 0 && st.st_uid != owner {
        return Err(OpenError::Refused(format!(
            "{}: refused: owned by uid {}, not by the runtime (uid {owner})",
            dir.display(),
            st.st_uid
        )));
    }
    Ok(fd)
}

/// Opens `name` in `dir` for reading, never following a symlink, and checks that it is a
/// regular file owned by `owner`. `Ok(None)`: it does not exist (any more).
///
/// # Errors
///
/// [`OpenError::Refused`] when `name` is a symbolic link (`ELOOP` under `O_NOFOLLOW`), has a
/// filesystem mounted on it (`EXDEV`), is not a regular file, or is not owned by `owner`;
/// [`OpenError::Failed`] with the name and the errno text for any other failure of `openat2`
/// or `fstat`.
pub fn open_file(dir: &OwnedFd, name: &OsStr, owner: u32) -> Result<Option<File>, OpenError> {
    let shown = Path::new(name).display();
    // `RESOLVE_NO_XDEV`: a filesystem mounted on the file itself (a user may mount a FUSE
    // filesystem of theirs on a regular file they own with `fusermount3`, then stop answering)
    // is refused with EXDEV before it is asked anything; the directory was checked the same
    // way by `open_dir`, but its last component is crossed by a plain `openat`.
    let fd = match openat2(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(OpenError::Refused(format!(
                "{shown}: refused: it is a symbolic link"
            )));
        }
        Err(rustix::io::Errno::XDEV) => {
            return Err(OpenError::Refused(format!(
                "{shown}: refused: another filesystem is mounted on it"
            )));
        }
        Err(e) => {
            return Err(OpenError::Failed(format!(
                "{shown}: {}",
                std::io::Error::from(e)
            )));
        }
    };
    let st = fstat(&fd).map_err(|e| OpenError::Failed(format!("{shown}: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(OpenError::Refused(format!(
            "{shown}: refused: not a regular file"
        )));
    }
    if st.st_uid != owner {
        return Err(OpenError::Refused(format!(
            "{shown}: refused: owned by uid {}, not by the runtime (uid {owner})",
            st.st_uid
        )));
    }
    Ok(Some(File::from(fd)))
}

/// Most bytes a rotated file of a user's store may hold: what a `.gz` rotation may decompress
/// to (`scan::MAX_GZ`, 128 MiB), far more than a runtime leaves (Docker's `local` driver
/// rotates at 20 MB by default; Podman's conmon never leaves a rotated file: it replaces the
/// log when it reaches `log_size_max`).
pub const MAX_ROTATED: u64 = super::scan::MAX_GZ;

/// Why file `file` of a user's store (whose directory the user controls) cannot be the
/// runtime's, if so: a rotated file (`rotated`) larger than [`MAX_ROTATED`], or any file with a
/// hole (`SEEK_HOLE` before its end: runtimes only append, and indexing a planted sparse file
/// of 20 GB read zeros for minutes on the FUSE worker of the reader that asked). Costs one
/// `lseek`.
pub fn planted(file: &File, len: u64, rotated: bool) -> Option<String> {
    if rotated && len > MAX_ROTATED {
        return Some(format!(
            "{len} bytes, more than any rotated file the runtime leaves ({} MiB)",
            MAX_ROTATED >> 20
        ));
    }
    if len == 0 {
        return None;
    }
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(0)) {
        Ok(hole) if hole < len => Some(format!(
            "a sparse file (a hole at byte {hole} of {len}): the runtime only appends"
        )),
        _ => None,
    }
}
