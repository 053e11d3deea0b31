//! containerd: every namespace (nerdctl's `default`, Kubernetes' `k8s.io`, any other), through
//! its gRPC API on `/run/containerd/containerd.sock`. Lists containers and their tasks, then
//! follows the event stream (task start/exit/delete, container create/update/delete); re-lists
//! every `resync` as a safety net, and reconnects with backoff like the Docker watcher.
//!
//! The namespace `moby` is skipped: those are Docker's containers, served through Docker's API
//! with the names `docker ps` shows.
//!
//! The few protobuf messages used are declared in [`proto`] with `prost` derives (field numbers
//! from containerd's published API), so building ctrfsd needs no `protoc`; [`Client`] makes the
//! calls, and `parse` reads the answers without I/O.

mod client;
mod parse;
pub mod proto;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use tonic::Status;

use super::{Found, Inspect};
use crate::container::{Identity, Runtime};
use crate::layers::Storage;
use crate::registry::Registry;
pub use client::Client;
use parse::{identity, live, stopped, storage_of};

/// containerd's default socket.
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// Docker's namespace in a shared containerd.
const DOCKER_NAMESPACE: &str = "moby";

/// Task and container events after which the container is looked up again.
const TOPICS: &[&str] = &[
    "/tasks/start",
    "/tasks/exit",
    "/tasks/delete",
    "/tasks/paused",
    "/tasks/resumed",
    "/containers/create",
    "/containers/update",
    "/containers/delete",
];

fn key(ns: &str, id: &str) -> Identity {
    Identity::key(Runtime::Containerd, ns, id)
}

/// Runs forever: connect, sync, follow events; on failure wait and reconnect.
pub async fn watch(registry: Arc<Registry>, socket: PathBuf, resync: Duration) {
    let label = format!("containerd ({})", socket.display());
    super::reconnect_forever(&label, || follow(&registry, &socket, resync)).await
}

async fn follow(registry: &Arc<Registry>, socket: &Path, resync: Duration) -> Result<(), String> {
    let client = Client::connect(socket).await?;
    // Subscribe before listing, so nothing that happens in between is missed. containerd sends
    // the stream's headers only with its first event, so the stream is read on its own task.
    let sub = client.clone();
    let (mut events, _abort) = super::stream::read_on_task(async move { sub.subscribe().await });
    tokio::task::yield_now().await;
    sync_all(&client, registry)
        .await
        .map_err(|s| s.to_string())?;
    info!(
        "containerd ({}): connected; following events",
        socket.display()
    );
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let env = match ev {
                    None => return Ok(()),
                    Some(Err(s)) => return Err(s.to_string()),
                    Some(Ok(env)) => env,
                };
                if env.namespace == DOCKER_NAMESPACE || !TOPICS.contains(&env.topic.as_str()) {
                    continue;
                }
                let Some(any) = env.event else { continue };
                let Ok(ev) = <proto::ContainerEvent as prost::Message>::decode(&any.value[..]) else {
                    continue;
                };
                debug!("containerd: {} {} {}", env.namespace, env.topic, ev.container_id);
                if env.topic == "/containers/delete" {
                    registry.remove(&key(&env.namespace, &ev.container_id), "removed");
                } else {
                    reconcile(&client, registry, &env.namespace, &ev.container_id)
                        .await
                        .map_err(|s| s.to_string())?;
                }
            },
            _ = tick.tick() => sync_all(&client, registry).await.map_err(|s| s.to_string())?,
        }
    }
}

