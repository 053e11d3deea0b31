//! The registry: every container the runtime watchers report, and the tree of names under the
//! mountpoint computed from them (the [`View`]).
//!
//! Handlers only ever clone an `Arc<View>` here; they never wait on a runtime API. Every change
//! is worked off in named steps, each costing in proportion to the change, not to the number
//! of containers: settle the paths ([`claims`]), relabel the containers whose path changed and
//! move them in the tree ([`tree::Tree`]), retire what is gone or replaced (their inodes answer
//! ENOENT or ESTALE from then on), publish a snapshot, and ask the kernel to forget the names
//! that changed, so a new instance is looked up afresh at once instead of after the entry TTL.
//!
//! - [`naming`]: the naming rules, pure functions (README, "Naming").
//! - [`claims`]: the same rules kept up to date one change at a time.
//! - [`view`]: the tree of names as handlers read it (snapshots).
//! - [`tree`]: keeps the view, its inode numbers, and the names each change touched.
//! - [`pids`]: the `.pid/<PID>` views, opened on lookup and bounded.

pub mod claims;
mod few;
pub mod naming;
pub mod pids;
pub mod tree;
pub mod view;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use fuser::{INodeNo, Notifier};
use log::{debug, info};

pub use crate::container::describe;
use crate::container::{Identity, Runtime, Stopped};
use crate::instance::Instance;
use crate::layers::Storage;
use claims::{Names, Rank};
pub use naming::invalid_name;
use pids::PidViews;
use tree::{Placed, Tree};
pub use view::{VDir, VEntry, View};

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

/// True for the mount root and every directory or link the registry made up.
pub fn is_virtual(ino: u64) -> bool {
    ino == ROOT_INO || ino & VIRT_BIT != 0
}

type RetireHook = Box<dyn Fn(&Instance) + Send + Sync>;

/// What a runtime watcher needs to notice that a registered container's process exited.
pub struct Watch {
    /// Which registration to drop when the process exits ([`Registry::remove_token`]).
    pub token: u64,
    /// `None` for stopped containers: nothing to watch.
    pub pidfd: Option<Arc<OwnedFd>>,
    /// Woken when the registry drops the container for another reason.
    pub cancel: Arc<tokio::sync::Notify>,
}

/// What tells registered containers apart: runtime, scope and id
/// ([`Identity::same_container`]).
type Key = (Runtime, String, String);

fn key(ident: &Identity) -> Key {
    (ident.runtime, ident.scope.clone(), ident.id.clone())
}

/// One registered container.
struct Entry {
    /// Its registration, for the exit watcher ([`Registry::remove_token`]).
    token: u64,
    /// Its current instance.
    inst: Arc<Instance>,
    /// Its `.diff` view, made when its path is known.
    diff: Option<Arc<Instance>>,
    /// Stops its exit watcher when it is dropped for another reason.
    cancel: Arc<tokio::sync::Notify>,
    /// The alias link pointing at `inst.path()`.
    link: u64,
    /// Its place in the naming order ([`claims`]).
    rank: Rank,
    /// Its registration number: earlier registrations keep contested aliases and leaves.
    reg: u64,
    /// True while the tree lists it (at `inst.path()`).
    placed: bool,
}

impl Entry {
    fn placed(&self) -> Placed {
        Placed {
            inst: self.inst.clone(),
            diff: self.diff.clone(),
            link: self.link,
            reg: self.reg,
        }
    }
}

/// What changes with every registration, under one lock. Every map is kept per change, so no
/// step walks every container (issue 13: 20,000 junk containers of one user).
#[derive(Default)]
struct State {
    /// Every registered container.
    entries: HashMap<Key, Entry>,
    /// Exit-watcher token -> the container it watches.
    tokens: HashMap<u64, Key>,
    /// (runtime, scope) -> how many containers it has registered ([`Registry::count`]).
    counts: HashMap<(Runtime, String), usize>,
    /// The last registration number handed out.
    reg: u64,
    /// Every container's path.
    names: Names,
    /// The tree of names, changed in place and published as snapshots.
    tree: Tree,
}

impl State {
    fn add(&mut self, e: Entry) {
        let k = key(&e.inst.ident);
        self.tokens.insert(e.token, k.clone());
        *self.counts.entry((k.0, k.1.clone())).or_default() += 1;
        self.entries.insert(k, e);
    }

    /// Takes the container `k` out of every map and the tree; the caller settles the names.
    fn take(&mut self, k: &Key) -> Option<Entry> {
        let e = self.entries.remove(k)?;
        self.tokens.remove(&e.token);
        let ck = (k.0, k.1.clone());
        if let Some(n) = self.counts.get_mut(&ck) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ck);
            }
        }
        self.names.remove(&e.rank);
        if e.placed {
            self.tree.unplace(&e.placed());
        }
        e.cancel.notify_one();
        Some(e)
    }
}

