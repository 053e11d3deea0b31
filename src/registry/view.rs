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
    /// Id -> link inode, for unique-prefix lookups: the ids of root's runtimes' containers.
    pub(super) ids: imbl::OrdMap<String, u64>,
    /// The same for the containers of unprivileged users' endpoints, which choose their ids
    /// freely: consulted only for a prefix no root runtime's container has, so that a user's
    /// container sharing a prefix with another runtime's id cannot make that prefix
    /// ambiguous (and so take it from `cd /ctr/<docker ps id>`).
    pub(super) user_ids: imbl::OrdMap<String, u64>,
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
        match unique_prefix(&self.ids, name) {
            Prefix::One(ino) => Some(ino),
            Prefix::Many => None,
            Prefix::None => match unique_prefix(&self.user_ids, name) {
                Prefix::One(ino) => Some(ino),
                _ => None,
            },
        }
    }
}

/// How many ids of `ids` start with `name`.
enum Prefix {
    None,
    One(u64),
    Many,
}

fn unique_prefix(ids: &imbl::OrdMap<String, u64>, name: &str) -> Prefix {
    let mut hits = ids
        .range(name.to_string()..)
        .take_while(|(id, _)| id.starts_with(name));
    match (hits.next(), hits.next()) {
        (None, _) => Prefix::None,
        (Some((_, &ino)), None) => Prefix::One(ino),
        _ => Prefix::Many,
    }
}
