//! The tree of names under the mountpoint ([`View`]): built whole from the registered
//! containers and their paths ([`build`]), and compared with the one it replaces to tell the
//! kernel which names changed ([`changed_names`]).
//!
//! Made-up directories keep their inode number while they exist ([`Inodes`]), so the kernel's
//! cached entries for a directory that survives a change stay valid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::container::Runtime;
use crate::instance::Instance;

use super::naming::qualified;
use super::{DIFF_DIR, PID_DIR, ROOT_INO, VIRT_BIT};

/// One entry of a made-up directory.
#[derive(Debug, Clone)]
pub enum VEntry {
    /// A made-up directory, by inode number.
    Dir(u64),
    /// A container's root (or its `.diff` view).
    Container(Arc<Instance>),
}

/// A made-up directory: the mount root, `.pid`, `.diff`, `k8s/<ns>/<pod>`, ...
#[derive(Debug, Default)]
pub struct VDir {
    /// The inode of its parent (the root's parent is the root).
    pub parent: u64,
    /// Its entries by name, sorted so listings are stable.
    pub children: BTreeMap<String, VEntry>,
}

/// The tree of names as of the last change. Immutable; replaced whole.
#[derive(Debug, Default)]
pub struct View {
    /// Every made-up directory, by inode.
    pub dirs: HashMap<u64, VDir>,
    /// Alias links: inode -> target, relative to the mount root.
    pub links: HashMap<u64, String>,
    /// Top-level names that are not listed but resolve (qualified names, full ids).
    aliases: HashMap<String, u64>,
    /// (id, link inode), sorted by id, for unique-prefix lookups.
    ids: Vec<(String, u64)>,
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
        let start = self.ids.partition_point(|(id, _)| id.as_str() < name);
        let mut hits = self.ids[start..]
            .iter()
            .take_while(|(id, _)| id.starts_with(name));
        match (hits.next(), hits.next()) {
            (Some(&(_, ino)), None) => Some(ino),
            _ => None,
        }
    }

    fn add_child(&mut self, dir: u64, name: &str, e: VEntry) {
        if let Some(d) = self.dirs.get_mut(&dir) {
            d.children.entry(name.to_string()).or_insert(e);
        }
    }
}

/// Inode numbers of made-up directories and alias links: counted up with [`VIRT_BIT`] set,
/// and kept per directory path while the directory exists.
#[derive(Debug, Default)]
pub struct Inodes {
    /// Directory path (relative to the mount root) -> its inode, as of the last view.
    dirs: HashMap<String, u64>,
    /// The last number handed out (without [`VIRT_BIT`]); never reused.
    next: u64,
}

impl Inodes {
    /// A fresh inode number, never handed out before.
    pub fn alloc(&mut self) -> u64 {
        self.next += 1;
        VIRT_BIT | self.next
    }
}

/// One registered container as the view shows it.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Its current instance; its [`Instance::path`] is where it is listed (empty: skipped).
    pub inst: Arc<Instance>,
    /// Its `.diff` view, listed at the same path under `.diff`.
    pub diff: Option<Arc<Instance>>,
    /// The inode of the alias link that points at its path.
    pub link: u64,
}

