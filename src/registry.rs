//! The registry: every container the runtime watchers report, and the tree of names under the
//! mountpoint computed from them (the [`View`]).
//!
//! Handlers only ever clone an `Arc<View>` here; they never wait on a runtime API. Every change
//! rebuilds the view, retires instances whose path changed or that are gone (their inodes
//! answer ENOENT from then on) and asks the kernel to forget the names that changed, so a new
//! instance is looked up afresh at once instead of after the entry TTL.
//!
//! Naming (README, "Naming"): containers are ordered by runtime priority ([`Runtime`]), newest
//! first, then by id; each takes the first free name of its candidates:
//!
//! - Kubernetes containers: `k8s/<namespace>/<pod>/<container>`, then that with `~<id12>`.
//! - others: the bare name (Docker, rootful Podman, containerd's `default` namespace and
//!   `--container` entries only), then `<name>@<qualifier>` (`docker`, `podman`, `containerd`,
//!   the rootless user, the containerd namespace), then that with `~<id12>`.
//!
//! The qualified name and the full id (or any unique id prefix) of every container also resolve
//! at the top level, as symlinks to where it is listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use fuser::{INodeNo, Notifier};
use log::{debug, info};

use crate::instance::{Identity, Instance, Runtime, gone, pin, short_id};

/// The FUSE inode number of the mount root.
pub const ROOT_INO: u64 = 1;

/// Inode numbers of made-up directories and alias links carry this bit; container files get
/// numbers counted up from 2 (see `fs::nodes`), which never reach it.
pub const VIRT_BIT: u64 = 1 << 62;

/// The directory under which any process's root is served by PID.
pub const PID_DIR: &str = ".pid";
/// The directory holding Kubernetes containers by namespace and pod.
pub const K8S_DIR: &str = "k8s";
/// The directory holding each container's writable layer alone, at the container's path.
pub const DIFF_DIR: &str = ".diff";

/// At most this many `.pid/<PID>` views are held at once (each holds two fds); the least
/// recently looked up is dropped first.
const MAX_PID_VIEWS: usize = 128;

/// True for the mount root and every directory or link the registry made up.
pub fn is_virtual(ino: u64) -> bool {
    ino == ROOT_INO || ino & VIRT_BIT != 0
}

type RetireHook = Box<dyn Fn(&Instance) + Send + Sync>;

