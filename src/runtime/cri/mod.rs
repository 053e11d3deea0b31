//! The Container Runtime Interface: a Kubernetes node's runtime, as the kubelet sees it, through
//! `runtime.v1.RuntimeService` on its socket: CRI-O's ([`CRIO_SOCKET`]), or containerd's CRI
//! plugin (on containerd's own socket, used through CRI only when containerd's own API is not
//! watched: see [`crate::runtime::detect`]).
//!
//! Subscribes to `GetContainerEvents` first, then lists every container (`ListContainers`);
//! each one that changed is asked about with a verbose `ContainerStatus` (its state, main PID,
//! log path, sandbox) and its pod sandbox's status (the pod's namespace and name). Runtimes
//! without the event stream (containerd before 1.7 answers UNIMPLEMENTED) are re-listed every
//! [`POLL`] instead, as the kubelet's own generic PLEG does; with the stream, a full re-list
//! runs every `resync` as a safety net. Pod sandboxes are never shown; every container is
//! named `k8s/<namespace>/<pod>/<container>`.
//!
//! A stopped container is served from its layers when the runtime says where they are:
//! containerd's CRI plugin names the container's snapshot, which containerd's own snapshot
//! service (same socket, namespace [`CONTAINERD_NAMESPACE`]) turns into overlay layers. CRI-O
//! does not say, so its stopped containers are listed without their files.

mod client;
mod parse;
pub mod proto;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use tonic::{Code, Status};

use super::{Found, Inspect, containerd};
use crate::container::{Identity, Runtime};
use crate::layers::Storage;
use crate::registry::Registry;
pub use client::{CALL_TIMEOUT, Client};
use parse::{RUNNING, details, identity, running, stopped};

/// CRI-O's socket.
pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";
/// The containerd namespace of containerd's CRI plugin (fixed in containerd).
pub const CONTAINERD_NAMESPACE: &str = "k8s.io";
/// How often a runtime without the event stream is re-listed.
pub const POLL: Duration = Duration::from_secs(1);
/// Without the event stream, a container that runs but could not be served (it changed while
/// being acquired, its root could not be opened) is asked about again every this many re-lists,
/// not every [`POLL`] (each failure logs a line).
const RETRY_EVERY: u32 = 3;
/// `ContainerEventType` DELETED (api.proto).
const DELETED: i32 = 3;

/// Runs forever: connect, list, follow events (or re-list); on failure wait and reconnect.
pub async fn watch(registry: Arc<Registry>, socket: PathBuf, resync: Duration) {
    let label = format!("cri ({})", socket.display());
    super::reconnect_forever(&label, || follow(&registry, &socket, resync)).await
}

/// One connected CRI runtime: the CRI client, containerd's snapshot service on the same
/// socket (answers only if the runtime is containerd), and the socket as the scope of every
/// container it reports.
struct Cri {
    client: Client,
    snapshots: containerd::Client,
    scope: String,
}

async fn follow(registry: &Arc<Registry>, socket: &Path, resync: Duration) -> Result<(), String> {
    let client = Client::connect(socket).await?;
    let snapshots = containerd::Client::connect(socket).await?;
    let cri = Cri {
        client,
        snapshots,
        scope: socket.display().to_string(),
    };
    let v = cri.client.version().await.map_err(|s| s.to_string())?;
    // Subscribe before listing, so nothing that happens in between is missed; the stream is
    // read on its own task (a runtime may send its headers only with the first event).
    let sub = cri.client.clone();
    let (mut events, _abort) = super::stream::read_on_task(async move { sub.events().await });
    tokio::task::yield_now().await;
    let mut last: HashMap<String, i32> = HashMap::new();
    sync_all(&cri, registry, &mut last, true)
        .await
        .map_err(|s| s.to_string())?;
    info!(
        "cri ({}): connected to {} {} (CRI {}); following events",
        cri.scope, v.runtime_name, v.runtime_version, v.runtime_api_version
    );
    let mut streaming = true;
    let mut polls: u32 = 0;
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.recv(), if streaming => {
                let ev = match ev {
                    None => return Ok(()),
                    Some(Err(s)) if s.code() == Code::Unimplemented => {
                        info!(
                            "cri ({}): no GetContainerEvents; re-listing every {POLL:?}",
                            cri.scope
                        );
                        streaming = false;
                        tick = tokio::time::interval(POLL);
                        continue;
                    }
                    Some(Err(s)) => return Err(s.to_string()),
                    Some(Ok(ev)) => ev,
                };
                debug!("cri: event {} {}", ev.container_event_type, ev.container_id);
                if ev.container_event_type == DELETED {
                    registry.remove(&cri.key(&ev.container_id), "removed");
                } else {
                    reconcile(&cri, registry, &ev.container_id)
                        .await
                        .map_err(|s| s.to_string())?;
                }
            },
            _ = tick.tick() => {
                polls = polls.wrapping_add(1);
                let retry = streaming || polls.is_multiple_of(RETRY_EVERY);
                sync_all(&cri, registry, &mut last, retry)
                    .await
                    .map_err(|s| s.to_string())?
            },
        }
    }
}

