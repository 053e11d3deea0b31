//! `ctrfsd --check MOUNTPOINT`: whether a ctrfsd mount is there and answers, for readiness and
//! liveness probes (the DaemonSet's, whose image has no shell) and for a user who wonders.
//!
//! The check reads `/proc/self/mountinfo` for the filesystem type at MOUNTPOINT, without
//! touching the mount, then asks the daemon for its request report (`getxattr` of
//! `user.ctrfsd.requests` on the mount's root, which the kernel never answers from a cache), on
//! a thread of its own: a daemon that does not answer within [`DEADLINE`] is reported as such
//! and the process exits, which ends the thread's wait (a FUSE request wait is killable).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::mountpoint::FSTYPE;

/// How long the daemon has to answer, 2 s: its own deadline for a container's call is 3 s, but
/// the report is answered from memory, so a live daemon answers in well under a millisecond.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// What a successful check saw.
#[derive(Debug)]
pub struct Answer {
    /// The mountpoint as found in the mount table.
    pub path: PathBuf,
    /// How long the daemon took to answer.
    pub took: Duration,
}

/// Checks that `path` holds a live ctrfsd mount.
///
/// # Errors
///
/// A sentence naming `path` and the reason: its parent cannot be resolved, nothing is mounted
/// there, the mount is another filesystem (with its type), the daemon is gone (`ENOTCONN`, a
/// dead mount), it refused the request (with the errno), or it did not answer within
/// [`DEADLINE`].
pub fn check(path: &Path) -> Result<Answer, String> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            let _ = tx.send(ask(&owned));
        })
        .map_err(|e| format!("{}: cannot start the check: {e}", path.display()))?;
    match rx.recv_timeout(DEADLINE) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: ctrfsd did not answer within {} s (wedged, or the machine is overloaded)",
            path.display(),
            DEADLINE.as_secs()
        )),
    }
}

/// The check itself, on its own thread (see [`check`]).
fn ask(path: &Path) -> Result<Answer, String> {
    let shown = path.display();
    // The parent is resolved (symlinks and `..`), the last component is not: resolving it
    // would ask the mount itself for its attributes.
    let abs = std::path::absolute(path).map_err(|e| format!("{shown}: {e}"))?;
    let (parent, name) = match (abs.parent(), abs.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(format!("{shown}: not a mountpoint ctrfsd could use")),
    };
    let real = std::fs::canonicalize(parent)
        .map_err(|e| format!("{shown}: {}: {e}", parent.display()))?
        .join(name);
    let table =
        std::fs::read("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    use std::os::unix::ffi::OsStrExt;
    match crate::mounts::fstype_at(&table, real.as_os_str().as_bytes()) {
        None => return Err(format!("{}: nothing is mounted there", real.display())),
        Some(t) if t != FSTYPE => {
            return Err(format!(
                "{}: the mount there is {t}, not ctrfsd ({FSTYPE})",
                real.display()
            ));
        }
        Some(_) => {}
    }
    let start = Instant::now();
    match rustix::fs::getxattr_query(&real, crate::fs::REQUESTS_XATTR) {
        // The length of the report: the daemon answered.
        Ok(_) => Ok(Answer {
            path: real,
            took: start.elapsed(),
        }),
        Err(e) if e == rustix::io::Errno::NOTCONN => Err(format!(
            "{}: the mount is dead: its ctrfsd is gone (transport endpoint not connected); \
             `umount -l` it or start ctrfsd again, which clears it",
            real.display()
        )),
        Err(e) if e == rustix::io::Errno::ACCESS => Err(format!(
            "{}: this user may not enter the mount: {e} (it admits root, and the \
             members of `--allow-group` if it was given)",
            real.display()
        )),
        Err(e) => Err(format!(
            "{}: ctrfsd answered the check with an error: {e}",
            real.display()
        )),
    }
}
