//! Links inside a container that lead to its stdout or stderr (`/var/log/nginx/access.log ->
//! /dev/stdout`, as the official nginx image has them) are shown as read-only regular files
//! whose content is that stream of the container's log ([`super::logview`]), so `grep -r`
//! (which does not follow links), `less`, `tail -f` and `cp` read what the image's author
//! meant. The original link text stays in `user.ctrfsd.link`.
//!
//! A link qualifies when its text, or the text of the links it leads to (at most
//! [`MAX_HOPS`], each resolved inside the container's root, never on the host), is one of
//! `/dev/stdout`, `/dev/stderr`, `/proc/self/fd/1|2`, `/dev/fd/1|2`. Only link texts are
//! read; no target is ever opened for reading.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::FileAttr;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, openat2, readlinkat};

use super::CtrFs;
use crate::instance::Instance;
use crate::logs::Stream;

/// Links followed at most from a link to the stream it names.
const MAX_HOPS: usize = 8;

/// The stream a link text names, if it names one. `.` and repeated slashes are ignored.
pub(crate) fn stdio_stream(text: &[u8]) -> Option<Stream> {
    if !text.starts_with(b"/") {
        return None;
    }
    let parts: Vec<&[u8]> = text
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    match parts.as_slice() {
        [b"dev", b"stdout"] | [b"proc", b"self", b"fd", b"1"] | [b"dev", b"fd", b"1"] => {
            Some(Stream::Stdout)
        }
        [b"dev", b"stderr"] | [b"proc", b"self", b"fd", b"2"] | [b"dev", b"fd", b"2"] => {
            Some(Stream::Stderr)
        }
        _ => None,
    }
}

/// The stream link `name` in `dir` leads to, and its own text. `root`: the container's root,
/// against which absolute texts further along the chain are resolved.
fn stdio_target(
    root: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Option<(Stream, OsString)> {
    let first = readlinkat(dir, name, Vec::new()).ok()?;
    let own = OsStr::from_bytes(first.as_bytes()).to_owned();
    let mut text = first.into_bytes();
    for _ in 0..MAX_HOPS {
        if let Some(s) = stdio_stream(&text) {
            return Some((s, own));
        }
        // Only absolute texts are followed further (a relative one would need the next link's
        // directory); each resolved inside the container's root, the last component not
        // followed, so the next link is read as a link.
        if !text.starts_with(b"/") {
            return None;
        }
        let fd = openat2(
            root,
            OsStr::from_bytes(&text),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()?;
        if FileType::from_raw_mode(fstat(&fd).ok()?.st_mode) != FileType::Symlink {
            return None;
        }
        text = readlinkat(&fd, "", Vec::new()).ok()?.into_bytes();
    }
    None
}

impl CtrFs {
    /// If `name` in directory `dir` of container `inst` is a link to the container's stdout or
    /// stderr: the log file's attributes, counted as one kernel reference.
    pub(super) fn stdio_link_entry(
        &self,
        inst: &Arc<Instance>,
        parent: u64,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Option<FileAttr> {
        let root = inst.root().ok()?;
        let (stream, text) = stdio_target(root.as_fd(), dir, name)?;
        self.log_link(inst, parent, name, stream, text)
    }

    /// Whether `name` in `dir` is such a link whose log is served (for listings that give
    /// only a type; a lookup then shows the same).
    pub(super) fn is_stdio_link(&self, inst: &Instance, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
        let Ok(root) = inst.root() else {
            return false;
        };
        stdio_target(root.as_fd(), dir, name).is_some() && self.log_served(inst)
    }
}

/// Whether a statx result is a symbolic link (the only entries worth a readlink).
pub(crate) fn is_link(mode: u16) -> bool {
    u32::from(mode) & libc::S_IFMT == libc::S_IFLNK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_link_texts() {
        for (t, s) in [
            ("/dev/stdout", Some(Stream::Stdout)),
            ("/dev/stderr", Some(Stream::Stderr)),
            ("//dev/./stdout", Some(Stream::Stdout)),
            ("/proc/self/fd/1", Some(Stream::Stdout)),
            ("/proc/self/fd/2", Some(Stream::Stderr)),
            ("/dev/fd/2", Some(Stream::Stderr)),
            ("/dev/fd/0", None),
            ("dev/stdout", None),
            ("/dev/../dev/stdout", None),
            ("/var/log/app.log", None),
        ] {
            assert_eq!(stdio_stream(t.as_bytes()), s, "{t}");
        }
    }
}
