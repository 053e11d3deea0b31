//! `--container NAME=PID`: serve any process's root under a name the user chose. This reaches
//! containers of any runtime (LXC, nspawn, sandboxes) and plain processes with their own mount
//! namespace. The entry disappears when the process exits.
//!
//! The argument is parsed here ([`parse_container`]), next to the one user of what it says.

use std::sync::Arc;

use crate::container::{Identity, Runtime};
use crate::error::StartError;
use crate::instance::Instance;
use crate::pidfd::pin;
use crate::registry::{Registry, invalid_name};

/// A static container: a name the user chose and a host PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticContainer {
    /// Shown at the top level under this name (one valid path component).
    pub name: String,
    /// The host PID whose root is shown.
    pub pid: i32,
}

/// Parses `NAME=PID`. NAME must be usable as one path component.
///
/// # Errors
///
/// [`StartError::BadContainer`] naming the argument and what is wrong with it.
pub fn parse_container(arg: &str) -> Result<StaticContainer, StartError> {
    let bad = |reason: &str| StartError::BadContainer {
        arg: arg.to_string(),
        reason: reason.to_string(),
    };
    let (name, pid) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=PID"))?;
    if let Some(reason) = invalid_name(name) {
        return Err(bad(&format!("name {name:?} {reason}")));
    }
    let pid: i32 = pid
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(&format!("{pid:?} is not a process id")))?;
    Ok(StaticContainer {
        name: name.to_string(),
        pid,
    })
}

/// Serves every `--container` entry. There is no runtime to ask again, so the pidfd is taken
/// and checked once more after the root is opened ([`Instance::open`]).
///
/// # Errors
///
/// [`StartError::BadContainer`] for the first process that cannot be pinned or opened.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_arguments() {
        assert_eq!(
            parse_container("web=42").unwrap(),
            StaticContainer {
                name: "web".into(),
                pid: 42
            }
        );
        for bad in [
            "web", "=42", "web=", "web=-1", "web=0", "a/b=1", "..=1", "web=x",
        ] {
            let err = parse_container(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--container {bad}:")), "{err}");
        }
    }
}
