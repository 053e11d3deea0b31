//! The [`Tree`] that keeps the [`View`]: each container placed or taken away changes only its
//! own entries (its leaf and `.diff` leaf, the made-up directories on the way, its alias link
//! and aliases) and records the names it changed, so the kernel is told to forget exactly
//! those. Nothing here walks every container.
//!
//! Made-up directories keep their inode number while they exist, so the kernel's cached
//! entries for a directory that survives a change stay valid.

use std::collections::HashMap;
use std::sync::Arc;

use crate::container::Runtime;
use crate::instance::Instance;

use super::few::Few;
use super::naming::qualified;
use super::view::{VDir, VEntry, View};
use super::{DIFF_DIR, PID_DIR, ROOT_INO, VIRT_BIT};

/// One registered container as the tree shows it.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Its current instance; its [`Instance::path`] is where it is listed.
    pub inst: Arc<Instance>,
    /// Its `.diff` view, listed at the same path under `.diff`.
    pub diff: Option<Arc<Instance>>,
    /// The inode of the alias link that points at its path.
    pub link: u64,
    /// Its registration number: of two containers that claim one leaf or one alias, the one
    /// registered first keeps it (aliases go by runtime rank first).
    pub reg: u64,
}

/// Which claim on an alias: an id comes before a qualified name of the same container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AliasKind {
    Id,
    Qualified,
}

/// The [`View`] kept up to date by placing and taking away containers.
#[derive(Debug)]
pub struct Tree {
    /// The view as of the last change.
    view: View,
    /// Made-up directory path (relative to the mount root) -> its inode and how many leaves
    /// lie below it; removed with its last leaf.
    dirs: HashMap<String, (u64, usize)>,
    /// Leaf path -> the containers placed there by registration number (the first is
    /// listed; more than one only when fallback names repeat).
    leaves: HashMap<String, Few<u64, VEntry>>,
    /// Alias -> its claims, best first (runtime rank, registration, kind) -> link inode.
    aliases: HashMap<String, Few<(Runtime, u64, AliasKind), u64>>,
    /// The last inode number handed out (without [`VIRT_BIT`]); never reused.
    next: u64,
    /// (directory inode, name) of every entry changed since [`Tree::publish`].
    touched: Vec<(u64, String)>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// The root with `.pid` and `.diff`.
    pub fn new() -> Tree {
        let mut t = Tree {
            view: View::default(),
            dirs: HashMap::new(),
            leaves: HashMap::new(),
            aliases: HashMap::new(),
            next: 0,
            touched: Vec::new(),
        };
        t.view.dirs.insert(
            ROOT_INO,
            VDir {
                parent: ROOT_INO,
                children: imbl::OrdMap::new(),
            },
        );
        for name in [PID_DIR, DIFF_DIR] {
            let ino = t.alloc();
            t.view.dirs.insert(
                ino,
                VDir {
                    parent: ROOT_INO,
                    children: imbl::OrdMap::new(),
                },
            );
            t.set_child(ROOT_INO, name, Some(VEntry::Dir(ino)));
            // Never removed: no leaf count can bring them to zero.
            t.dirs.insert(name.to_string(), (ino, usize::MAX / 2));
        }
        t.view.pid_dir = t.dirs[PID_DIR].0;
        t.touched.clear();
        t
    }

    /// A fresh inode number for a made-up directory or link, never handed out before.
    pub fn alloc(&mut self) -> u64 {
        self.next += 1;
        VIRT_BIT | self.next
    }

    /// The view as of now, and the (directory inode, name) pairs changed since the last call:
    /// the kernel must forget each of them.
    pub fn publish(&mut self) -> (View, Vec<(u64, String)>) {
        (self.view.clone(), std::mem::take(&mut self.touched))
    }