/// Full re-list of every namespace: serve every container (live tasks from their process,
/// the others from their snapshot unless `--running-only`), drop what containerd no longer has.
async fn sync_all(client: &Client, registry: &Arc<Registry>) -> Result<(), Status> {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for ns in client.namespaces().await? {
        if ns == DOCKER_NAMESPACE {
            continue;
        }
        let tasks: HashMap<String, proto::Process> = client
            .tasks(&ns)
            .await?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        let containers = client.containers(&ns).await?;
        debug!(
            "containerd: namespace {ns}: {} containers, {} tasks",
            containers.len(),
            tasks.len()
        );
        for c in containers {
            let Some(ident) = identity(&ns, &c) else {
                continue;
            };
            let task = tasks.get(&c.id);
            let current = registry.find(&ident);
            let fresh = match task {
                Some(t) if live(t) => registry.serves(&ident, t.pid as i32),
                // Stopped: shown already (its layers do not change while it is stopped)?
                _ => {
                    current.is_some_and(|i| i.is_current() && !i.has_process() && i.ident == ident)
                }
            };
            let shown = task.is_some_and(live) || registry.shows_stopped();
            if shown {
                seen.insert((ns.clone(), c.id.clone()));
            }
            if shown && !fresh {
                reconcile(client, registry, &ns, &c.id).await?;
            }
        }
    }
    registry.retain(Runtime::Containerd, |i| {
        seen.contains(&(i.scope.clone(), i.id.clone()))
    });
    Ok(())
}

/// What containerd says about one container: who it is, and its live task's PID or how it
/// ended and where its layers are.
async fn inspect(client: &Client, ns: &str, id: &str, with_stopped: bool) -> Result<Found, Status> {
    let Some(c) = client.container(ns, id).await? else {
        return Ok(Found::Hidden);
    };
    let Some(ident) = identity(ns, &c) else {
        return Ok(Found::Hidden);
    };
    let task = client.task(ns, id).await?;
    if let Some(t) = &task
        && live(t)
    {
        let storage = storage(client, ns, &c).await?;
        return Ok(Found::Running(ident, t.pid as i32, Some(storage)));
    }
    if !with_stopped {
        return Ok(Found::Hidden);
    }
    let stopped = stopped(task);
    let storage = storage(client, ns, &c).await?;
    Ok(Found::Stopped(ident, stopped, storage))
}

/// Where a container's layers are: its snapshot's mounts, as containerd would mount them.
async fn storage(client: &Client, ns: &str, c: &proto::Container) -> Result<Storage, Status> {
    if c.snapshot_key.is_empty() {
        return Ok(storage_of(c, None));
    }
    let mounts = client.mounts(ns, &c.snapshotter, &c.snapshot_key).await?;
    Ok(storage_of(c, Some(mounts)))
}

/// Where the layers of container snapshot `key` of `snapshotter` in namespace `ns` are: what
/// containerd's CRI plugin names in a container's verbose status (`snapshotKey`,
/// `snapshotter`), asked of containerd's own snapshot service on the same socket.
///
/// # Errors
///
/// The call's status (a missing snapshot is [`Storage::Unavailable`], not an error).
pub async fn snapshot_storage(
    client: &Client,
    ns: &str,
    snapshotter: &str,
    key: &str,
) -> Result<Storage, Status> {
    let c = proto::Container {
        snapshotter: snapshotter.into(),
        snapshot_key: key.into(),
        ..Default::default()
    };
    storage(client, ns, &c).await
}

/// One connected containerd, as the shared acquisition step asks it.
struct Api<'a> {
    client: &'a Client,
}

impl Inspect for Api<'_> {
    type Error = Status;

    async fn inspect(&self, key: &Identity, with_stopped: bool) -> Result<Found, Status> {
        inspect(self.client, &key.scope, &key.id, with_stopped).await
    }

    fn label(&self) -> String {
        "containerd".into()
    }
}

/// Brings the registry in line with what containerd says about `id` in `ns`.
async fn reconcile(
    client: &Client,
    registry: &Arc<Registry>,
    ns: &str,
    id: &str,
) -> Result<(), Status> {
    let (ident, pid, storage) = match inspect(client, ns, id, registry.shows_stopped()).await? {
        Found::Hidden => {
            registry.remove(&key(ns, id), "not running");
            return Ok(());
        }
        Found::Stopped(ident, stopped, storage) => {
            // A task deleted after its exit says less than the task did: keep what we know.
            let known = registry.find(&ident).is_some_and(|i| {
                i.is_current()
                    && i.ident == ident
                    && i.storage.as_deref() == Some(&storage)
                    && stopped.state == "stopped"
                    && i.stopped_state().is_some()
            });
            if !known {
                super::serve_stopped(registry, ident, stopped, storage, None);
            }
            return Ok(());
        }
        Found::Running(ident, pid, storage) => (ident, pid, storage),
    };
    super::acquire(&Api { client }, registry, ident, pid, storage).await
}
