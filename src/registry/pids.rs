//! The `.pid/<PID>` views: any process's root, opened when first looked up, held in a bounded
//! cache (least recently used first out) and dropped when the process exits.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log::debug;

use crate::container::{Identity, Runtime};
use crate::instance::{Instance, gone};
use crate::pidfd::pin;

use super::PID_DIR;

/// At most this many `.pid/<PID>` views are held at once (each holds two fds); the least
/// recently looked up is dropped first.
pub const MAX_PID_VIEWS: usize = 128;

/// One held view and when it was last looked up (for eviction).
struct PidView {
    inst: Arc<Instance>,
    used: Instant,
}

/// The held `.pid` views, by PID.
#[derive(Default)]
pub struct PidViews {
    /// PID -> its view; at most [`MAX_PID_VIEWS`] entries.
    views: Mutex<HashMap<i32, PidView>>,
}

/// What [`PidViews::lookup`] found.
pub struct Lookup {
    /// The view of the PID.
    pub inst: Arc<Instance>,
    /// True if it was opened by this lookup (it needs an exit watcher).
    pub opened: bool,
    /// The least recently used view, pushed out to keep within [`MAX_PID_VIEWS`]; the caller
    /// retires it.
    pub evicted: Option<Arc<Instance>>,
}

impl PidViews {
    /// The view of `pid`: the held one if it is current and its process runs, else a new one
    /// from `open` (under the cache's lock, so two lookups of one PID open it once).
    ///
    /// # Errors
    ///
    /// What `open` answers.
    pub fn lookup(
        &self,
        pid: i32,
        open: impl FnOnce(i32) -> io::Result<Instance>,
    ) -> io::Result<Lookup> {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = views.get_mut(&pid) {
            if v.inst.is_current() && !v.inst.process_exited() {
                v.used = Instant::now();
                return Ok(Lookup {
                    inst: v.inst.clone(),
                    opened: false,
                    evicted: None,
                });
            }
            // Its exit watcher (or whoever retired it) does the rest.
            views.remove(&pid);
        }
        let inst = Arc::new(open(pid)?);
        let mut evicted = None;
        if views.len() >= MAX_PID_VIEWS
            && let Some(oldest) = views.iter().min_by_key(|(_, v)| v.used).map(|(p, _)| *p)
        {
            evicted = views.remove(&oldest).map(|v| v.inst);
        }
        let view = PidView {
            inst: inst.clone(),
            used: Instant::now(),
        };
        views.insert(pid, view);
        Ok(Lookup {
            inst,
            opened: true,
            evicted,
        })
    }

    /// Drops the view `inst` if it is still the one held for its PID.
    pub fn forget(&self, inst: &Instance) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if views.get(&inst.pid).is_some_and(|v| v.inst.seq == inst.seq) {
            views.remove(&inst.pid);
        }
    }
}

/// Opens the view of process `pid`, shown at `.pid/<pid>`.
///
/// # Errors
///
/// ENOENT whenever the process cannot be shown: there is no such process, it exited while
/// being opened (the pidfd check answers ESRCH), or its root or mount table cannot be read (a
/// process on its way out). A lookup of a name that cannot be shown answers "no such file",
/// whatever the reason; the reason is logged at debug level.
pub fn open(pid: i32) -> io::Result<Instance> {
    if pid <= 0 {
        return Err(gone());
    }
    let not_shown = |e: io::Error| {
        debug!("process {pid}: not shown at {PID_DIR}/{pid}: {e}");
        gone()
    };
    // A thread that is not its process's main thread (`/proc/<tid>` works for it too) is
    // pinned as a thread: the view lives as long as that thread.
    let pidfd = match pin(pid) {
        // EINVAL on older kernels, ENOENT on newer ones: "not a thread-group leader".
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
            crate::pidfd::pin_thread(pid)
        }
        r => r,
    }
    .map_err(not_shown)?;
    let mut ident = Identity::new(Runtime::Pid, format!("pid:{pid}"), pid.to_string());
    ident.scope = PID_DIR.into();
    Instance::open(ident, pid, pidfd)
        .map_err(not_shown)?
        .relabel(format!("{PID_DIR}/{pid}"))
        .ok_or_else(gone)
}
