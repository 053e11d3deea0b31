//! The tree of names under the mountpoint as FUSE handlers read it ([`View`]): an immutable
//! snapshot, kept by [`super::tree::Tree`] and published after every change.
//!
//! Its maps are persistent ([`imbl`]): a snapshot shares everything a change did not touch, so
//! publishing one after a change costs O(log n), not a copy of every name (issue 13: 20,000
//! junk containers of one user made every insert copy the whole tree).

use std::sync::Arc;

use crate::instance::Instance;

/// One entry of a made-up directory.
#[derive(Debug, Clone)]
pub enum VEntry {
    /// A made-up directory, by inode number.
    Dir(u64),
    /// A container's root (or its `.diff` view).
    Container(Arc<Instance>),
}

/// A made-up directory: the mount root, `.pid`, `.diff`, `k8s/<ns>/<pod>`, ...
#[derive(Debug, Clone, Default)]
pub struct VDir {
    /// The inode of its parent (the root's parent is the root).
    pub parent: u64,
    /// Its entries by name, sorted so listings are stable.
    pub children: imbl::OrdMap<String, VEntry>,
}

/// The tree of names as of the last change. Immutable once published; cloning it is cheap
/// (persistent maps share what did not change).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every made-up directory, by inode.
    pub dirs: imbl::HashMap<u64, VDir>,
    /// Alias links: inode -> target, relative to the mount root.
    pub links: imbl::HashMap<u64, String>,
    /// Top-level names that are not listed but resolve (qualified names, full ids).
    pub(super) aliases: imbl::HashMap<String, u64>,
    /// Id -> link inode, for unique-prefix lookups.
    pub(super) ids: imbl::OrdMap<String, u64>,
    /// The `.pid` directory's inode.
    pub pid_dir: u64,
}

impl View {
    /// A top-level name that is not listed: a qualified name, a full id or a unique id prefix.
    /// Returns the alias link's inode.
    pub fn alias(&self, name: &str) -> Option<u64> {
        if let Some(&ino) = self.aliases.get(name) {
            return Some(ino);
        }
        let mut hits = self
            .ids
            .range(name.to_string()..)
            .take_while(|(id, _)| id.starts_with(name));
        match (hits.next(), hits.next()) {
            (Some((_, &ino)), None) => Some(ino),
            _ => None,
        }
    }
}
