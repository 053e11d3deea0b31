//! `--container NAME=PID`: serve any process's root under a name the user chose. This reaches
//! containers of any runtime (LXC, nspawn, sandboxes) and plain processes with their own mount
//! namespace. The entry disappears when the process exits.

use std::sync::Arc;

use crate::cli::StaticContainer;
use crate::error::StartError;
use crate::instance::{Identity, Instance, Runtime, pin};
use crate::registry::Registry;

pub fn register(
    registry: &Arc<Registry>,
    containers: &[StaticContainer],
) -> Result<(), StartError> {
    for c in containers {
        let bad = |e: std::io::Error| StartError::BadContainer {
            arg: format!("{}={}", c.name, c.pid),
            reason: format!("process {}: {e}", c.pid),
        };
        let pidfd = pin(c.pid).map_err(bad)?;
        let ident = Identity::new(Runtime::Static, format!("pid:{}", c.pid), c.name.clone());
        let inst = Instance::open(ident, c.pid, pidfd).map_err(bad)?;
        super::serve(registry, inst);
    }
    Ok(())
}
