//! Runtime watchers: they feed the registry from outside and never run on a FUSE thread.
//!
//! - [`docker`]: Docker and Podman (rootful and rootless), through the Docker API: the events
//!   stream with a periodic full re-list behind it.
//! - [`containerd`]: every containerd namespace, Kubernetes pods among them.
//! - [`cri`]: a Kubernetes node's runtime through the CRI (CRI-O, or containerd's CRI plugin).
//! - [`static_pids`]: `--container NAME=PID` entries.
//! - [`detect`]: which runtimes exist on this host, looked for again as sockets come and go.
//!
//! A runtime plugs in through [`Inspect`] (what it says about one container now) and calls
//! [`acquire`] for a running container: the one race-free acquisition step every runtime
//! shares. An endpoint run by an unprivileged user says so ([`Inspect::owner`]); what it
//! reports is then checked against that user here ([`crate::trust`]), and its answers are
//! bounded ([`bounded`]). Every registered container also gets an exit watcher on its pidfd, so a container
//! whose main process dies disappears at once, even if the runtime's event is late or lost.

pub mod bounded;
pub mod containerd;
pub mod cri;
pub mod detect;
pub mod docker;
mod grpc;
pub mod static_pids;
mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::container::{Identity, PodRef, Stopped, short_id};
use crate::instance::Instance;
use crate::layers::Storage;
use crate::pidfd::{pin, wait_exit};
use crate::registry::{Registry, invalid_name};
use crate::trust::{Owner, process_belongs};

/// What a runtime says about one container.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// It runs: who it is, its main PID, its layers (if the runtime says).
    Running(Identity, i32, Option<Storage>),
    /// It does not run (created, exited, dead).
    Stopped(Identity, Stopped, Storage),
    /// Gone, or not shown (a Kubernetes pod sandbox; a stopped one with `--running-only`).
    Hidden,
}

/// How a runtime plugs in: it says what it knows about one container, now. Its watcher
/// (events, re-lists) is its own; what it shares with every other runtime is [`acquire`].
pub trait Inspect: Sync {
    /// A failure to reach the runtime (the watcher reconnects); problems with one container
    /// are answered as [`Found::Hidden`] or logged instead.
    type Error: Send;

    /// What the runtime says about the container `key` names ([`Identity::key`]: runtime,
    /// scope and id) now. With `with_stopped` false, a container that does not run is
    /// [`Found::Hidden`].
    ///
    /// # Errors
    ///
    /// [`Self::Error`] when the runtime cannot be asked.
    fn inspect(
        &self,
        key: &Identity,
        with_stopped: bool,
    ) -> impl Future<Output = Result<Found, Self::Error>> + Send;

    /// How log lines name this runtime endpoint: "docker (/var/run/docker.sock)".
    fn label(&self) -> String;

    /// The unprivileged user who runs this endpoint (rootless Podman), whose PIDs and paths
    /// are all it may name; `None` for a runtime run by root.
    fn owner(&self) -> Option<&Owner> {
        None
    }
}

/// Why what a runtime says about a container cannot be shown, if it cannot: its name is no
/// usable directory name ([`invalid_name`]), or its id or image holds control characters
/// (they would reach log lines and attributes) or is unreasonably long.
pub fn refuse_identity(ident: &Identity) -> Option<String> {
    if let Some(reason) = invalid_name(&ident.name) {
        return Some(format!("name {:?} {reason}", ident.name));
    }
    let bad = |s: &str, max: usize| s.len() > max || s.chars().any(char::is_control);
    if ident.id.is_empty() || bad(&ident.id, 255) || ident.id.contains('/') {
        return Some(format!("id {:?} is not a usable id", ident.id));
    }
    if bad(&ident.image, 4096) {
        return Some(format!(
            "image {:?} holds control characters or is too long",
            ident.image
        ));
    }
    None
}

