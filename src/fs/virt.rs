//! The made-up part of the tree, from the registry's [`View`]: the mount root, `k8s/<ns>/<pod>/`,
//! `.pid/`, and the alias links (qualified names, container ids) that resolve at the top level
//! without being listed. Also the read-only `user.ctrfsd.*` attributes of container
//! directories, which say what each container is without leaving the mount.

use std::ffi::OsStr;
use std::io;
use std::sync::Arc;

use fuser::{FileAttr, FileType};
use rustix::fs::{AtFlags, statx};

use super::attr::{STATX_MASK, dev_of, synthetic_dir_attr};
use super::nodes::{Node, NodeKey, Shown};
use super::{CtrFs, errno};
use crate::instance::{Instance, Source};
use crate::registry::{ROOT_INO, VEntry, View, describe};

/// Prefix of the attributes ctrfsd sets on container directories.
pub(crate) const XATTR_PREFIX: &str = "user.ctrfsd.";

impl CtrFs {
    /// `name` in made-up directory `parent`.
    pub(super) fn lookup_virtual(&self, parent: u64, name: &OsStr) -> io::Result<FileAttr> {
        let view = self.registry.view();
        let dir = view.dirs.get(&parent).ok_or_else(|| errno(libc::ENOENT))?;
        let name_str = name.to_str().ok_or_else(|| errno(libc::ENOENT))?;
        if parent == view.pid_dir {
            let pid = name_str
                .parse::<i32>()
                .ok()
                .filter(|p| p.to_string() == name_str)
                .ok_or_else(|| errno(libc::ENOENT))?;
            let inst = self.registry.pid_instance(pid)?;
            return self.lookup_container(&inst, parent, name).map(|(_, a)| a);
        }
        match dir.children.get(name_str) {
            Some(VEntry::Dir(ino)) => Ok(self.made_up_dir_attr(*ino)),
            Some(VEntry::Container(inst)) => {
                self.lookup_container(inst, parent, name).map(|(_, a)| a)
            }
            None if parent == ROOT_INO => {
                let ino = view.alias(name_str).ok_or_else(|| errno(libc::ENOENT))?;
                Ok(self.link_attr(&view, ino)?)
            }
            None => Err(errno(libc::ENOENT)),
        }
    }

    /// The root directory node of a container, counted as one kernel reference, and its
    /// attributes.
    ///
    /// A stopped container's (or `.diff`) root is keyed by the instance alone and is not
    /// assembled here: listing the mount root must not mount every stopped container. Until
    /// something looks inside, it shows made-up directory attributes; its real ones after.
    pub(super) fn lookup_container(
        &self,
        inst: &Arc<Instance>,
        parent: u64,
        name: &OsStr,
    ) -> io::Result<(Arc<Node>, FileAttr)> {
        if !inst.has_process() {
            let key = NodeKey {
                seq: inst.seq,
                mnt: 0,
                dev: 0,
                ino: 0,
                link_parent: 0,
            };
            let node =
                self.nodes
                    .lookup(key, FileType::Directory, Shown::Normal, inst, parent, name);
            let attr = self.detached_root_attr(&node);
            return Ok((node, attr));
        }
        let root = inst.root()?;
        // Never a request to the root's filesystem if, whatever was judged, it has a FUSE or
        // network layer: its cached attributes (AT_STATX_DONT_SYNC changes nothing on a local
        // filesystem). This runs on a FUSE worker, also for `ls -la` of the mount root.
        let st = statx(
            &*root,
            "",
            AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
            STATX_MASK,
        )?;
        let key = NodeKey {
            seq: inst.seq,
            mnt: st.stx_mnt_id as u32,
            dev: dev_of(&st),
            ino: st.stx_ino,
            link_parent: 0,
        };
        let node = self
            .nodes
            .lookup(key, FileType::Directory, Shown::Normal, inst, parent, name);
        let attr = super::attr::to_attr(node.ino, &st);
        Ok((node, attr))
    }

    /// Attributes of a stopped container's (or `.diff` view's) root: the real ones once
    /// assembled, made-up ones before (and when it cannot be assembled; opening it then
    /// fails with the reason in the log and in `user.ctrfsd.unavailable`).
    pub(super) fn detached_root_attr(&self, node: &Node) -> FileAttr {
        if node.inst.is_assembled()
            && let Ok(root) = node.inst.root()
            && let Ok(st) = statx(&*root, "", AtFlags::EMPTY_PATH, STATX_MASK)
        {
            return super::attr::to_attr(node.ino, &st);
        }
        synthetic_dir_attr(node.ino, self.started)
    }