impl Cri {
    fn key(&self, id: &str) -> Identity {
        Identity::key(Runtime::Cri, &self.scope, id)
    }

    /// Where a container's layers are, if the runtime names its snapshot (containerd).
    async fn storage(&self, d: &parse::Details) -> Option<Storage> {
        let (snapshotter, key) = d.snapshot.as_ref()?;
        let ns = CONTAINERD_NAMESPACE;
        Some(
            containerd::snapshot_storage(&self.snapshots, ns, snapshotter, key)
                .await
                .unwrap_or_else(|s| {
                    Storage::Unavailable(format!("containerd's snapshot service: {}", s.message()))
                }),
        )
    }

    /// The pod sandbox of container `id`: from its verbose details, else from the list.
    async fn sandbox_of(&self, id: &str, d: &parse::Details) -> Result<Option<String>, Status> {
        if let Some(s) = &d.sandbox_id {
            return Ok(Some(s.clone()));
        }
        let req = proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                id: id.into(),
                ..Default::default()
            }),
        };
        let r: proto::ListContainersResponse = self.client.call("ListContainers", req).await?;
        Ok(r.containers.into_iter().next().map(|c| c.pod_sandbox_id))
    }

    /// What the runtime says about container `id` now.
    async fn inspect_id(&self, id: &str, with_stopped: bool) -> Result<Found, Status> {
        let Some(r) = self.client.status(id).await? else {
            return Ok(Found::Hidden);
        };
        let Some(s) = r.status else {
            return Ok(Found::Hidden);
        };
        let d = details(&r.info);
        let Some(sandbox) = self.sandbox_of(id, &d).await? else {
            return Ok(Found::Hidden);
        };
        let Some(pod) = self
            .client
            .sandbox(&sandbox)
            .await?
            .and_then(|p| p.metadata)
        else {
            return Ok(Found::Hidden);
        };
        let Some(ident) = identity(&self.scope, &s, &pod) else {
            debug!("cri container {id}: no pod namespace, pod or container name; not shown");
            return Ok(Found::Hidden);
        };
        if running(&s, &d) {
            let pid = d.pid.unwrap_or(0);
            return Ok(Found::Running(ident, pid, self.storage(&d).await));
        }
        if !with_stopped {
            return Ok(Found::Hidden);
        }
        let storage = self.storage(&d).await.unwrap_or_else(|| {
            Storage::Unavailable("the CRI runtime does not say where its layers are".into())
        });
        Ok(Found::Stopped(ident, stopped(&s), storage))
    }
}

impl Inspect for Cri {
    type Error = Status;

    async fn inspect(&self, key: &Identity, with_stopped: bool) -> Result<Found, Status> {
        self.inspect_id(&key.id, with_stopped).await
    }

    fn label(&self) -> String {
        format!("cri ({})", self.scope)
    }
}

/// Full re-list: every container whose state changed since the last list (`last`) is asked
/// about again, and, if `retry`, every one not served; what the runtime no longer lists is
/// dropped.
async fn sync_all(
    cri: &Cri,
    registry: &Arc<Registry>,
    last: &mut HashMap<String, i32>,
    retry: bool,
) -> Result<(), Status> {
    let containers = cri.client.containers().await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut now = HashMap::new();
    for c in containers {
        now.insert(c.id.clone(), c.state);
        if c.state != RUNNING && !registry.shows_stopped() {
            continue;
        }
        seen.insert(c.id.clone());
        let fresh = last.get(&c.id) == Some(&c.state)
            && (!retry
                || registry
                    .find(&cri.key(&c.id))
                    .is_some_and(|i| i.is_current()));
        if !fresh {
            reconcile(cri, registry, &c.id).await?;
        }
    }
    *last = now;
    registry.retain(Runtime::Cri, |i| {
        i.scope != cri.scope || seen.contains(&i.id)
    });
    Ok(())
}

/// Brings the registry in line with what the runtime says about container `id`.
async fn reconcile(cri: &Cri, registry: &Arc<Registry>, id: &str) -> Result<(), Status> {
    match cri.inspect_id(id, registry.shows_stopped()).await? {
        Found::Hidden => registry.remove(&cri.key(id), "not running"),
        Found::Stopped(ident, stopped, storage) => {
            super::serve_stopped(registry, ident, stopped, storage, None)
        }
        Found::Running(ident, pid, storage) => {
            super::acquire(cri, registry, ident, pid, storage).await?
        }
    }
    Ok(())
}