/// The one race-free acquisition step, shared by every runtime: `found` is what `runtime` just
/// said about a running container (`ident`, main process `pid`, its layers). Pins `pid` with a
/// pidfd, asks the runtime again (only if it still reports this PID for this container is the
/// pidfd the container's main process), opens the root, and serves it.
///
/// Nothing happens if the container is already served as exactly this; problems with this one
/// container (a name that cannot be a path, a process already gone, a changed answer, a root
/// that cannot be opened) are logged and left to the next event or re-list.
///
/// # Errors
///
/// The runtime's error if it cannot be asked again (the caller reconnects).
pub async fn acquire<R: Inspect>(
    runtime: &R,
    registry: &Arc<Registry>,
    ident: Identity,
    pid: i32,
    storage: Option<Storage>,
) -> Result<(), R::Error> {
    if registry.serves(&ident, pid) {
        return Ok(());
    }
    let (label, id) = (runtime.label(), ident.id.clone());
    if let Some(reason) = refuse_identity(&ident) {
        warn!("{label} container {:?}: {reason}; not shown", ident.id);
        return Ok(());
    }
    let pidfd = match pin(pid) {
        Ok(fd) => fd,
        Err(e) => {
            debug!("{label} container {}: pid {pid}: {e}", ident.name);
            return Ok(());
        }
    };
    if let Some(owner) = runtime.owner() {
        // A user's endpoint may name only the user's own processes: another's root (dockerd's
        // is the host's) must never be served under the user's name.
        if let Err(e) = process_belongs(pid, pidfd.as_fd(), owner.uid) {
            warn!("{label} container {}: pid {pid} refused: {e}", ident.name);
            return Ok(());
        }
    }
    let storage = match runtime.owner() {
        Some(owner) => storage.map(|s| owner.storage(s)),
        None => storage,
    };
    let key = Identity::key(ident.runtime, &ident.scope, &ident.id);
    let now = runtime.inspect(&key, false).await?;
    if now != Found::Running(ident.clone(), pid, storage.clone()) {
        debug!(
            "{label} container {}: changed while acquiring; the next event or re-list retries",
            ident.name
        );
        return Ok(());
    }
    let name = ident.name.clone();
    match Instance::open(ident, pid, pidfd) {
        Ok(inst) => serve(
            registry,
            inst.with_storage(storage)
                .with_owner(runtime.owner().cloned()),
        ),
        Err(e) => warn!(
            "{label} container {name} ({}): cannot open its root: {e}",
            short_id(&id)
        ),
    }
    Ok(())
}

/// Shows a stopped container from its layers, unless it is already shown so (or its name
/// cannot be a path). `owner`: the user whose endpoint reports it; layers outside that user's
/// storage make it listed with the reason it cannot be shown.
pub fn serve_stopped(
    registry: &Arc<Registry>,
    ident: Identity,
    stopped: Stopped,
    storage: Storage,
    owner: Option<&Owner>,
) {
    let storage = match owner {
        Some(o) => o.storage(storage),
        None => storage,
    };
    if registry.serves_stopped(&ident, &stopped, &storage) {
        return;
    }
    if let Some(reason) = refuse_identity(&ident) {
        debug!("stopped container {:?}: {reason}; not shown", ident.id);
        return;
    }
    serve(
        registry,
        Instance::stopped(ident, stopped, storage).with_owner(owner.cloned()),
    );
}

/// Registers `inst` and removes it again when its process exits.
pub fn serve(registry: &Arc<Registry>, inst: Instance) {
    let Some(watch) = registry.insert(inst) else {
        return;
    };
    let Some(pidfd) = watch.pidfd else { return };
    let registry = registry.clone();
    tokio::spawn(async move {
        if wait_exit(pidfd, &watch.cancel).await {
            registry.remove_token(watch.token);
        }
    });
}

/// Seconds since the epoch of an RFC 3339 time as runtimes report it
/// ("2026-11-22T10:05:06.69147866Z").
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Kubernetes labels, as the kubelet sets them (through cri-dockerd, or containerd's CRI):
/// `None` for other containers, `Some(None)` for a pod sandbox ("pause") container.
pub fn kubernetes(labels: &HashMap<String, String>) -> Option<Option<PodRef>> {
    let get = |k: &str| labels.get(k).filter(|v| !v.is_empty());
    let sandbox = labels.get("io.cri-containerd.kind").map(String::as_str) == Some("sandbox")
        || labels.get("io.kubernetes.docker.type").map(String::as_str) == Some("podsandbox");
    let (ns, pod) = (
        get("io.kubernetes.pod.namespace")?,
        get("io.kubernetes.pod.name")?,
    );
    if sandbox {
        return Some(None);
    }
    let container = get("io.kubernetes.container.name")?;
    Some(Some(PodRef {
        namespace: ns.clone(),
        pod: pod.clone(),
        container: container.clone(),
    }))
}

/// Runs `follow` (connect, list, follow events) again and again: when it fails, what is known
/// stays served, one warning is logged (then debug lines until a connection has lasted a
/// minute), and it is retried after 1 s, doubling up to 30 s.
pub async fn reconnect_forever<F, Fut>(label: &str, mut follow: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut backoff = Duration::from_secs(1);
    let mut warned = false;
    loop {
        let started = Instant::now();
        let err = match follow().await {
            Ok(()) => "the event stream ended".to_string(),
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
            warned = false;
        }
        if warned {
            debug!("{label}: {err}; retrying in {backoff:?}");
        } else {
            warn!("{label}: {err}; serving what is known, retrying in {backoff:?}");
            warned = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(
            super::unix_seconds("2026-11-22T10:05:06.69147866Z"),
            Some(1_795_341_906)
        );
        assert_eq!(super::unix_seconds("not a time"), None);
    }
}