/// Why `name` cannot be a directory name under the mount root, if it cannot.
pub fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not a usable directory name")
    } else if name.contains('/') || name.contains('\0') {
        Some("contains '/' or NUL")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

/// One entry of a made-up directory.
#[derive(Debug, Clone)]
pub enum VEntry {
    Dir(u64),
    Container(Arc<Instance>),
}

#[derive(Debug, Default)]
pub struct VDir {
    pub parent: u64,
    pub children: BTreeMap<String, VEntry>,
}

/// The tree of names as of the last change. Immutable; replaced whole.
#[derive(Debug, Default)]
pub struct View {
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
}

/// What a runtime watcher needs to notice that a registered container's process exited.
pub struct Watch {
    pub token: u64,
    /// `None` for stopped containers: nothing to watch.
    pub pidfd: Option<Arc<OwnedFd>>,
    /// Woken when the registry drops the container for another reason.
    pub cancel: Arc<tokio::sync::Notify>,
}

struct Entry {
    token: u64,
    inst: Arc<Instance>,
    /// Its `.diff` view, made when its path is known.
    diff: Option<Arc<Instance>>,
    cancel: Arc<tokio::sync::Notify>,
    /// The alias link pointing at `inst.path()`.
    link: u64,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    view: Arc<View>,
    /// Made-up directories keep their inode while they exist.
    dir_inos: HashMap<String, u64>,
    next_virt: u64,
}

impl State {
    fn alloc(&mut self) -> u64 {
        self.next_virt += 1;
        VIRT_BIT | self.next_virt
    }
}

struct PidView {
    inst: Arc<Instance>,
    used: std::time::Instant,
}

#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
    view: RwLock<Arc<View>>,
    pids: Mutex<HashMap<i32, PidView>>,
    /// Stopped containers are registered (true unless `--running-only`).
    hide_stopped: std::sync::atomic::AtomicBool,
    notifier: OnceLock<Notifier>,
    on_retire: OnceLock<RetireHook>,
    tokio: OnceLock<tokio::runtime::Handle>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        let reg = Registry::default();
        reg.rebuild(&mut reg.lock(), Vec::new());
        Arc::new(reg)
    }

    /// Lets the registry invalidate kernel dentries once the FUSE session exists.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Called for every retired instance (the filesystem drops fds it cached for it).
    pub fn set_on_retire(&self, hook: RetireHook) {
        let _ = self.on_retire.set(hook);
    }

    /// Where exit watchers of `.pid` views run.
    pub fn set_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.tokio.set(handle);
    }

    /// With `--running-only`, watchers do not register stopped containers.
    pub fn set_hide_stopped(&self, hide: bool) {
        self.hide_stopped
            .store(hide, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn shows_stopped(&self) -> bool {
        !self.hide_stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current tree of names.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The served instance of the container `ident` names, if any.
    pub fn find(&self, ident: &Identity) -> Option<Arc<Instance>> {
        self.lock()
            .entries
            .iter()
            .find(|e| e.inst.ident.same_container(ident))
            .map(|e| e.inst.clone())
    }

    /// True if the container `ident` is served, alive, as exactly this identity and PID.
    pub fn serves(&self, ident: &Identity, pid: i32) -> bool {
        self.find(ident)
            .is_some_and(|i| i.is_alive() && i.is_running() && i.pid == pid && i.ident == *ident)
    }

    /// True if the container `ident` is shown stopped, as exactly this identity, end and
    /// storage.
    pub fn serves_stopped(
        &self,
        ident: &Identity,
        stopped: &crate::instance::Stopped,
        storage: &crate::layers::Storage,
    ) -> bool {
        self.find(ident).is_some_and(|i| {
            i.is_alive()
                && i.stopped_state() == Some(stopped)
                && i.ident == *ident
                && i.storage.as_deref() == Some(storage)
        })
    }

    /// Registers `inst`, replacing any instance of the same container. Returns what its exit
    /// watcher needs, or `None` if it could not be registered.
    pub fn insert(&self, inst: Instance) -> Option<Watch> {
        let mut st = self.lock();
        let mut gone = Vec::new();
        st.entries.retain(|e| {
            let same = e.inst.ident.same_container(&inst.ident);
            if same {
                e.cancel.notify_one();
                gone.push(e.inst.clone());
                gone.extend(e.diff.clone());
            }
            !same
        });
        let inst = Arc::new(inst);
        let watch = Watch {
            token: inst.seq,
            pidfd: inst.pidfd_arc(),
            cancel: Arc::new(tokio::sync::Notify::new()),
        };
        st.entries.push(Entry {
            token: watch.token,
            inst: inst.clone(),
            diff: None,
            cancel: watch.cancel.clone(),
            link: 0,
        });
        // Replaced by the new instance: the kernel looks the path up again.
        self.rebuild(&mut st, gone.into_iter().map(|i| (i, true)).collect());
        let served = st.entries.iter().find(|e| e.token == watch.token).map(|e| {
            let i = &e.inst;
            match (i.stopped_state(), i.unavailable()) {
                (None, _) => info!(
                    "container {} ({} {}, pid {}) is served",
                    i.path(),
                    describe(&i.ident),
                    i.short_id(),
                    i.pid
                ),
                (Some(s), None) => info!(
                    "container {} ({} {}) is shown {}, read-only from its layers",
                    i.path(),
                    describe(&i.ident),
                    i.short_id(),
                    match s.exit_code {
                        _ if s.state == "created" => "created (never started)".to_string(),
                        Some(code) => format!("{} (exit code {code})", s.state),
                        None => s.state.clone(),
                    }
                ),
                (Some(s), Some(why)) => log::warn!(
                    "container {} ({} {}) is {} and its files cannot be shown: {why}",
                    i.path(),
                    describe(&i.ident),
                    i.short_id(),
                    s.state
                ),
            }
        });
        drop(st);
        served.map(|_| watch)
    }

    /// Drops the container registered as `token` (its process exited).
    pub fn remove_token(&self, token: u64) {
        self.remove_where(|e| e.token == token, "its process exited");
    }

    /// Drops a runtime's container (it stopped or was removed).
    pub fn remove(&self, ident: &Identity, why: &str) {
        self.remove_where(|e| e.inst.ident.same_container(ident), why);
    }

    /// Drops every container of `runtime` for which `keep` is false (full re-list).
    pub fn retain(&self, runtime: Runtime, keep: impl Fn(&Identity) -> bool) {
        self.remove_where(
            |e| e.inst.ident.runtime == runtime && !keep(&e.inst.ident),
            "the runtime no longer lists it",
        );
    }

    fn remove_where(&self, pred: impl Fn(&Entry) -> bool, why: &str) {
        let mut st = self.lock();
        let mut gone = Vec::new();
        st.entries.retain(|e| {
            let hit = pred(e);
            if hit {
                info!(
                    "container {} ({} {}) is gone: {why}",
                    e.inst.path(),
                    describe(&e.inst.ident),
                    e.inst.short_id()
                );
                e.cancel.notify_one();
                gone.push(e.inst.clone());
                gone.extend(e.diff.clone());
            }
            !hit
        });
        if gone.is_empty() {
            return;
        }
        self.rebuild(&mut st, gone.into_iter().map(|i| (i, false)).collect());
    }

    /// Recomputes every container's path and the view; relabels the containers whose path
    /// changed. Retires `retire` (each flagged whether another instance took its place) and the
    /// relabelled instances *before* the new view is published, so once a listing shows the
    /// change no old instance is served; then tells the kernel what changed.
    fn rebuild(&self, st: &mut State, retire: Vec<(Arc<Instance>, bool)>) {
        let mut order: Vec<usize> = (0..st.entries.len()).collect();
        order.sort_by(|&a, &b| {
            // Running before stopped: a restarted Kubernetes container takes the plain path,
            // its exited predecessor the `~id` one.
            let key = |i: &Instance| {
                let d = &i.ident;
                (
                    d.runtime,
                    !i.is_running(),
                    std::cmp::Reverse(d.created),
                    d.scope.clone(),
                    d.id.clone(),
                )
            };
            key(&st.entries[a].inst).cmp(&key(&st.entries[b].inst))
        });
        let mut taken: HashSet<String> = [PID_DIR, K8S_DIR, DIFF_DIR]
            .into_iter()
            .map(String::from)
            .collect();
        let mut replaced = Vec::new();
        let mut paths = vec![String::new(); st.entries.len()];
        for &i in &order {
            let ident = &st.entries[i].inst.ident;
            let path = candidates(ident)
                .into_iter()
                .find(|p| !taken.contains(p))
                .unwrap_or_else(|| format!("{}~{}", ident.runtime.as_str(), ident.id));
            taken.insert(path.clone());
            paths[i] = path;
        }
        for (i, path) in paths.into_iter().enumerate() {
            if st.entries[i].inst.path() == path && st.entries[i].link != 0 {
                continue;
            }
            let link = st.alloc();
            let e = &mut st.entries[i];
            if e.inst.path() != path {
                if !e.inst.path().is_empty() {
                    info!(
                        "container {} ({} {}) moves to {path}: the names changed",
                        e.inst.path(),
                        describe(&e.inst.ident),
                        e.inst.short_id()
                    );
                }
                match e.inst.relabel(path.clone()) {
                    Some(new) => replaced.push(std::mem::replace(&mut e.inst, Arc::new(new))),
                    None => continue,
                }
            }
            let diff = Arc::new(e.inst.diff_view(format!("{DIFF_DIR}/{path}")));
            replaced.extend(e.diff.replace(diff));
            e.link = link;
        }

        let mut view = View::default();
        let mut dir_inos = HashMap::new();
        let mut dir = |st: &mut State, view: &mut View, path: &str, parent: u64| -> u64 {
            if path.is_empty() {
                return ROOT_INO;
            }
            let ino = match st.dir_inos.get(path) {
                Some(&ino) => ino,
                None => st.alloc(),
            };
            dir_inos.insert(path.to_string(), ino);
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
        view.pid_dir = dir(st, &mut view, PID_DIR, ROOT_INO);
        let pid_dir = view.pid_dir;
        add_child(&mut view, ROOT_INO, PID_DIR, VEntry::Dir(pid_dir));
        let diff_dir = dir(st, &mut view, DIFF_DIR, ROOT_INO);
        add_child(&mut view, ROOT_INO, DIFF_DIR, VEntry::Dir(diff_dir));
        let entries: Vec<(Arc<Instance>, Option<Arc<Instance>>, u64)> = st
            .entries
            .iter()
            .map(|e| (e.inst.clone(), e.diff.clone(), e.link))
            .collect();
        for (inst, diff, link) in entries {
            let path = inst.path().to_string();
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
                    let ino = dir(st, &mut view, &sofar, parent);
                    add_child(&mut view, parent, c, VEntry::Dir(ino));
                    parent = ino;
                }
                add_child(&mut view, parent, leaf, VEntry::Container(inst));
            };
            place("", inst.clone());
            if let Some(d) = diff {
                place(DIFF_DIR, d);
            }
            view.links.insert(link, path.clone());
            let ident = &inst.ident;
            if ident.runtime != Runtime::Static {
                view.ids.push((ident.id.clone(), link));
                view.aliases.insert(ident.id.clone(), link);
            }
            if let Some(q) = qualified(ident)
                && q != path
            {
                view.aliases.insert(q, link);
            }
        }
        view.ids.sort();
        st.dir_inos = dir_inos;
        self.retire_all(retire);
        self.retire_all(replaced.into_iter().map(|i| (i, true)).collect());
        let old = std::mem::replace(&mut st.view, Arc::new(view));
        let new = st.view.clone();
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        self.invalidate(&old, &new);
    }

    /// Asks the kernel to forget every name whose answer changed between two views.
    fn invalidate(&self, old: &View, new: &View) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
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
        for (dir, name) in stale {
            // ENOENT only means the kernel had nothing cached under that name.
            if let Err(e) = notifier.inval_entry(INodeNo(dir), OsStr::new(name)) {
                debug!("invalidate {name}: {e}");
            }
        }
    }

    /// Retires instances: `replaced` if another instance took their place (their nodes answer
    /// ESTALE, so the kernel looks the path up again), else gone (ENOENT).
    fn retire_all(&self, gone: Vec<(Arc<Instance>, bool)>) {
        for (inst, replaced) in &gone {
            if *replaced {
                inst.retire_replaced();
            } else {
                inst.retire();
            }
            if let Some(hook) = self.on_retire.get() {
                hook(inst);
            }
        }
    }

    /// The view of process `pid` at `.pid/<pid>`, opened on first use and dropped when the
    /// process exits.
    pub fn pid_instance(self: &Arc<Self>, pid: i32) -> io::Result<Arc<Instance>> {
        if pid <= 0 {
            return Err(gone());
        }
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = pids.get_mut(&pid) {
            if v.inst.is_alive() && !v.inst.exited() {
                v.used = std::time::Instant::now();
                return Ok(v.inst.clone());
            }
            pids.remove(&pid);
        }
        let pidfd = pin(pid).map_err(|_| gone())?;
        let mut ident = Identity::new(Runtime::Pid, format!("pid:{pid}"), pid.to_string());
        ident.scope = PID_DIR.into();
        let inst = Instance::open(ident, pid, pidfd)?
            .relabel(format!("{PID_DIR}/{pid}"))
            .ok_or_else(gone)?;
        let inst = Arc::new(inst);
        if pids.len() >= MAX_PID_VIEWS
            && let Some(oldest) = pids.iter().min_by_key(|(_, v)| v.used).map(|(p, _)| *p)
            && let Some(v) = pids.remove(&oldest)
        {
            self.drop_pid_view(&v.inst);
        }
        pids.insert(
            pid,
            PidView {
                inst: inst.clone(),
                used: std::time::Instant::now(),
            },
        );
        drop(pids);
        if let Some(rt) = self.tokio.get() {
            let reg = self.clone();
            let watched = inst.clone();
            rt.spawn(async move {
                let Some(pidfd) = watched.pidfd_arc() else {
                    return;
                };
                if crate::runtime::wait_exit(pidfd, &watched.retired).await {
                    reg.forget_pid(&watched);
                }
            });
        }
        debug!("process {pid}: served at {PID_DIR}/{pid}");
        Ok(inst)
    }

    fn forget_pid(self: &Arc<Self>, inst: &Arc<Instance>) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if pids.get(&inst.pid).is_some_and(|v| v.inst.seq == inst.seq) {
            pids.remove(&inst.pid);
        }
        drop(pids);
        self.drop_pid_view(inst);
    }

    fn drop_pid_view(self: &Arc<Self>, inst: &Arc<Instance>) {
        self.retire_all(vec![(inst.clone(), false)]);
        // Invalidated from the runtime thread, never from a FUSE thread (an eviction happens
        // inside a lookup in `.pid`, whose directory lock the kernel needs to invalidate).
        let Some(rt) = self.tokio.get() else { return };
        let (reg, name) = (self.clone(), inst.ident.name.clone());
        rt.spawn(async move {
            if let Some(n) = reg.notifier.get() {
                let _ = n.inval_entry(INodeNo(reg.view().pid_dir), OsStr::new(&name));
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn add_child(view: &mut View, dir: u64, name: &str, e: VEntry) {
    if let Some(d) = view.dirs.get_mut(&dir) {
        d.children.entry(name.to_string()).or_insert(e);
    }
}

/// How a container is described in log lines and attributes: "docker", "podman-rootless
/// (alice)", "containerd (k8s.io)".
pub fn describe(ident: &Identity) -> String {
    if ident.scope.is_empty() {
        ident.runtime.as_str().to_string()
    } else {
        format!("{} ({})", ident.runtime.as_str(), ident.scope)
    }
}

/// The qualifier after `@`: which runtime (or rootless user, or containerd namespace).
fn qualifier(ident: &Identity) -> &str {
    match ident.runtime {
        Runtime::PodmanRootless => &ident.scope,
        Runtime::Containerd if ident.scope != "default" => &ident.scope,
        r => r.as_str(),
    }
}

/// `<name>@<qualifier>`, for containers that are not Kubernetes containers.
fn qualified(ident: &Identity) -> Option<String> {
    if ident.k8s.is_some() || ident.runtime == Runtime::Static {
        return None;
    }
    Some(format!("{}@{}", ident.name, qualifier(ident)))
}

/// The names a container may be shown under, best first. Each component is a valid name.
fn candidates(ident: &Identity) -> Vec<String> {
    let id12 = short_id(&ident.id).replace(['/', '\0'], "_");
    let mut out = Vec::new();
    if let Some(k) = &ident.k8s {
        let comps = [&k.namespace, &k.pod, &k.container];
        if comps.iter().all(|c| invalid_name(c).is_none()) {
            let p = format!("{K8S_DIR}/{}/{}/{}", k.namespace, k.pod, k.container);
            out.push(format!("{p}~{id12}"));
            out.insert(0, p);
        }
    } else {
        let bare = match ident.runtime {
            Runtime::Static | Runtime::Docker | Runtime::Podman => true,
            Runtime::Containerd => ident.scope == "default",
            Runtime::PodmanRootless | Runtime::Pid => false,
        };
        if bare {
            out.push(ident.name.clone());
        }
        if let Some(q) = qualified(ident) {
            out.push(format!("{q}~{id12}"));
            out.insert(out.len() - 1, q);
        } else {
            out.push(format!("{}~{id12}", ident.name));
        }
    }
    out.retain(|p| p.split('/').all(|c| invalid_name(c).is_none()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(rt: Runtime, scope: &str, id: &str, name: &str) -> Identity {
        let mut i = Identity::new(rt, id, name);
        i.scope = scope.into();
        i
    }

    #[test]
    fn candidate_names() {
        let d = ident(Runtime::Docker, "", "3f2a9c0d11aa22bb", "web");
        assert_eq!(
            candidates(&d),
            ["web", "web@docker", "web@docker~3f2a9c0d11aa"]
        );
        let r = ident(Runtime::PodmanRootless, "alice", "77aa", "web");
        assert_eq!(candidates(&r), ["web@alice", "web@alice~77aa"]);
        let c = ident(Runtime::Containerd, "default", "c1", "db");
        assert_eq!(candidates(&c), ["db", "db@containerd", "db@containerd~c1"]);
        let n = ident(Runtime::Containerd, "team", "c2", "db");
        assert_eq!(candidates(&n), ["db@team", "db@team~c2"]);
        let mut k = ident(Runtime::Containerd, "k8s.io", "c3", "ignored");
        k.k8s = Some(crate::instance::PodRef {
            namespace: "default".into(),
            pod: "api-7d9".into(),
            container: "api".into(),
        });
        assert_eq!(
            candidates(&k),
            ["k8s/default/api-7d9/api", "k8s/default/api-7d9/api~c3"]
        );
        let s = ident(Runtime::Static, "", "pid:5", "web");
        assert_eq!(candidates(&s), ["web", "web~pid:5"]);
    }
}