    /// Lists `p` at its instance's path (and its `.diff` view under `.diff`), with its alias
    /// link and aliases. A container without a path is not placed.
    pub fn place(&mut self, p: &Placed) {
        let path = p.inst.path().to_string();
        if path.is_empty() {
            return;
        }
        self.leaf(&path, p.reg, Some(VEntry::Container(p.inst.clone())));
        if let Some(d) = &p.diff {
            self.leaf(
                &format!("{DIFF_DIR}/{path}"),
                p.reg,
                Some(VEntry::Container(d.clone())),
            );
        }
        self.view.links.insert(p.link, path.clone());
        for (alias, kind) in alias_claims(p) {
            self.claim_alias(alias, (p.inst.ident.runtime, p.reg, kind), Some(p.link));
        }
    }

    /// Takes away what [`Tree::place`] listed for `p` (the same instance, link and
    /// registration number).
    pub fn unplace(&mut self, p: &Placed) {
        let path = p.inst.path().to_string();
        if path.is_empty() {
            return;
        }
        self.leaf(&path, p.reg, None);
        if p.diff.is_some() {
            self.leaf(&format!("{DIFF_DIR}/{path}"), p.reg, None);
        }
        self.view.links.remove(&p.link);
        for (alias, kind) in alias_claims(p) {
            self.claim_alias(alias, (p.inst.ident.runtime, p.reg, kind), None);
        }
    }

    /// Adds (`Some`) or removes (`None`) the claim of registration `reg` on the leaf `path`,
    /// making or removing the directories on the way.
    fn leaf(&mut self, path: &str, reg: u64, entry: Option<VEntry>) {
        let (dir_path, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", path),
        };
        let adding = entry.is_some();
        let claims = self.leaves.entry(path.to_string()).or_default();
        let was = claims.first().map(|(k, _)| *k);
        match entry {
            Some(e) => {
                if claims.insert(reg, e).is_some() {
                    return; // already placed: nothing to count again
                }
            }
            None => {
                if claims.remove(&reg).is_none() {
                    return;
                }
            }
        }
        let now = claims.first().map(|(k, e)| (*k, e.clone()));
        if claims.is_empty() {
            self.leaves.remove(path);
        }
        let parent = if adding {
            self.dirs_on_the_way(dir_path)
        } else {
            self.dir_ino(dir_path)
        };
        if was != now.as_ref().map(|(k, _)| *k) {
            self.set_child(parent, name, now.map(|(_, e)| e));
        }
        if !adding {
            self.drop_dirs(dir_path);
        }
    }

    /// The inode of the made-up directory at `path` ("" is the root).
    fn dir_ino(&self, path: &str) -> u64 {
        if path.is_empty() {
            ROOT_INO
        } else {
            self.dirs.get(path).map_or(ROOT_INO, |d| d.0)
        }
    }

    /// Counts one more leaf below each directory of `path`, making the missing ones; returns
    /// the inode of the last.
    fn dirs_on_the_way(&mut self, path: &str) -> u64 {
        let mut parent = ROOT_INO;
        if path.is_empty() {
            return parent;
        }
        let mut end = 0;
        loop {
            end = path[end..].find('/').map_or(path.len(), |i| end + i);
            let sofar = &path[..end];
            let name = sofar.rsplit('/').next().unwrap_or(sofar);
            let ino = match self.dirs.get_mut(sofar) {
                Some(d) => {
                    d.1 += 1;
                    d.0
                }
                None => {
                    let ino = self.alloc();
                    self.dirs.insert(sofar.to_string(), (ino, 1));
                    self.view.dirs.insert(
                        ino,
                        VDir {
                            parent,
                            children: imbl::OrdMap::new(),
                        },
                    );
                    self.set_child(parent, name, Some(VEntry::Dir(ino)));
                    ino
                }
            };
            parent = ino;
            if end == path.len() {
                return parent;
            }
            end += 1;
        }
    }

    /// Counts one leaf less below each directory of `path`, deepest first; a directory with
    /// none left goes away (and comes back with a new number).
    fn drop_dirs(&mut self, path: &str) {
        let mut sofar = path;
        while !sofar.is_empty() {
            let Some(d) = self.dirs.get_mut(sofar) else {
                return;
            };
            d.1 -= 1;
            if d.1 == 0 {
                let ino = d.0;
                self.dirs.remove(sofar);
                let parent = self.view.dirs.remove(&ino).map_or(ROOT_INO, |d| d.parent);
                let name = sofar.rsplit('/').next().unwrap_or(sofar);
                self.set_child(parent, name, None);
            }
            sofar = sofar.rsplit_once('/').map_or("", |(d, _)| d);
        }
    }

