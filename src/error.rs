//! Start-up errors: each names the thing and the reason, and maps to a distinct exit code.
//!
//! Errors on the request path never come through here: they travel as raw errnos to the kernel.

use std::path::PathBuf;

use thiserror::Error;

/// Exit codes. 2 is clap's code for a usage error.
pub mod exit {
    /// Mounted, served, and unmounted cleanly on a signal.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// A bad argument (clap's code for usage errors).
    pub const USAGE: u8 = 2;
    /// The mountpoint is missing, not a directory, or holds a mount that cannot be cleared.
    pub const MOUNTPOINT: u8 = 3;
    /// Not root, or no `/dev/fuse`.
    pub const PRIVILEGE: u8 = 4;
    /// A live ctrfsd already serves the mountpoint.
    pub const ALREADY_MOUNTED: u8 = 5;
    /// The kernel refused the FUSE mount.
    pub const MOUNT_FAILED: u8 = 6;
}

/// Why ctrfsd could not start; the message names the thing and the reason.
#[derive(Debug, Error)]
pub enum StartError {
    /// The mountpoint does not exist.
    #[error("mountpoint {0}: does not exist")]
    MountpointMissing(PathBuf),
    /// The mountpoint is not a directory.
    #[error("mountpoint {0}: not a directory")]
    MountpointNotDir(PathBuf),
    /// The mountpoint cannot be examined (the error says why).
    #[error("mountpoint {0}: {1}")]
    MountpointUnusable(PathBuf, std::io::Error),
    /// A live ctrfsd already serves there.
    #[error(
        "mountpoint {0}: a ctrfsd filesystem is already mounted and serving there (stop it first, or `umount {0}`)"
    )]
    AlreadyMounted(PathBuf),
    /// A dead FUSE mount of another filesystem is there: not ours to clear.
    #[error(
        "mountpoint {path}: a dead FUSE mount of type {fstype} is there (\"Transport endpoint is not connected\"); it is not ctrfsd's, so it is left alone: `umount -l {path}` to clear it"
    )]
    ForeignStaleMount {
        /// The mountpoint.
        path: PathBuf,
        /// The dead mount's type (`fuse.sshfs`, ...).
        fstype: String,
    },
    /// A dead ctrfsd mount is there and could not be unmounted.
    #[error("mountpoint {path}: cannot clean up the stale ctrfsd mount: {source}")]
    StaleCleanup {
        /// The mountpoint.
        path: PathBuf,
        /// Why `umount` failed.
        source: std::io::Error,
    },
    /// Not run as root (the effective uid).
    #[error("ctrfsd must run as root (effective uid is {0}): it reads other processes' roots")]
    NotRoot(u32),
    /// `/dev/fuse` cannot be opened.
    #[error("/dev/fuse: {0} (is the fuse module loaded? try `modprobe fuse`)")]
    NoFuseDevice(std::io::Error),
    /// A `--container` entry is malformed, or its process cannot be shown.
    #[error("--container {arg}: {reason}")]
    BadContainer {
        /// The entry as given (`NAME=PID`).
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--allow-group` names no group of this host.
    #[error("--allow-group {name}: {reason}")]
    BadGroup {
        /// The group as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The kernel refused the FUSE mount.
    #[error("mounting FUSE at {path}: {source}")]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// The process exit code for this error (see [`exit`]).
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
