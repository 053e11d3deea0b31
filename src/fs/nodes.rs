//! The inode table: ctrfsd's inode numbers for files inside containers.
//!
//! A node is keyed by (instance seq, mount id, st_dev, st_ino); a symlink's key also holds its
//! parent directory's inode, so the link text we answer (which depends on where the link sits)
//! is never shared between two places. A node holds no fd: it remembers where it was last
//! seen (parent inode + name) and is re-opened from its parent's fd when needed, so the number
//! of fds is bounded whatever the kernel holds (DESIGN.md invariant 5).
//!
//! A node's number is derived from its key ([`number_of`]), so a plain listing, which hands
//! the kernel names without looking them up, can give each entry the number a later lookup
//! gives the same file: `ls -i` (which reads the listing) agrees with `stat`. Two keys whose
//! numbers collide are told apart by a counted number for the second (numbers below
//! [`HASHED_BIT`]); a forgotten file seen again gets its number again.
//!
//! Lookup counts follow the FUSE protocol: every reply that hands the kernel an inode adds one,
//! `forget` subtracts, and a node leaves the table at zero. Increments and the final removal
//! both happen under the key map's shard lock, so a lookup racing a forget never loses a node.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use fuser::FileType;
use log::debug;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::instance::Instance;
use crate::registry::{ROOT_INO, is_virtual};

/// 32 bytes: held twice per node (in the node and as the map key), so every byte counts at a
/// million inodes. Mount ids from `STATX_MNT_ID` and kernel device numbers fit 32 bits.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct NodeKey {
    /// The instance's `seq`: a new instance never resolves an old one's inodes.
    pub seq: u64,
    /// The file's `st_ino`.
    pub ino: u64,
    /// The parent's inode number for symlinks, 0 otherwise.
    pub link_parent: u64,
    /// The mount id (`STATX_MNT_ID`).
    pub mnt: u32,
    /// The file's `st_dev`.
    pub dev: u32,
}

/// A file name, stored inline up to 16 bytes (most names): no second allocation per node.
pub type Name = SmallVec<[u8; 16]>;

/// Where a node was last seen. A made-up parent (see [`is_virtual`]) marks an instance's root
/// directory.
#[derive(Debug, Clone)]
pub struct Loc {
    /// The parent directory's inode (made-up for an instance's root).
    pub parent: u64,
    /// The name in it.
    pub name: Name,
}

impl Loc {
    /// The name, as an `OsStr`.
    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(&self.name)
    }
}

/// How a node is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// As it is.
    Normal,
    /// The root of a pseudo filesystem: its real attributes, no contents.
    Empty,
    /// The mountpoint of a mount ctrfsd never touches (network, FUSE): made-up attributes of an
    /// empty directory, and no system call ever reaches it.
    Placeholder,
}

/// One file the kernel holds an inode number for.
#[derive(Debug)]
pub struct Node {
    /// The inode number handed to the kernel.
    pub ino: u64,
    /// The container instance it belongs to.
    pub inst: Arc<Instance>,
    /// What it is, for finding it again.
    pub key: NodeKey,
    /// Its file type.
    pub kind: FileType,
    /// How it is shown.
    pub shown: Shown,
    /// Where it was last seen: how it is re-opened (no fd is held per node).
    loc: Mutex<Loc>,
    /// The kernel's references (FUSE lookup count); at zero the node leaves the table.
    nlookup: AtomicU64,
}

impl Node {
    /// Where it was last seen.
    pub fn loc(&self) -> Loc {
        self.loc.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records that it is now found as `name` in directory `parent` (a rename or a new link
    /// reported by a watch): an open file is the file, not its old name.
    pub fn seen_at(&self, parent: u64, name: &[u8]) {
        let mut loc = self.loc.lock().unwrap_or_else(|e| e.into_inner());
        if loc.parent != parent || loc.name.as_slice() != name {
            *loc = Loc {
                parent,
                name: Name::from_slice(name),
            };
        }
    }

    /// True for the root directory of a container instance.
    pub fn is_instance_root(&self) -> bool {
        is_virtual(self.loc().parent)
    }
}

/// Derived numbers carry this bit (and never [`crate::registry::VIRT_BIT`] nor the log views'
/// bits above it); counted numbers, from 2 up, stay below it.
pub const HASHED_BIT: u64 = 1 << 59;

/// The number a node for `key` gets unless another key holds it already: a mix of the key's
/// fields (splitmix64's finalizer, per field), in the 59 bits below [`HASHED_BIT`]. Two of a
/// million files collide with a probability of about 1e-6.
pub fn number_of(key: &NodeKey) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let fields = [
        key.seq,
        key.ino,
        key.link_parent,
        (u64::from(key.mnt) << 32) | u64::from(key.dev),
    ];
    let h = fields
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15u64, |h, f| mix(h ^ mix(*f)));
    HASHED_BIT | (h & (HASHED_BIT - 1))
}

