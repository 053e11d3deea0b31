//! Links inside a container that lead to its stdout or stderr (`/var/log/nginx/access.log ->
//! /dev/stdout`, as the official nginx image has them) are shown as read-only regular files
//! whose content is that stream of the container's log ([`super::logview`]), so `grep -r`
//! (which does not follow links), `less`, `tail -f` and `cp` read what the image's author
//! meant. The original link text stays in `user.ctrfsd.link`.
//!
//! A link qualifies when its text, or the text of the links it leads to (at most
//! [`MAX_HOPS`], each resolved inside the container's root, never on the host; a relative text
//! from its link's directory), is one of `/dev/stdout`, `/dev/stderr`, `/proc/self/fd/1|2`,
//! `/dev/fd/1|2`. Only link texts are
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

/// The stream a link text names, if it names one. `.` and repeated slashes are ignored, but
/// not at the end: `/dev/stdout/` (or `/dev/stdout/.`) asks for a directory, and a stream is
/// none, so the container's own `cat` of such a link says "Not a directory".
pub(crate) fn stdio_stream(text: &[u8]) -> Option<Stream> {
    if !text.starts_with(b"/") || text.ends_with(b"/") || text.ends_with(b"/.") {
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
/// against which texts further along the chain are resolved; `dir_path`: the path of `dir`
/// from that root (`/var/log/nginx`), asked for only when a text is relative.
fn stdio_target(
    root: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    dir_path: impl FnOnce() -> Option<Vec<u8>>,
) -> Option<(Stream, OsString)> {
    let first = readlinkat(dir, name, Vec::new()).ok()?;
    let own = OsStr::from_bytes(first.as_bytes()).to_owned();
    let mut text = first.into_bytes();
    let mut dir_path = Some(dir_path);
    // The directory of the link whose text is `text`, once known (absolute, from the root).
    let mut here: Option<Vec<u8>> = None;
    for _ in 0..MAX_HOPS {
        if !text.starts_with(b"/") {
            let base = match here.take() {
                Some(h) => h,
                None => (dir_path.take()?)()?,
            };
            text = join_relative(&base, &text);
        }
        if let Some(s) = stdio_stream(&text) {
            return Some((s, own));
        }
        // Each text resolved inside the container's root, the last component not followed,
        // so the next link is read as a link.
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
        here = Some(parent_of(&text));
        text = readlinkat(&fd, "", Vec::new()).ok()?.into_bytes();
    }
    None
}

/// `text` (relative) from directory `base` (absolute, real directories only): its leading
/// `..` components are taken off `base` (never above `/`, as inside the root), the rest is
/// appended as it is (a later `..` is left to the kernel's resolution).
fn join_relative(base: &[u8], text: &[u8]) -> Vec<u8> {
    let mut dirs: Vec<&[u8]> = base
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let mut rest = text;
    loop {
        let (first, after) = match rest.iter().position(|&b| b == b'/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        match first {
            b".." => {
                dirs.pop();
            }
            b"." | b"" if !after.is_empty() => {}
            _ => break,
        }
        rest = after;
    }
    let mut out = Vec::with_capacity(base.len() + rest.len() + 1);
    for d in dirs {
        out.push(b'/');
        out.extend_from_slice(d);
    }
    out.push(b'/');
    out.extend_from_slice(rest);
    out
}

/// The directory part of absolute path `p` (`/` for a name at the root).
fn parent_of(p: &[u8]) -> Vec<u8> {
    let t = p.strip_suffix(b"/").unwrap_or(p);
    match t.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/".to_vec(),
        Some(i) => t[..i].to_vec(),
    }
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
        let (stream, text) = stdio_target(root.as_fd(), dir, name, || self.dir_path(parent))?;
        self.log_link(inst, parent, name, stream, text)
    }

    /// The path of container directory `ino` from the container's root (`/var/log`).
    fn dir_path(&self, ino: u64) -> Option<Vec<u8>> {
        let node = self.node(ino).ok()?;
        let mut p = Vec::new();
        for n in self.path_of(&node).ok()? {
            p.push(b'/');
            p.extend_from_slice(&n);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        Some(p)
    }

    /// Whether `name` in `dir` is such a link whose log is served (for listings that give
    /// only a type; a lookup then shows the same).
    pub(super) fn is_stdio_link(
        &self,
        inst: &Instance,
        ino: u64,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> bool {
        let Ok(root) = inst.root() else {
            return false;
        };
        stdio_target(root.as_fd(), dir, name, || self.dir_path(ino)).is_some()
            && self.log_served(inst)
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
    fn relative_texts_join_their_links_directory() {
        for (base, text, want) in [
            ("/var/log/nginx", "../../../dev/stdout", "/dev/stdout"),
            ("/var/log", "../../../../../dev/stderr", "/dev/stderr"),
            ("/", "dev/stdout", "/dev/stdout"),
            ("/var/log", "./../../proc/self/fd/1", "/proc/self/fd/1"),
            ("/var/log", "app/../x", "/var/log/app/../x"),
        ] {
            let got = join_relative(base.as_bytes(), text.as_bytes());
            assert_eq!(String::from_utf8(got).unwrap(), want, "{base} + {text}");
        }
        assert_eq!(parent_of(b"/dev/stdout"), b"/dev");
        assert_eq!(parent_of(b"/stdout"), b"/");
    }

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
            ("/dev/stdout/", None),
            ("/dev/stderr/.", None),
            ("/proc/self/fd/1//", None),
        ] {
            assert_eq!(stdio_stream(t.as_bytes()), s, "{t}");
        }
    }
}
