//! Checks the mountpoint before mounting: it must be an existing directory; a live ctrfsd mount
//! there is refused; a dead ctrfsd mount (the daemon was killed: "Transport endpoint is not
//! connected") is detached so this start can mount again.

use std::io;
use std::path::{Path, PathBuf};

use log::{info, warn};
use rustix::mount::{UnmountFlags, unmount};

use crate::error::StartError;

/// The filesystem type ctrfsd mounts show in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.ctrfsd";

/// The type of the topmost mount at `path`, if `path` is a mountpoint.
fn mounted_type(path: &Path) -> Option<String> {
    let infos = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    infos
        .into_iter()
        .rfind(|m| m.mount_point == path)
        .map(|m| m.fs_type)
}

/// `path` made absolute with its parent canonicalized, without touching `path` itself (which
/// may be a dead mount that every `stat` fails on).
fn absolute(path: &Path) -> Result<PathBuf, StartError> {
    let abs = std::path::absolute(path)
        .map_err(|e| StartError::MountpointUnusable(path.to_path_buf(), e))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = parent.canonicalize().map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StartError::MountpointMissing(path.to_path_buf()),
                _ => StartError::MountpointUnusable(path.to_path_buf(), e),
            })?;
            Ok(parent.join(name))
        }
        _ => Err(StartError::Other(format!(
            "mountpoint {}: cannot mount over the root directory",
            path.display()
        ))),
    }
}

/// Validates `path` and returns its canonical form, cleaning up a stale ctrfsd mount first.
///
/// # Errors
///
/// [`StartError::MountpointMissing`], [`StartError::MountpointNotDir`] or
/// [`StartError::MountpointUnusable`] (with the `io::Error`) for a path that cannot serve;
/// [`StartError::AlreadyMounted`] when a live ctrfsd serves there;
/// [`StartError::ForeignStaleMount`] for a dead FUSE mount (`ENOTCONN`) of another filesystem;
/// [`StartError::StaleCleanup`] when a dead ctrfsd mount cannot be detached; [`StartError::Other`] for
/// `/`, which cannot be mounted over.
pub fn prepare(path: &Path) -> Result<PathBuf, StartError> {
    let abs = absolute(path)?;
    // statfs always reaches the FUSE daemon (stat may be answered from the kernel's attribute
    // cache for a second after the daemon died), so it is the probe for a dead mount.
    let probe = rustix::fs::statfs(&abs)
        .map(|_| ())
        .map_err(io::Error::from)
        .and_then(|()| std::fs::metadata(&abs));
    match probe {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let fstype = mounted_type(&abs).unwrap_or_else(|| "unknown".into());
            if fstype != FSTYPE {
                return Err(StartError::ForeignStaleMount { path: abs, fstype });
            }
            warn!(
                "{}: a previous ctrfsd died without unmounting; detaching its dead mount",
                abs.display()
            );
            unmount(&abs, UnmountFlags::DETACH).map_err(|e| StartError::StaleCleanup {
                path: abs.clone(),
                source: e.into(),
            })?;
            info!("{}: stale mount removed", abs.display());
            return prepare(path);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StartError::MountpointMissing(abs));
        }
        Err(e) => return Err(StartError::MountpointUnusable(abs, e)),
        Ok(m) if !m.is_dir() => return Err(StartError::MountpointNotDir(abs)),
        Ok(_) => {}
    }
    let canon = abs
        .canonicalize()
        .map_err(|e| StartError::MountpointUnusable(abs.clone(), e))?;
    if mounted_type(&canon).as_deref() == Some(FSTYPE) {
        return Err(StartError::AlreadyMounted(canon));
    }
    Ok(canon)
}

/// Detaches `path` lazily: it disappears from the namespace now and is released when its last
/// user lets go. Used when a plain unmount reports the mount busy.
///
/// # Errors
///
/// The errno of `umount2(MNT_DETACH)`: `EINVAL` when `path` is not a mountpoint, `ENOENT`
/// when it does not exist, `EPERM` without `CAP_SYS_ADMIN`.
pub fn detach(path: &Path) -> io::Result<()> {
    Ok(unmount(path, UnmountFlags::DETACH)?)
}

/// Creates directory `path` and its parents (`--mkdir`). A path that already exists, as
/// anything (a directory, a file, a dead mount that every `stat` fails on), is left to
/// [`prepare`] to judge.
///
/// # Errors
///
/// [`StartError::MountpointUnusable`] naming the parent or `path` and carrying the
/// `io::Error` of `mkdir` (`EACCES`, `ENOTDIR`, `EROFS`, ...); an existing path is not an
/// error.
pub fn create(path: &Path) -> Result<(), StartError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StartError::MountpointUnusable(parent.to_path_buf(), e))?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => {
            info!("{}: created", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StartError::MountpointUnusable(path.to_path_buf(), e)),
    }
}

/// The readahead ctrfsd asks of the kernel for its mount, in KiB: as large as one FUSE read
/// request may be (`/proc/sys/fs/fuse/max_pages_limit`, 256 pages by default, which fuser
/// requests through FUSE_MAX_PAGES). The kernel starts a FUSE mount at its default, 128 KiB,
/// and takes no larger value at INIT than it offered.
pub const READAHEAD_KB: u32 = 1024;

/// Sets the readahead of the ctrfsd mount at `path` to [`READAHEAD_KB`] through its backing
/// device's `/sys/class/bdi/<major>:<minor>/read_ahead_kb`, found in mountinfo (a `stat` of
/// the mount would wait on the session, which is not serving yet). Sequential reads then come
/// in 1 MiB requests instead of 128 KiB: 1,024 read requests per GiB instead of 8,192.
///
/// # Errors
///
/// `ENOENT` when no ctrfsd mount is at `path`; the `io::Error` of writing the sysfs file
/// otherwise (`EACCES` without root, `ENOENT` on a kernel without that bdi entry).
pub fn set_readahead(path: &Path) -> io::Result<()> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(io::Error::other)?;
    let info = infos
        .into_iter()
        .rfind(|m| m.mount_point == path && m.fs_type == FSTYPE)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    std::fs::write(
        format!("/sys/class/bdi/{}/read_ahead_kb", info.majmin),
        READAHEAD_KB.to_string(),
    )
}