/// Keys are integers we allocate or the kernel's inode identities, not attacker-chosen strings,
/// so a fast non-cryptographic hash is safe here (measured: SipHash was 8% of a readdirplus).
pub struct Nodes {
    by_ino: DashMap<u64, Arc<Node>, FxBuildHasher>,
    by_key: DashMap<NodeKey, Arc<Node>, FxBuildHasher>,
    next: AtomicU64,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            by_ino: DashMap::with_hasher(FxBuildHasher),
            by_key: DashMap::with_hasher(FxBuildHasher),
            next: AtomicU64::new(ROOT_INO + 1),
        }
    }
}

impl Nodes {
    /// The node `ino`, if the kernel holds it.
    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.by_ino.get(&ino).map(|n| n.clone())
    }

    /// Finds or creates the node for `key`, counts one kernel reference and records where it
    /// was seen (`name` in directory `parent`).
    pub fn lookup(
        &self,
        key: NodeKey,
        kind: FileType,
        shown: Shown,
        inst: &Arc<Instance>,
        parent: u64,
        name: &OsStr,
    ) -> Arc<Node> {
        match self.by_key.entry(key) {
            Entry::Occupied(e) => {
                let node = e.get().clone();
                node.nlookup.fetch_add(1, Ordering::AcqRel);
                let mut loc = node.loc.lock().unwrap_or_else(|e| e.into_inner());
                // Seen where it was last time (the common case): nothing to allocate.
                if loc.parent != parent || loc.name() != name {
                    *loc = Loc {
                        parent,
                        name: Name::from_slice(name.as_bytes()),
                    };
                }
                drop(loc);
                node
            }
            Entry::Vacant(e) => {
                let loc = Loc {
                    parent,
                    name: Name::from_slice(name.as_bytes()),
                };
                let mut node = Node {
                    ino: number_of(&key),
                    inst: inst.clone(),
                    key,
                    kind,
                    shown,
                    loc: Mutex::new(loc),
                    nlookup: AtomicU64::new(1),
                };
                // The derived number, unless another key holds it; the same key's node that
                // is being forgotten (out of the key map already) gives way.
                let node = match self.by_ino.entry(node.ino) {
                    Entry::Vacant(v) => {
                        let node = Arc::new(node);
                        v.insert(node.clone());
                        node
                    }
                    Entry::Occupied(mut o) if o.get().key == key => {
                        let node = Arc::new(node);
                        o.insert(node.clone());
                        node
                    }
                    Entry::Occupied(_) => {
                        node.ino = self.next.fetch_add(1, Ordering::Relaxed);
                        let node = Arc::new(node);
                        self.by_ino.insert(node.ino, node.clone());
                        node
                    }
                };
                e.insert(node.clone());
                node
            }
        }
    }

    /// The node for `key`, if the kernel holds it.
    pub fn find(&self, key: &NodeKey) -> Option<Arc<Node>> {
        self.by_key.get(key).map(|n| n.clone())
    }

    /// Calls `f` for every node (for invalidating everything the kernel may hold).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Node>)) {
        for n in self.by_ino.iter() {
            f(n.value());
        }
    }

    /// The kernel dropped `n` references to `ino`. Returns the node if it left the table.
    pub fn forget(&self, ino: u64, n: u64) -> Option<Arc<Node>> {
        let node = self.get(ino)?;
        let prev = node
            .nlookup
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            })
            .unwrap_or(0);
        if prev > n {
            return None;
        }
        let removed = self.by_key.remove_if(&node.key, |_, v| {
            Arc::ptr_eq(v, &node) && v.nlookup.load(Ordering::Acquire) == 0
        });
        let still_keyed = self
            .by_key
            .get(&node.key)
            .is_some_and(|v| Arc::ptr_eq(&v, &node));
        if removed.is_some() || !still_keyed {
            // Only this node: the same file seen again meanwhile has its number again.
            self.by_ino.remove_if(&ino, |_, v| Arc::ptr_eq(v, &node));
            return Some(node);
        }
        None
    }

    /// Gives memory back once the kernel has forgotten most nodes: hash tables do not shrink on
    /// removal, so they are shrunk when under a quarter full, and the allocator is trimmed.
    pub fn shrink_if_sparse(&self) {
        let (len, cap) = (self.by_ino.len(), self.by_ino.capacity());
        if cap > 4096 && len < cap / 4 {
            self.by_ino.shrink_to_fit();
            self.by_key.shrink_to_fit();
            crate::sys::trim_heap();
            debug!(
                "inode table shrunk: {len} nodes, capacity {cap} -> {}",
                self.by_ino.capacity()
            );
        }
    }

    /// How many nodes the kernel holds.
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// True if the kernel holds none.
    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Identity, Runtime, Stopped};
    use crate::layers::Storage;

    fn inst() -> Arc<Instance> {
        let stopped = Stopped {
            state: "exited".into(),
            exit_code: Some(0),
            finished_at: String::new(),
        };
        let ident = Identity::new(Runtime::Docker, "abc", "web");
        Arc::new(Instance::stopped(
            ident,
            stopped,
            Storage::Unavailable("test".into()),
        ))
    }

    fn key(ino: u64) -> NodeKey {
        NodeKey {
            seq: 1,
            ino,
            link_parent: 0,
            mnt: 1,
            dev: 1,
        }
    }

    fn look(nodes: &Nodes, inst: &Arc<Instance>, k: NodeKey, name: &str) -> Arc<Node> {
        nodes.lookup(
            k,
            FileType::RegularFile,
            Shown::Normal,
            inst,
            7,
            OsStr::new(name),
        )
    }

    #[test]
    fn a_node_leaves_when_the_kernel_forgets_every_lookup() {
        let (nodes, i) = (Nodes::default(), inst());
        let a = look(&nodes, &i, key(10), "a");
        assert!(a.ino > ROOT_INO && !is_virtual(a.ino));
        // The same file looked up again: the same node, one more reference.
        assert_eq!(look(&nodes, &i, key(10), "a").ino, a.ino);
        assert_eq!(look(&nodes, &i, key(10), "a").ino, a.ino);
        assert_eq!(nodes.len(), 1);
        assert!(nodes.forget(a.ino, 2).is_none(), "one reference is left");
        assert!(nodes.get(a.ino).is_some());
        assert_eq!(nodes.forget(a.ino, 1).map(|n| n.ino), Some(a.ino));
        assert!(nodes.is_empty());
        assert!(nodes.find(&key(10)).is_none());
        // Forgetting more than was counted, or an unknown inode, does not panic.
        let b = look(&nodes, &i, key(11), "b");
        assert!(nodes.forget(b.ino, 5).is_some());
        assert!(nodes.forget(b.ino, 1).is_none());
        assert!(nodes.forget(12345, 1).is_none());
    }

    #[test]
    fn a_file_seen_again_gets_its_number_again_after_it_was_forgotten() {
        let (nodes, i) = (Nodes::default(), inst());
        let a = look(&nodes, &i, key(10), "a");
        assert_eq!(a.ino, number_of(&key(10)), "the number a listing gives it");
        nodes.forget(a.ino, 1);
        assert!(nodes.get(a.ino).is_none());
        let again = look(&nodes, &i, key(10), "a");
        assert_eq!(again.ino, a.ino);
        assert!(nodes.get(a.ino).is_some_and(|n| Arc::ptr_eq(&n, &again)));
        // The old node's late removal does not take the new one's number away.
        assert!(nodes.forget(a.ino, 1).is_some());
        assert!(nodes.is_empty() && nodes.find(&key(10)).is_none());
    }

    #[test]
    fn numbers_are_derived_apart_from_every_other_range() {
        let mut seen = std::collections::HashSet::new();
        for ino in 0..10_000 {
            for seq in [1, 2] {
                let n = number_of(&NodeKey { seq, ..key(ino) });
                assert!(n & HASHED_BIT != 0 && !is_virtual(n));
                assert!(n & crate::registry::VIRT_BIT == 0 && n < 1 << 60);
                assert!(seen.insert(n), "no collision among 20,000 keys");
            }
        }
    }

    #[test]
    fn a_collision_gets_a_counted_number() {
        let (nodes, i) = (Nodes::default(), inst());
        let a = look(&nodes, &i, key(10), "a");
        // Another key that would get a's number: it is told apart.
        let b = look(&nodes, &i, key(11), "b");
        nodes.by_ino.remove(&b.ino);
        nodes.by_key.remove(&key(11));
        nodes.by_ino.insert(number_of(&key(11)), a.clone());
        let c = look(&nodes, &i, key(11), "b");
        assert!(c.ino < HASHED_BIT && c.ino > ROOT_INO);
        assert_eq!(nodes.get(c.ino).map(|n| n.key), Some(key(11)));
    }

    #[test]
    fn a_node_remembers_where_it_was_seen_last() {
        let (nodes, i) = (Nodes::default(), inst());
        let a = look(&nodes, &i, key(10), "a");
        let renamed = look(&nodes, &i, key(10), "b");
        assert_eq!(renamed.ino, a.ino);
        assert_eq!(a.loc().name(), OsStr::new("b"));
        assert_eq!(a.loc().parent, 7);
        // Different keys (another instance seq) are different nodes.
        let other = look(&nodes, &i, NodeKey { seq: 2, ..key(10) }, "a");
        assert_ne!(other.ino, a.ino);
        assert_eq!(nodes.len(), 2);
    }
}
