//! Runtime watchers: they feed the registry from outside and never run on a FUSE thread.
//!
//! - [`docker`]: the Docker events stream with a periodic full re-list behind it.
//! - [`static_pids`]: `--container NAME=PID` entries.
//!
//! Every registered instance also gets an exit watcher on its pidfd, so a container whose main
//! process dies disappears at once, even if the runtime's event is late or lost.

pub mod docker;
pub mod static_pids;

use std::sync::Arc;

use log::warn;

use crate::instance::Instance;
use crate::registry::Registry;

/// Registers `inst` and removes it again when its process exits.
pub fn serve(registry: &Arc<Registry>, inst: Instance) {
    let inst = Arc::new(inst);
    if !registry.insert(inst.clone()) {
        return;
    }
    let registry = registry.clone();
    tokio::spawn(async move {
        let fd = match inst.pidfd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                warn!("container {}: cannot watch its pidfd: {e}", inst.name());
                return;
            }
        };
        let afd = match crate::sys::async_readable(fd) {
            Ok(afd) => afd,
            Err(e) => {
                warn!("container {}: cannot watch its pidfd: {e}", inst.name());
                return;
            }
        };
        tokio::select! {
            _ = afd.readable() => registry.remove_seq(inst.seq),
            _ = inst.retired.notified() => {}
        }
    });
}
