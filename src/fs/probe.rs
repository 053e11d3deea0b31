//! Probe paths: `user.ctrfsd.host_path` of a regular file names, in the host's own namespace,
//! the very inode the container sees at that file (not ctrfsd's FUSE inode), for tools that
//! need the real inode: uprobes placed by eBPF agents on a container's libraries, `perf`
//! symbolization, anything keyed by (device, inode).
//!
//! - A container with a process: `/proc/<pid>/root/<path>`, where `<path>` is the file's path
//!   from the container root with no symlink in it (ctrfsd reaches files one real directory at
//!   a time, so the path it knows is already resolved inside the container); through
//!   `/proc/<pid>/task/<tid>/root` of a live thread if the main thread has exited.
//! - A stopped container or a `.diff` view: the file in the layer directory that holds it.
//!
//! Each answer is checked before it is given: the path is walked from the container root (or
//! the layer) with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, the
//! same walk the kernel makes from `/proc/<pid>/root`, and must reach the node's own inode;
//! else the attribute is absent (ENODATA). The path is a string for another tool to resolve
//! later: if the container renames or replaces a directory on it in between, it may then name
//! another file, or none. ctrfsd itself never opens it (DESIGN.md invariant 1).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use fuser::FileType;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxFlags, statx};

use super::nodes::Node;
use super::{CtrFs, errno};
use crate::instance::Source;
use crate::layers::Storage;
use crate::pidfd::proc_dirs;

/// The attribute that carries a regular file's probe path.
pub(crate) const HOST_PATH_XATTR: &str = "user.ctrfsd.host_path";

impl CtrFs {
    /// The probe path of regular file `node` (see the module docs).
    ///
    /// # Errors
    ///
    /// ENODATA for anything but a regular file, for a file no longer at the path ctrfsd knows,
    /// and for a stopped container whose layers are not known; the node's own errors (ENOENT
    /// once its container is gone) otherwise.
    pub(super) fn host_path(&self, node: &Node) -> io::Result<Vec<u8>> {
        if node.kind != FileType::RegularFile || node.is_instance_root() {
            return Err(errno(libc::ENODATA));
        }
        let loc = node.loc();
        let parent = self.node(loc.parent)?;
        let mut names = self.path_of(&parent)?;
        names.push(loc.name);
        let mut rel = Vec::new();
        for n in &names {
            rel.push(b'/');
            rel.extend_from_slice(n);
        }
        let rel = OsStr::from_bytes(&rel[1..]);
        if node.inst.has_process() {
            // Gone: the node's own error.
            node.inst.root()?;
            // `/proc/<pid>/root` fails once the main thread has exited while other threads
            // run on (ctrfsd serves such a container through a live thread): name the root
            // through the first `/proc` directory of the process that opens, and check the
            // walk from that very root.
            for dir in proc_dirs(node.inst.pid) {
                let root = dir.join("root");
                let Ok(fd) = rustix::fs::open(
                    &root,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) else {
                    continue;
                };
                if !same_inode(&fd, rel, node, true) {
                    return Err(errno(libc::ENODATA));
                }
                let mut out = root.into_os_string().into_vec();
                out.push(b'/');
                out.extend_from_slice(rel.as_bytes());
                return Ok(out);
            }
            return Err(errno(libc::ENODATA));
        }
        let layers: Vec<&Path> = match node.inst.storage.as_deref() {
            Some(Storage::Overlay { upper, .. }) if node.inst.source == Source::Diff => {
                vec![upper]
            }
            Some(Storage::Overlay { upper, lowers }) => std::iter::once(upper.as_path())
                .chain(lowers.iter().map(|l| l.as_path()))
                .collect(),
            _ => Vec::new(),
        };
        // Topmost first: the first layer holding this very inode at this path is the one
        // overlayfs shows (a file copied up has another inode in the upper layer).
        for layer in layers {
            let Ok(dir) = rustix::fs::open(
                layer,
                // A layer path is the runtime's; rootless users own theirs: not followed.
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            if same_inode(&dir, rel, node, false) {
                let mut out = layer.as_os_str().as_bytes().to_vec();
                out.push(b'/');
                out.extend_from_slice(rel.as_bytes());
                return Ok(out);
            }
        }
        Err(errno(libc::ENODATA))
    }
}

/// Whether `rel`, walked from `root` without following any symlink, is `node`'s file. With
/// `same_dev`, the device must match too (a running container's view shows the real device;
/// a stopped container's overlay shows its own device over the layer's inode number).
fn same_inode(root: &impl std::os::fd::AsFd, rel: &OsStr, node: &Node, same_dev: bool) -> bool {
    // From the dentry cache alone on a FUSE worker (`walk`).
    let Ok(fd) = super::walk::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return false;
    };
    let Ok(st) = statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::INO | StatxFlags::TYPE,
    ) else {
        return false;
    };
    st.stx_ino == node.key.ino
        && u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFREG
        && (!same_dev || super::attr::dev_of(&st) == node.key.dev)
}
