//! Start-up errors: each names the thing and the reason, and maps to a distinct exit code.
//!
//! Errors on the request path never come through here: they travel as raw errnos to the kernel.

use std::path::PathBuf;

use thiserror::Error;

/// Exit codes. 2 is clap's code for a usage error.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const MOUNTPOINT: u8 = 3;
    pub const PRIVILEGE: u8 = 4;
    pub const ALREADY_MOUNTED: u8 = 5;
    pub const MOUNT_FAILED: u8 = 6;
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("mountpoint {0}: does not exist")]
    MountpointMissing(PathBuf),
    #[error("mountpoint {0}: not a directory")]
    MountpointNotDir(PathBuf),
    #[error("mountpoint {0}: {1}")]
    MountpointUnusable(PathBuf, std::io::Error),
    #[error(
        "mountpoint {0}: a ctrfsd filesystem is already mounted and serving there (stop it first, or `umount {0}`)"
    )]
    AlreadyMounted(PathBuf),
    #[error(
        "mountpoint {path}: a dead FUSE mount of type {fstype} is there (\"Transport endpoint is not connected\"); it is not ctrfsd's, so it is left alone: `umount -l {path}` to clear it"
    )]
    ForeignStaleMount { path: PathBuf, fstype: String },
    #[error("mountpoint {path}: cannot clean up the stale ctrfsd mount: {source}")]
    StaleCleanup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ctrfsd must run as root (effective uid is {0}): it reads other processes' roots")]
    NotRoot(u32),
    #[error("/dev/fuse: {0} (is the fuse module loaded? try `modprobe fuse`)")]
    NoFuseDevice(std::io::Error),
    #[error("--container {arg}: {reason}")]
    BadContainer { arg: String, reason: String },
    #[error("--allow-group {name}: {reason}")]
    BadGroup { name: String, reason: String },
    #[error("mounting FUSE at {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::MountpointMissing(_)
            | StartError::MountpointNotDir(_)
            | StartError::MountpointUnusable(..)
            | StartError::ForeignStaleMount { .. }
            | StartError::StaleCleanup { .. } => exit::MOUNTPOINT,
            StartError::AlreadyMounted(_) => exit::ALREADY_MOUNTED,
            StartError::NotRoot(_) | StartError::NoFuseDevice(_) => exit::PRIVILEGE,
            StartError::BadContainer { .. } | StartError::BadGroup { .. } => exit::USAGE,
            StartError::Mount { .. } => exit::MOUNT_FAILED,
            StartError::Other(_) => exit::FAILURE,
        }
    }
}