    /// Sets or removes one entry of a made-up directory, and records the name as changed.
    fn set_child(&mut self, dir: u64, name: &str, entry: Option<VEntry>) {
        if let Some(d) = self.view.dirs.get_mut(&dir) {
            match entry {
                Some(e) => {
                    d.children.insert(name.to_string(), e);
                }
                None => {
                    d.children.remove(name);
                }
            }
        }
        self.touched.push((dir, name.to_string()));
    }

    /// Adds (`Some(link)`) or removes the claim `key` on the top-level alias `alias`; the best
    /// claim is the alias.
    fn claim_alias(&mut self, alias: String, key: (Runtime, u64, AliasKind), link: Option<u64>) {
        let claims = self.aliases.entry(alias.clone()).or_default();
        let was = claims.first().map(|(k, l)| (*k, *l));
        match link {
            Some(l) => {
                claims.insert(key, l);
            }
            None => {
                claims.remove(&key);
            }
        }
        let now = claims.first().map(|(k, l)| (*k, *l));
        if claims.is_empty() {
            self.aliases.remove(&alias);
        }
        if was == now {
            return;
        }
        match now {
            Some((k, l)) => {
                self.view.aliases.insert(alias.clone(), l);
                self.view.ids.remove(&alias);
                self.view.user_ids.remove(&alias);
                if k.2 == AliasKind::Id {
                    // A user endpoint's ids never make a root runtime's prefix ambiguous.
                    let ids = if k.0 == Runtime::PodmanRootless {
                        &mut self.view.user_ids
                    } else {
                        &mut self.view.ids
                    };
                    ids.insert(alias.clone(), l);
                }
            }
            None => {
                self.view.aliases.remove(&alias);
                self.view.ids.remove(&alias);
                self.view.user_ids.remove(&alias);
            }
        }
        self.touched.push((ROOT_INO, alias));
    }
}