    fn link_attr(&self, view: &View, ino: u64) -> io::Result<FileAttr> {
        let target = view.links.get(&ino).ok_or_else(|| errno(libc::ENOENT))?;
        let mut attr = synthetic_dir_attr(ino, self.started);
        attr.kind = FileType::Symlink;
        attr.perm = 0o777;
        attr.nlink = 1;
        attr.size = target.len() as u64;
        Ok(attr)
    }

    /// Attributes of made-up directory `ino`, whose modes are the access rules the kernel
    /// enforces (`default_permissions`): the mount root is `0555` root's, or with
    /// `--allow-group` `0550` owned by that group, so nobody else gets past it, whatever the
    /// kernel has cached below; `.pid/` is `0500` root's, always (it serves any process's
    /// root, like `/proc/<PID>/root`).
    pub(super) fn made_up_dir_attr(&self, ino: u64) -> FileAttr {
        self.made_up_dir_attr_in(&self.registry.view(), ino)
    }

    fn made_up_dir_attr_in(&self, view: &View, ino: u64) -> FileAttr {
        let mut attr = synthetic_dir_attr(ino, self.started);
        if ino == ROOT_INO
            && let Some(gid) = self.opts.allow_group
        {
            attr.perm = 0o550;
            attr.gid = gid;
        } else if ino == view.pid_dir {
            attr.perm = 0o500;
        }
        attr
    }

    /// Attributes of a made-up directory or link.
    pub(super) fn virtual_attr(&self, ino: u64) -> io::Result<FileAttr> {
        let view = self.registry.view();
        if view.dirs.contains_key(&ino) {
            return Ok(self.made_up_dir_attr_in(&view, ino));
        }
        self.link_attr(&view, ino)
    }

    /// An alias link's target, relative to the mount root.
    pub(super) fn virtual_readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        let view = self.registry.view();
        match view.links.get(&ino) {
            Some(t) => Ok(t.clone().into_bytes()),
            None if view.dirs.contains_key(&ino) => Err(errno(libc::EINVAL)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    /// The entries of a made-up directory (`..` first), as the view has them now.
    pub(super) fn virtual_listing(&self, ino: u64) -> io::Result<(u64, Vec<(String, VEntry)>)> {
        let view = self.registry.view();
        let dir = view.dirs.get(&ino).ok_or_else(|| {
            errno(if view.links.contains_key(&ino) {
                libc::ENOTDIR
            } else {
                libc::ENOENT
            })
        })?;
        let entries = dir
            .children
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        Ok((dir.parent, entries))
    }

    /// `user.ctrfsd.*` of a container directory: what it is, by whom it is run.
    pub(super) fn container_xattrs(&self, node: &Node) -> Vec<(String, Vec<u8>)> {
        let i = &node.inst;
        let mut out = vec![
            ("runtime", describe(&i.ident)),
            ("id", i.ident.id.clone()),
            ("name", i.ident.name.clone()),
            ("path", i.path().to_string()),
        ];
        match i.stopped_state() {
            None if i.source == Source::Diff => out.push(("state", "diff".into())),
            None => {
                out.push(("state", "running".into()));
                out.push(("pid", i.pid.to_string()));
            }
            Some(s) => {
                out.push(("state", s.state.clone()));
                if let Some(code) = s.exit_code {
                    out.push(("exit_code", code.to_string()));
                }
                if !s.finished_at.is_empty() {
                    out.push(("finished_at", s.finished_at.clone()));
                }
            }
        }
        if let Some(why) = i.unavailable() {
            out.push(("unavailable", why));
        }
        if i.has_process() {
            // Where the container's own filesystem ends (README, "Staying on one filesystem").
            let points = i.mounts(false).points.join(&b'\n');
            out.push(("mounts", String::from_utf8_lossy(&points).into_owned()));
        }
        if !i.ident.image.is_empty() {
            out.push(("image", i.ident.image.clone()));
        }
        if let Some(k) = &i.ident.k8s {
            out.push(("k8s.namespace", k.namespace.clone()));
            out.push(("k8s.pod", k.pod.clone()));
            out.push(("k8s.container", k.container.clone()));
        }
        out.into_iter()
            .map(|(k, v)| (format!("{XATTR_PREFIX}{k}"), v.into_bytes()))
            .collect()
    }
}

/// For readdir without attributes: an inode number to show for a made-up entry.
pub(crate) fn listed_ino(e: &VEntry, fallback: u64) -> u64 {
    match e {
        VEntry::Dir(ino) => *ino,
        VEntry::Container(_) => fallback,
    }
}