/// Every container the watchers report, by name; see the module documentation.
#[derive(Default)]
pub struct Registry {
    /// The registrations; writers (watchers) take this lock.
    state: Mutex<State>,
    /// The published view, read by FUSE handlers without touching `state`.
    view: RwLock<Arc<View>>,
    /// The `.pid/<PID>` views, apart from the registrations (they have no runtime).
    pids: PidViews,
    /// True with `--running-only`: watchers do not register stopped containers.
    hide_stopped: AtomicBool,
    /// Invalidates the kernel's entries; set once the FUSE session exists.
    notifier: OnceLock<Notifier>,
    /// Called for every retired instance (the filesystem drops fds it cached for it).
    on_retire: OnceLock<RetireHook>,
    /// Where exit watchers of `.pid` views run, and invalidations that must not run on a FUSE
    /// thread.
    tokio: OnceLock<tokio::runtime::Handle>,
    /// The runtimes that have finished a full list at least once ([`Registry::retain`] ends
    /// every full list): readiness (`Type=notify`) waits for the ones present at start.
    listed: Mutex<std::collections::HashSet<Runtime>>,
}

impl Registry {
    /// An empty registry: the root with `.pid` and `.diff` only.
    pub fn new() -> Arc<Registry> {
        let reg = Registry::default();
        reg.settle(&mut reg.lock(), Vec::new());
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
        self.hide_stopped.store(hide, Ordering::Relaxed);
    }

    /// True unless `--running-only`: watchers register stopped containers.
    pub fn shows_stopped(&self) -> bool {
        !self.hide_stopped.load(Ordering::Relaxed)
    }

    /// The current tree of names.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The served instance of the container `ident` names, if any.
    pub fn find(&self, ident: &Identity) -> Option<Arc<Instance>> {
        self.lock().entries.get(&key(ident)).map(|e| e.inst.clone())
    }

    /// How many containers of `runtime` in `scope` are registered.
    pub fn count(&self, runtime: Runtime, scope: &str) -> usize {
        let k = (runtime, scope.to_string());
        self.lock().counts.get(&k).copied().unwrap_or(0)
    }

    /// True if the container `ident` is served (its instance current, with a process) as
    /// exactly this identity and PID.
    pub fn serves(&self, ident: &Identity, pid: i32) -> bool {
        self.find(ident)
            .is_some_and(|i| i.is_current() && i.has_process() && i.pid == pid && i.ident == *ident)
    }

    /// True if the container `ident` is shown stopped, as exactly this identity, end and
    /// storage.
    pub fn serves_stopped(&self, ident: &Identity, stopped: &Stopped, storage: &Storage) -> bool {
        self.find(ident).is_some_and(|i| {
            i.is_current()
                && i.stopped_state() == Some(stopped)
                && i.ident == *ident
                && i.storage.as_deref() == Some(storage)
        })
    }

    /// Registers `inst`, replacing any instance of the same container. Returns what its exit
    /// watcher needs, or `None` if it could not be registered.
    pub fn insert(&self, inst: Instance) -> Option<Watch> {
        let mut st = self.lock();
        let k = key(&inst.ident);
        let mut gone = Vec::new();
        if let Some(old) = st.take(&k) {
            // Replaced by the new instance: the kernel looks the path up again.
            gone.push((old.inst, true));
            gone.extend(old.diff.map(|d| (d, true)));
        }
        let inst = Arc::new(inst);
        let watch = Watch {
            token: inst.seq,
            pidfd: inst.pidfd_arc(),
            cancel: Arc::new(tokio::sync::Notify::new()),
        };
        let rank = st.names.add(&inst.ident, inst.has_process());
        st.reg += 1;
        let reg = st.reg;
        st.add(Entry {
            token: watch.token,
            inst,
            diff: None,
            cancel: watch.cancel.clone(),
            link: 0,
            rank,
            reg,
            placed: false,
        });
        self.settle(&mut st, gone);
        // Retired before it could be placed: it holds no name (its remover may never come).
        if st.entries.get(&k).is_some_and(|e| !e.placed) {
            st.take(&k);
            self.settle(&mut st, Vec::new());
        }
        let served = st.entries.get(&k).filter(|e| e.placed);
        served.inspect(|e| log_served(&e.inst));
        let served = served.is_some();
        drop(st);
        served.then_some(watch)
    }

    /// Drops the container registered as `token` (its process exited).
    pub fn remove_token(&self, token: u64) {
        let mut st = self.lock();
        let k = st.tokens.get(&token).cloned();
        self.remove_keys(&mut st, k.into_iter().collect(), "its process exited");
    }

    /// Drops a runtime's container (it stopped or was removed).
    pub fn remove(&self, ident: &Identity, why: &str) {
        self.remove_keys(&mut self.lock(), vec![key(ident)], why);
    }