/// Builds the tree of names: the root with `.pid` and `.diff`, every container at its path
/// (made-up directories on the way), its `.diff` view, and its aliases (qualified name, id).
/// Directories that existed in the last view keep their inode numbers.
pub fn build(inodes: &mut Inodes, placed: &[Placed]) -> View {
    let mut view = View::default();
    let mut kept = HashMap::new();
    let mut dir = |inodes: &mut Inodes, view: &mut View, path: &str, parent: u64| -> u64 {
        if path.is_empty() {
            return ROOT_INO;
        }
        // Made earlier in this build, or kept from the last one, or new. (Looking only at the
        // last build's numbers gave two containers in one new directory two directories.)
        let ino = match kept.get(path).or_else(|| inodes.dirs.get(path)) {
            Some(&ino) => ino,
            None => inodes.alloc(),
        };
        kept.insert(path.to_string(), ino);
        view.dirs.entry(ino).or_insert_with(|| VDir {
            parent,
            children: BTreeMap::new(),
        });
        ino
    };
    view.dirs.insert(
        ROOT_INO,
        VDir {
            parent: ROOT_INO,
            children: BTreeMap::new(),
        },
    );
    view.pid_dir = dir(inodes, &mut view, PID_DIR, ROOT_INO);
    let pid_dir = view.pid_dir;
    view.add_child(ROOT_INO, PID_DIR, VEntry::Dir(pid_dir));
    let diff_dir = dir(inodes, &mut view, DIFF_DIR, ROOT_INO);
    view.add_child(ROOT_INO, DIFF_DIR, VEntry::Dir(diff_dir));
    for p in placed {
        let path = p.inst.path();
        if path.is_empty() {
            continue; // retired while being relabelled: its remover rebuilds again
        }
        let mut place = |top: &str, inst: Arc<Instance>| {
            let mut parent = if top.is_empty() { ROOT_INO } else { diff_dir };
            let mut comps: Vec<&str> = path.split('/').collect();
            let leaf = comps.pop().unwrap_or_default();
            let mut sofar = top.to_string();
            for c in comps {
                if !sofar.is_empty() {
                    sofar.push('/');
                }
                sofar.push_str(c);
                let ino = dir(inodes, &mut view, &sofar, parent);
                view.add_child(parent, c, VEntry::Dir(ino));
                parent = ino;
            }
            view.add_child(parent, leaf, VEntry::Container(inst));
        };
        place("", p.inst.clone());
        if let Some(d) = &p.diff {
            place(DIFF_DIR, d.clone());
        }
        view.links.insert(p.link, path.to_string());
    }
    // Aliases by runtime rank: when two containers claim one alias (an id another runtime's
    // endpoint also reports, a user named like a runtime), the higher-ranked keeps it, so a
    // user's endpoint never takes over an alias of a root runtime's container.
    let mut ranked: Vec<&Placed> = placed
        .iter()
        .filter(|p| !p.inst.path().is_empty())
        .collect();
    ranked.sort_by_key(|p| p.inst.ident.runtime); // stable: registration order within a rank
    for p in ranked {
        let ident = &p.inst.ident;
        if ident.runtime != Runtime::Static && !view.aliases.contains_key(&ident.id) {
            view.ids.push((ident.id.clone(), p.link));
            view.aliases.insert(ident.id.clone(), p.link);
        }
        if let Some(q) = qualified(ident)
            && q != p.inst.path()
        {
            view.aliases.entry(q).or_insert(p.link);
        }
    }
    view.ids.sort();
    inodes.dirs = kept;
    view
}

