//! The registry: container name -> live [`Instance`], fed by the runtime watchers and read by
//! the FUSE handlers.
//!
//! Handlers only ever take a short read lock here; they never wait on a runtime API. Every
//! change retires the replaced instance (its inodes answer ENOENT from then on) and asks the
//! kernel to forget the affected names under the mount root, so a new instance is looked up
//! afresh at once instead of after the entry TTL.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::{Arc, OnceLock, RwLock};

use fuser::{INodeNo, Notifier};
use log::{debug, info, warn};

use crate::instance::Instance;

/// The FUSE inode number of the mount root.
pub const ROOT_INO: u64 = 1;

type RetireHook = Box<dyn Fn(&Instance) + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    by_name: RwLock<BTreeMap<String, Arc<Instance>>>,
    notifier: OnceLock<Notifier>,
    on_retire: OnceLock<RetireHook>,
}

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

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Lets the registry invalidate kernel dentries once the FUSE session exists.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Called for every retired instance (the filesystem drops fds it cached for it).
    pub fn set_on_retire(&self, hook: RetireHook) {
        let _ = self.on_retire.set(hook);
    }

    pub fn get(&self, name: &OsStr) -> Option<Arc<Instance>> {
        let name = name.to_str()?;
        self.read().get(name).cloned()
    }

    /// All instances, sorted by name.
    pub fn snapshot(&self) -> Vec<Arc<Instance>> {
        self.read().values().cloned().collect()
    }

    /// The instance a runtime knows by `id`, if it is registered.
    pub fn find_id(&self, runtime: &str, id: &str) -> Option<Arc<Instance>> {
        self.read()
            .values()
            .find(|i| i.ident.runtime == runtime && i.ident.id == id)
            .cloned()
    }

    /// Registers `inst`, replacing any instance with its name or its runtime id.
    /// Returns false (and retires `inst`) if the name belongs to a `--container` entry, which
    /// always wins over a runtime's container of the same name.
    pub fn insert(&self, inst: Arc<Instance>) -> bool {
        let mut gone = Vec::new();
        {
            let mut map = self.write();
            if let Some(existing) = map.get(inst.name())
                && existing.ident.runtime == "static"
                && inst.ident.runtime != "static"
            {
                drop(map);
                warn!(
                    "{} container {} ({}) is not shown: --container {} holds that name",
                    inst.ident.runtime,
                    inst.name(),
                    inst.short_id(),
                    inst.name()
                );
                inst.retire();
                return false;
            }
            map.retain(|name, old| {
                let same = name == inst.name()
                    || (old.ident.runtime == inst.ident.runtime && old.ident.id == inst.ident.id);
                if same {
                    gone.push(old.clone());
                }
                !same
            });
            map.insert(inst.name().to_string(), inst.clone());
        }
        info!(
            "container {} ({} {}, pid {}) is served",
            inst.name(),
            inst.ident.runtime,
            inst.short_id(),
            inst.pid
        );
        self.finish(gone, Some(inst.name()));
        true
    }

    /// Drops the instance with this `seq` (its process exited).
    pub fn remove_seq(&self, seq: u64) {
        self.remove_where(|i| i.seq == seq, "its process exited");
    }

    /// Drops a runtime's container (it stopped or was removed).
    pub fn remove_id(&self, runtime: &str, id: &str, why: &str) {
        self.remove_where(|i| i.ident.runtime == runtime && i.ident.id == id, why);
    }

    /// Drops every instance of `runtime` for which `keep` is false (full re-list).
    pub fn retain_runtime(&self, runtime: &str, keep: impl Fn(&Instance) -> bool) {
        self.remove_where(
            |i| i.ident.runtime == runtime && !keep(i),
            "the runtime no longer lists it",
        );
    }

    fn remove_where(&self, pred: impl Fn(&Instance) -> bool, why: &str) {
        let mut gone = Vec::new();
        self.write().retain(|_, inst| {
            let hit = pred(inst);
            if hit {
                gone.push(inst.clone());
            }
            !hit
        });
        for inst in &gone {
            info!(
                "container {} ({} {}) is gone: {why}",
                inst.name(),
                inst.ident.runtime,
                inst.short_id()
            );
        }
        self.finish(gone, None);
    }

    /// Retires replaced instances and invalidates their names (and `also`) in the kernel.
    fn finish(&self, gone: Vec<Arc<Instance>>, also: Option<&str>) {
        for inst in &gone {
            inst.retire();
            if let Some(hook) = self.on_retire.get() {
                hook(inst);
            }
        }
        let names = gone.iter().map(|i| i.name()).chain(also);
        if let Some(notifier) = self.notifier.get() {
            for name in names {
                // ENOENT only means the kernel had nothing cached under that name.
                if let Err(e) = notifier.inval_entry(INodeNo(ROOT_INO), OsStr::new(name)) {
                    debug!("invalidate {name}: {e}");
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Instance>>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Instance>>> {
        self.by_name.write().unwrap_or_else(|e| e.into_inner())
    }
}