    /// Drops every container of `runtime` for which `keep` is false (full re-list).
    /// Every watcher calls it at the end of each full list, which also marks `runtime` as
    /// listed ([`Registry::has_listed`]).
    pub fn retain(&self, runtime: Runtime, keep: impl Fn(&Identity) -> bool) {
        let mut st = self.lock();
        let unlisted: Vec<Key> = st
            .entries
            .iter()
            .filter(|(k, e)| k.0 == runtime && !keep(&e.inst.ident))
            .map(|(k, _)| k.clone())
            .collect();
        self.remove_keys(&mut st, unlisted, "the runtime no longer lists it");
        drop(st);
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(runtime);
    }

    /// True once a watcher of `runtime` has finished a full list (its containers are in the
    /// tree of names).
    pub fn has_listed(&self, runtime: Runtime) -> bool {
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&runtime)
    }

    fn remove_keys(&self, st: &mut State, keys: Vec<Key>, why: &str) {
        let mut gone = Vec::new();
        for k in keys {
            let Some(e) = st.take(&k) else { continue };
            info!(
                "container {} ({} {}) is gone: {why}",
                e.inst.path(),
                describe(&e.inst.ident),
                e.inst.short_id()
            );
            gone.push((e.inst, false));
            gone.extend(e.diff.map(|d| (d, false)));
        }
        if gone.is_empty() {
            return;
        }
        self.settle(st, gone);
    }

    /// Settles the paths after a change and relabels the containers whose path changed (and
    /// places the new ones). Retires `retire` (each flagged whether another instance took its
    /// place) and the relabelled instances *before* the new view is published, so once a
    /// listing shows the change no old instance is served; then tells the kernel what changed.
    fn settle(&self, st: &mut State, retire: Vec<(Arc<Instance>, bool)>) {
        let moved = st.names.settle();
        let replaced = relabel_moved(st, moved);
        self.retire_all(retire);
        self.retire_all(replaced.into_iter().map(|i| (i, true)).collect());
        let (view, stale) = st.tree.publish();
        let view = Arc::new(view);
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
        self.invalidate(&stale);
    }

    /// Asks the kernel to forget every name whose answer changed.
    fn invalidate(&self, stale: &[(u64, String)]) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        for (dir, name) in stale {
            // ENOENT only means the kernel had nothing cached under that name.
            if let Err(e) = notifier.inval_entry(INodeNo(*dir), OsStr::new(name)) {
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
    ///
    /// # Errors
    ///
    /// ENOENT if the process cannot be shown (see [`pids::open`]).
    pub fn pid_instance(self: &Arc<Self>, pid: i32) -> io::Result<Arc<Instance>> {
        let found = self.pids.lookup(pid, pids::open)?;
        if let Some(old) = &found.evicted {
            self.drop_pid_view(old);
        }
        let inst = found.inst;
        if !found.opened {
            return Ok(inst);
        }
        if let Some(rt) = self.tokio.get() {
            let reg = self.clone();
            let watched = inst.clone();
            rt.spawn(async move {
                let Some(pidfd) = watched.pidfd_arc() else {
                    return;
                };
                if crate::pidfd::wait_exit(pidfd, &watched.retired).await {
                    reg.pids.forget(&watched);
                    reg.drop_pid_view(&watched);
                }
            });
        }
        debug!("process {pid}: served at {PID_DIR}/{pid}");
        Ok(inst)
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

/// Gives every entry whose path changed (and every new one) a new instance at its new path,
/// a new `.diff` view and alias link, and moves it in the tree; returns the instances that
/// were replaced. An instance retired meanwhile is left unlisted: its remover is on its way.
fn relabel_moved(st: &mut State, moved: Vec<Rank>) -> Vec<Arc<Instance>> {
    let mut replaced = Vec::new();
    for rank in moved {
        let Some(path) = st.names.path(&rank).map(str::to_string) else {
            continue;
        };
        let k = rank.key();
        let link = st.tree.alloc();
        let State { entries, tree, .. } = st;
        let Some(e) = entries.get_mut(&k) else {
            continue;
        };
        if e.placed {
            tree.unplace(&e.placed());
            e.placed = false;
        }
        if !e.inst.path().is_empty() && e.inst.path() != path {
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
        let diff = Arc::new(e.inst.diff_view(format!("{DIFF_DIR}/{path}")));
        replaced.extend(e.diff.replace(diff));
        e.link = link;
        tree.place(&e.placed());
        e.placed = true;
    }
    replaced
}

/// The log line of a container that starts being shown.
fn log_served(i: &Instance) {
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
            s.describe()
        ),
        (Some(s), Some(why)) => log::warn!(
            "container {} ({} {}) is {} and its files cannot be shown: {why}",
            i.path(),
            describe(&i.ident),
            i.short_id(),
            s.state
        ),
    }
}

#[cfg(test)]
mod tests;