/// The aliases `p` claims: its id (not for static entries, whose ids are made up) and its
/// qualified name where it is not listed under it.
fn alias_claims(p: &Placed) -> Vec<(String, AliasKind)> {
    let ident = &p.inst.ident;
    let mut out = Vec::new();
    if ident.runtime != Runtime::Static {
        out.push((ident.id.clone(), AliasKind::Id));
    }
    if let Some(q) = qualified(ident)
        && q != p.inst.path()
    {
        out.push((q, AliasKind::Qualified));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Identity, Stopped};
    use crate::layers::Storage;

    fn inst(rt: Runtime, scope: &str, id: &str, name: &str, path: &str) -> Arc<Instance> {
        let mut ident = Identity::new(rt, id, name);
        ident.scope = scope.into();
        let stopped = Stopped {
            state: "exited".into(),
            exit_code: Some(0),
            finished_at: String::new(),
        };
        let i = Instance::stopped(ident, stopped, Storage::Unavailable("test".into()));
        Arc::new(i.relabel(path.into()).expect("a fresh instance relabels"))
    }

    /// Places each of `insts` (registered in this order) and returns what was placed.
    fn place(t: &mut Tree, insts: &[&Arc<Instance>]) -> Vec<Placed> {
        let out: Vec<Placed> = insts
            .iter()
            .map(|i| Placed {
                inst: (*i).clone(),
                diff: None,
                link: t.alloc(),
                reg: i.seq,
            })
            .collect();
        for p in &out {
            t.place(p);
        }
        out
    }

    fn names(v: &View, dir: u64) -> Vec<&str> {
        v.dirs[&dir].children.keys().map(String::as_str).collect()
    }

    fn changed(t: &mut Tree) -> Vec<(u64, String)> {
        let mut got = t.publish().1;
        got.sort();
        got.dedup();
        got
    }

    #[test]
    fn aliases_resolve_qualified_names_and_unique_id_prefixes() {
        let mut t = Tree::new();
        let web = inst(Runtime::Docker, "", "3f2a9c0d11aa22bb", "web", "web");
        let db = inst(Runtime::Containerd, "default", "3f2b00", "db", "db");
        let st = inst(Runtime::Static, "", "pid:5", "s", "s");
        let p = place(&mut t, &[&web, &db, &st]);
        let v = t.publish().0;
        assert_eq!(names(&v, ROOT_INO), [".diff", ".pid", "db", "s", "web"]);
        let (web_link, db_link) = (p[0].link, p[1].link);
        assert_eq!(v.links[&web_link], "web");
        assert_eq!(v.alias("web@docker"), Some(web_link));
        assert_eq!(v.alias("db@containerd"), Some(db_link));
        assert_eq!(v.alias("3f2a9c0d11aa22bb"), Some(web_link));
        assert_eq!(v.alias("3f2a"), Some(web_link));
        assert_eq!(v.alias("3f2b"), Some(db_link));
        assert_eq!(v.alias("3f2"), None, "an ambiguous prefix resolves nothing");
        assert_eq!(v.alias("4"), None);
        // Listed names, static entries' ids and their (absent) qualified names are no aliases.
        assert_eq!(v.alias("web"), None);
        assert_eq!(v.alias("pid:5"), None);
        assert_eq!(v.alias("s@static"), None);
    }

    /// Issue 13: a user's endpoint reporting another runtime's container id takes nothing.
    #[test]
    fn aliases_go_by_runtime_rank() {
        let mut t = Tree::new();
        let id = "3f2a9c0d11aa22bb";
        let user = inst(Runtime::PodmanRootless, "mallory", id, "x", "x@mallory");
        let web = inst(Runtime::Docker, "", id, "web", "web");
        // Registered first, the user's container still loses the id.
        let p = place(&mut t, &[&user, &web]);
        let v = t.publish().0;
        assert_eq!(v.alias(id), Some(p[1].link));
        assert_eq!(
            v.alias("3f2a"),
            Some(p[1].link),
            "a prefix is not made ambiguous"
        );
        assert_eq!(v.alias("x@mallory"), None, "listed, so no alias");
        // Docker's container gone, the id is the user's.
        t.unplace(&p[1]);
        let v = t.publish().0;
        assert_eq!(v.alias(id), Some(p[0].link));
    }

    /// Issue 13: a user's container whose id shares a prefix with another runtime's id (ids
    /// are in every process's `/proc/<pid>/cgroup`) leaves that prefix to the other runtime:
    /// `cd /ctr/<docker ps id>` keeps working. Before, the prefix resolved nothing.
    #[test]
    fn a_users_id_does_not_make_a_prefix_ambiguous() {
        let mut t = Tree::new();
        let docker_id = "3f2a9c0d11aa22bb";
        let user_id = "3f2a9c0d11aaffff";
        let user = inst(
            Runtime::PodmanRootless,
            "mallory",
            user_id,
            "x",
            "x@mallory",
        );
        let web = inst(Runtime::Docker, "", docker_id, "web", "web");
        let p = place(&mut t, &[&user, &web]);
        let v = t.publish().0;
        assert_eq!(
            v.alias("3f2a9c0d11aa"),
            Some(p[1].link),
            "docker ps's short id"
        );
        assert_eq!(v.alias("3f2a"), Some(p[1].link));
        assert_eq!(v.alias(user_id), Some(p[0].link), "the user's full id");
        assert_eq!(
            v.alias("3f2a9c0d11aaf"),
            Some(p[0].link),
            "a prefix only it has"
        );
        // Two root runtimes' ids sharing a prefix still make it ambiguous.
        let pod = inst(Runtime::Podman, "", "3f2a9c0d1100", "db", "db");
        let q = place(&mut t, &[&pod]);
        let v = t.publish().0;
        assert_eq!(v.alias("3f2a"), None);
        assert_eq!(v.alias("3f2a9c0d1100"), Some(q[0].link));
        // Docker's container gone, the prefix it shared with the user's is the user's.
        t.unplace(&p[1]);
        let v = t.publish().0;
        assert_eq!(v.alias("3f2a9c0d11aa"), Some(p[0].link));
    }

    #[test]
    fn kubernetes_paths_make_directories_that_keep_their_numbers() {
        let mut t = Tree::new();
        let a = inst(Runtime::Containerd, "k8s.io", "a1", "a1", "k8s/ns/pod/a");
        let b = inst(Runtime::Containerd, "k8s.io", "b1", "b1", "k8s/ns/pod/b");
        let p = place(&mut t, &[&a, &b]);
        let v1 = t.publish().0;
        let dir = |v: &View, parent: u64, name: &str| match v.dirs[&parent].children.get(name) {
            Some(VEntry::Dir(ino)) => *ino,
            e => panic!("{name} is not a directory: {e:?}"),
        };
        let k8s = dir(&v1, ROOT_INO, "k8s");
        let pod = dir(&v1, dir(&v1, k8s, "ns"), "pod");
        // Both in one pod directory.
        assert_eq!(names(&v1, pod), ["a", "b"]);
        t.unplace(&p[1]);
        let v2 = t.publish().0;
        assert_eq!(dir(&v2, ROOT_INO, "k8s"), k8s);
        assert_eq!(names(&v2, pod), ["a"]);
        t.unplace(&p[0]);
        let v3 = t.publish().0;
        assert!(!v3.dirs[&ROOT_INO].children.contains_key("k8s"));
        assert!(!v3.dirs.contains_key(&pod));
        // The snapshot taken before is untouched.
        assert_eq!(names(&v1, pod), ["a", "b"]);
        place(&mut t, &[&a]);
        let v4 = t.publish().0;
        assert_ne!(
            dir(&v4, ROOT_INO, "k8s"),
            k8s,
            "a directory that went away comes back with a new number"
        );
    }

    #[test]
    fn the_changes_name_exactly_what_changed() {
        let mut t = Tree::new();
        assert!(changed(&mut t).is_empty());
        let web = inst(Runtime::Docker, "", "w1", "web", "web");
        let db = inst(Runtime::Docker, "", "d1", "db", "db");
        let keep = place(&mut t, &[&web, &db]);
        changed(&mut t);
        // `web` replaced by a new instance (a restart), `db` gone, `api` new.
        let web2 = inst(Runtime::Docker, "", "w1", "web", "web");
        let api = inst(Runtime::Docker, "", "a1", "api", "api");
        t.unplace(&keep[0]);
        t.unplace(&keep[1]);
        let p = place(&mut t, &[&web2, &api]);
        let v = t.publish();
        let mut got = v.1;
        got.sort();
        got.dedup();
        let mut want: Vec<(u64, String)> = [
            "web",
            "web@docker",
            "w1",
            "db",
            "db@docker",
            "d1",
            "api",
            "api@docker",
            "a1",
        ]
        .into_iter()
        .map(|n| (ROOT_INO, n.to_string()))
        .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(v.0.alias("w1"), Some(p[0].link));
    }

    /// Two containers on one fallback name: the first registered is listed, the other when
    /// it goes.
    #[test]
    fn a_repeated_leaf_shows_the_first_registered() {
        let mut t = Tree::new();
        let a = inst(
            Runtime::PodmanRootless,
            "alice",
            "z",
            "..",
            "podman-rootless~z",
        );
        let b = inst(
            Runtime::PodmanRootless,
            "bob",
            "z",
            "..",
            "podman-rootless~z",
        );
        let p = place(&mut t, &[&a, &b]);
        let seq = |v: &View| match &v.dirs[&ROOT_INO].children["podman-rootless~z"] {
            VEntry::Container(i) => i.seq,
            VEntry::Dir(_) => panic!("a directory"),
        };
        assert_eq!(seq(&t.publish().0), a.seq);
        t.unplace(&p[0]);
        assert_eq!(seq(&t.publish().0), b.seq);
    }
}