/// Every (directory inode, name) whose answer differs between `old` and `new`: entries that
/// went away or now lead elsewhere, names that appeared (the kernel may cache "no such name"),
/// and top-level aliases that changed. The kernel must forget each of them.
pub fn changed_names<'a>(old: &'a View, new: &'a View) -> Vec<(u64, &'a str)> {
    let same = |a: &VEntry, b: &VEntry| match (a, b) {
        (VEntry::Dir(x), VEntry::Dir(y)) => x == y,
        (VEntry::Container(x), VEntry::Container(y)) => x.seq == y.seq,
        _ => false,
    };
    let mut stale: Vec<(u64, &str)> = Vec::new();
    for (ino, d) in &old.dirs {
        let nd = new.dirs.get(ino);
        for (name, e) in &d.children {
            if !nd
                .and_then(|n| n.children.get(name))
                .is_some_and(|n| same(e, n))
            {
                stale.push((*ino, name));
            }
        }
    }
    for (ino, d) in &new.dirs {
        let od = old.dirs.get(ino);
        for name in d.children.keys() {
            if !od.is_some_and(|o| o.children.contains_key(name)) {
                stale.push((*ino, name)); // a cached "no such name"
            }
        }
    }
    for (name, ino) in &old.aliases {
        if new.aliases.get(name) != Some(ino) {
            stale.push((ROOT_INO, name));
        }
    }
    for name in new.aliases.keys() {
        if !old.aliases.contains_key(name) {
            stale.push((ROOT_INO, name));
        }
    }
    stale
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

    fn placed(inodes: &mut Inodes, insts: &[&Arc<Instance>]) -> Vec<Placed> {
        insts
            .iter()
            .map(|i| Placed {
                inst: (*i).clone(),
                diff: None,
                link: inodes.alloc(),
            })
            .collect()
    }

    fn names(v: &View, dir: u64) -> Vec<&str> {
        v.dirs[&dir].children.keys().map(String::as_str).collect()
    }

    #[test]
    fn aliases_resolve_qualified_names_and_unique_id_prefixes() {
        let mut inodes = Inodes::default();
        let web = inst(Runtime::Docker, "", "3f2a9c0d11aa22bb", "web", "web");
        let db = inst(Runtime::Containerd, "default", "3f2b00", "db", "db");
        let st = inst(Runtime::Static, "", "pid:5", "s", "s");
        let p = placed(&mut inodes, &[&web, &db, &st]);
        let v = build(&mut inodes, &p);
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
        let mut inodes = Inodes::default();
        let id = "3f2a9c0d11aa22bb";
        let user = inst(Runtime::PodmanRootless, "mallory", id, "x", "x@mallory");
        let web = inst(Runtime::Docker, "", id, "web", "web");
        // Registered first, the user's container still loses the id.
        let p = placed(&mut inodes, &[&user, &web]);
        let v = build(&mut inodes, &p);
        assert_eq!(v.alias(id), Some(p[1].link));
        assert_eq!(
            v.alias("3f2a"),
            Some(p[1].link),
            "a prefix is not made ambiguous"
        );
        assert_eq!(v.alias("x@mallory"), None, "listed, so no alias");
    }

    #[test]
    fn kubernetes_paths_make_directories_that_keep_their_numbers() {
        let mut inodes = Inodes::default();
        let a = inst(Runtime::Containerd, "k8s.io", "a1", "a1", "k8s/ns/pod/a");
        let b = inst(Runtime::Containerd, "k8s.io", "b1", "b1", "k8s/ns/pod/b");
        let p = placed(&mut inodes, &[&a, &b]);
        let v1 = build(&mut inodes, &p);
        // Both in one pod directory, made in the same build.
        let pod = |v: &View| {
            let dirs: Vec<_> = v.dirs.values().filter(|d| !d.children.is_empty()).collect();
            dirs.iter()
                .find(|d| d.children.contains_key("a") || d.children.contains_key("b"))
                .map(|d| d.children.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(pod(&v1), Some(vec!["a".to_string(), "b".to_string()]));
        let k8s = match v1.dirs[&ROOT_INO].children["k8s"] {
            VEntry::Dir(ino) => ino,
            _ => panic!("k8s is not a directory"),
        };
        let p = placed(&mut inodes, &[&a]);
        let v2 = build(&mut inodes, &p);
        assert!(matches!(v2.dirs[&ROOT_INO].children["k8s"], VEntry::Dir(i) if i == k8s));
        let v3 = build(&mut inodes, &[]);
        assert!(!v3.dirs[&ROOT_INO].children.contains_key("k8s"));
        let p = placed(&mut inodes, &[&a]);
        let v4 = build(&mut inodes, &p);
        assert!(
            matches!(v4.dirs[&ROOT_INO].children["k8s"], VEntry::Dir(i) if i != k8s),
            "a directory that went away comes back with a new number"
        );
    }

    #[test]
    fn the_diff_names_exactly_what_changed() {
        let mut inodes = Inodes::default();
        let web = inst(Runtime::Docker, "", "w1", "web", "web");
        let db = inst(Runtime::Docker, "", "d1", "db", "db");
        let keep = placed(&mut inodes, &[&web, &db]);
        let old = build(&mut inodes, &keep);
        assert!(changed_names(&old, &old).is_empty());
        // `web` replaced by a new instance (a restart), `db` gone, `api` new.
        let web2 = inst(Runtime::Docker, "", "w1", "web", "web");
        let api = inst(Runtime::Docker, "", "a1", "api", "api");
        let mut p = placed(&mut inodes, &[&web2, &api]);
        p[0].link = keep[0].link;
        let new = build(&mut inodes, &p);
        let mut got: Vec<(u64, &str)> = changed_names(&old, &new);
        got.sort();
        got.dedup();
        let mut want = vec![
            (ROOT_INO, "web"),
            (ROOT_INO, "db"),
            (ROOT_INO, "db@docker"),
            (ROOT_INO, "d1"),
            (ROOT_INO, "api"),
            (ROOT_INO, "api@docker"),
            (ROOT_INO, "a1"),
        ];
        want.sort();
        assert_eq!(got, want);
    }
}
