//! containerd: every namespace (nerdctl's `default`, Kubernetes' `k8s.io`, any other), through
//! its gRPC API on `/run/containerd/containerd.sock`. Lists containers and their tasks, then
//! follows the event stream (task start/exit/delete, container create/update/delete); re-lists
//! every `resync` as a safety net, and reconnects with backoff like the Docker watcher.
//!
//! The namespace `moby` is skipped: those are Docker's containers, served through Docker's API
//! with the names `docker ps` shows.
//!
//! The few protobuf messages used are declared in [`proto`] with `prost` derives (field numbers
//! from containerd's published API), so building ctrfsd needs no `protoc`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use log::{debug, info, warn};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint, Uri};
use tonic::{Code, Status};

use super::Found;
use crate::instance::{Identity, Instance, Runtime, Stopped, pin, short_id};
use crate::layers::Storage;
use crate::registry::Registry;

/// containerd's default socket.
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// Docker's namespace in a shared containerd.
const DOCKER_NAMESPACE: &str = "moby";
/// The label nerdctl stores a container's name in.
const NERDCTL_NAME: &str = "nerdctl/name";
/// No single API call may hold the watcher longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages of containerd's API (services containers/v1, tasks/v1, namespaces/v1, events/v1,
/// types/task). Only the fields ctrfsd reads are declared; prost skips the others.
pub mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListNamespacesRequest {
        #[prost(string, tag = "1")]
        pub filter: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListNamespacesResponse {
        #[prost(message, repeated, tag = "1")]
        pub namespaces: Vec<Namespace>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Namespace {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Container {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(map = "string, string", tag = "2")]
        pub labels: HashMap<String, String>,
        #[prost(string, tag = "3")]
        pub image: String,
        #[prost(string, tag = "6")]
        pub snapshotter: String,
        #[prost(string, tag = "7")]
        pub snapshot_key: String,
        #[prost(message, optional, tag = "8")]
        pub created_at: Option<Timestamp>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersRequest {
        #[prost(string, repeated, tag = "1")]
        pub filters: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersResponse {
        #[prost(message, repeated, tag = "1")]
        pub containers: Vec<Container>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetContainerRequest {
        #[prost(string, tag = "1")]
        pub id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetContainerResponse {
        #[prost(message, optional, tag = "1")]
        pub container: Option<Container>,
    }

    /// `containerd.v1.types.Process`; `status` 1 created, 2 running, 3 stopped, 4 paused,
    /// 5 pausing.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Process {
        #[prost(string, tag = "1")]
        pub container_id: String,
        /// The task's id: the container's id for a container's main task (containerd fills
        /// this, not always `container_id`).
        #[prost(string, tag = "2")]
        pub id: String,
        #[prost(uint32, tag = "3")]
        pub pid: u32,
        #[prost(int32, tag = "4")]
        pub status: i32,
        #[prost(uint32, tag = "9")]
        pub exit_status: u32,
        #[prost(message, optional, tag = "10")]
        pub exited_at: Option<Timestamp>,
    }

    /// snapshots/v1 `Mounts`: how to mount a container's snapshot (its layers).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MountsRequest {
        #[prost(string, tag = "1")]
        pub snapshotter: String,
        #[prost(string, tag = "2")]
        pub key: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MountsResponse {
        #[prost(message, repeated, tag = "1")]
        pub mounts: Vec<Mount>,
    }
    /// `containerd.types.Mount`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mount {
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(string, tag = "2")]
        pub source: String,
        #[prost(string, repeated, tag = "4")]
        pub options: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListTasksRequest {
        #[prost(string, tag = "1")]
        pub filter: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListTasksResponse {
        #[prost(message, repeated, tag = "1")]
        pub tasks: Vec<Process>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetTaskRequest {
        #[prost(string, tag = "1")]
        pub container_id: String,
        #[prost(string, tag = "2")]
        pub exec_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetTaskResponse {
        #[prost(message, optional, tag = "1")]
        pub process: Option<Process>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SubscribeRequest {
        #[prost(string, repeated, tag = "1")]
        pub filters: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Envelope {
        #[prost(string, tag = "2")]
        pub namespace: String,
        #[prost(string, tag = "3")]
        pub topic: String,
        #[prost(message, optional, tag = "4")]
        pub event: Option<Any>,
    }
    /// Field 1 of every task and container event is the container's id.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerEvent {
        #[prost(string, tag = "1")]
        pub container_id: String,
    }
}

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

/// A connection to containerd.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects to the socket (the connection is made at once, so a dead socket fails here).
    pub async fn connect(socket: &Path) -> Result<Client, String> {
        let path: PathBuf = socket.to_path_buf();
        let channel = GrpcEndpoint::from_static("http://containerd")
            .connect_timeout(CALL_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
        Ok(Client { channel })
    }

    async fn unary<Q, R>(&self, path: &'static str, ns: Option<&str>, req: Q) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let call = async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(req);
            if let Some(ns) = ns {
                let v = ns
                    .parse()
                    .map_err(|_| Status::invalid_argument("namespace"))?;
                request.metadata_mut().insert("containerd-namespace", v);
            }
            let codec = tonic_prost::ProstCodec::<Q, R>::default();
            Ok(grpc
                .unary(request, PathAndQuery::from_static(path), codec)
                .await?
                .into_inner())
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded(path)))
    }

    pub async fn namespaces(&self) -> Result<Vec<String>, Status> {
        let r: proto::ListNamespacesResponse = self
            .unary(
                "/containerd.services.namespaces.v1.Namespaces/List",
                None,
                proto::ListNamespacesRequest::default(),
            )
            .await?;
        Ok(r.namespaces.into_iter().map(|n| n.name).collect())
    }

    pub async fn containers(&self, ns: &str) -> Result<Vec<proto::Container>, Status> {
        let r: proto::ListContainersResponse = self
            .unary(
                "/containerd.services.containers.v1.Containers/List",
                Some(ns),
                proto::ListContainersRequest::default(),
            )
            .await?;
        Ok(r.containers)
    }

    pub async fn tasks(&self, ns: &str) -> Result<Vec<proto::Process>, Status> {
        let r: proto::ListTasksResponse = self
            .unary(
                "/containerd.services.tasks.v1.Tasks/List",
                Some(ns),
                proto::ListTasksRequest::default(),
            )
            .await?;
        Ok(r.tasks)
    }

    async fn container(&self, ns: &str, id: &str) -> Result<Option<proto::Container>, Status> {
        let req = proto::GetContainerRequest { id: id.into() };
        match self
            .unary::<_, proto::GetContainerResponse>(
                "/containerd.services.containers.v1.Containers/Get",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(r.container),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    async fn task(&self, ns: &str, id: &str) -> Result<Option<proto::Process>, Status> {
        let req = proto::GetTaskRequest {
            container_id: id.into(),
            exec_id: String::new(),
        };
        match self
            .unary::<_, proto::GetTaskResponse>(
                "/containerd.services.tasks.v1.Tasks/Get",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(r.process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The mounts of a container's snapshot; `None` if containerd has no such snapshot.
    async fn mounts(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
    ) -> Result<Option<Vec<proto::Mount>>, Status> {
        let req = proto::MountsRequest {
            snapshotter: snapshotter.into(),
            key: key.into(),
        };
        match self
            .unary::<_, proto::MountsResponse>(
                "/containerd.services.snapshots.v1.Snapshots/Mounts",
                Some(ns),
                req,
            )
            .await
        {
            Ok(r) => Ok(Some(r.mounts)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    async fn subscribe(&self) -> Result<tonic::Streaming<proto::Envelope>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<proto::SubscribeRequest, proto::Envelope>::default();
        let req = tonic::Request::new(proto::SubscribeRequest::default());
        let path = PathAndQuery::from_static("/containerd.services.events.v1.Events/Subscribe");
        Ok(grpc.server_streaming(req, path, codec).await?.into_inner())
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// True for task states whose processes are there to be served (running or paused).
fn live(p: &proto::Process) -> bool {
    matches!(p.status, 2 | 4 | 5) && p.pid > 0
}

/// Who containerd says this container is; `None` for a pod sandbox (not served).
fn identity(ns: &str, c: &proto::Container) -> Option<Identity> {
    let k8s = match super::kubernetes(&c.labels) {
        Some(Some(p)) => Some(p),
        Some(None) => return None,
        None => None,
    };
    let name = c
        .labels
        .get(NERDCTL_NAME)
        .filter(|n| crate::registry::invalid_name(n).is_none())
        .cloned()
        .unwrap_or_else(|| c.id.clone());
    let mut ident = Identity::new(Runtime::Containerd, c.id.clone(), name);
    ident.scope = ns.to_string();
    ident.image = c.image.clone();
    ident.k8s = k8s;
    ident.created = c.created_at.as_ref().map_or(0, |t| t.seconds);
    ident.logs = crate::logs::containerd_source(&c.labels, &c.id);
    Some(ident)
}

fn key(ns: &str, id: &str) -> Identity {
    let mut i = Identity::new(Runtime::Containerd, id, "");
    i.scope = ns.to_string();
    i
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
    let (tx, mut events) = tokio::sync::mpsc::channel::<Result<proto::Envelope, Status>>(256);
    let sub = client.clone();
    let reader = tokio::spawn(async move {
        let mut stream = match sub.subscribe().await {
            Ok(s) => s,
            Err(e) => return drop(tx.send(Err(e)).await),
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(Status::unavailable("the event stream ended")),
                Err(e) => Err(e),
            };
            let end = msg.is_err();
            if tx.send(msg).await.is_err() || end {
                return;
            }
        }
    });
    let _abort = AbortOnDrop(reader);
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

/// Stops the event reader when the watcher gives up on a connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
                _ => current.is_some_and(|i| i.is_alive() && !i.is_running() && i.ident == ident),
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
    let stopped = match task {
        Some(t) if t.status == 1 => Stopped {
            state: "created".into(),
            exit_code: None,
            finished_at: String::new(),
        },
        Some(t) => Stopped {
            state: "exited".into(),
            exit_code: Some(i64::from(t.exit_status)),
            finished_at: t
                .exited_at
                .and_then(|e| jiff::Timestamp::new(e.seconds, e.nanos).ok())
                .map(|e| e.to_string())
                .unwrap_or_default(),
        },
        // containerd keeps no task of a container that was never started or whose task was
        // deleted after it exited: which of the two is not recorded.
        None => Stopped {
            state: "stopped".into(),
            exit_code: None,
            finished_at: String::new(),
        },
    };
    let storage = storage(client, ns, &c).await?;
    Ok(Found::Stopped(ident, stopped, storage))
}

/// Where a container's layers are: its snapshot's mounts, as containerd would mount them.
async fn storage(client: &Client, ns: &str, c: &proto::Container) -> Result<Storage, Status> {
    if c.snapshot_key.is_empty() {
        return Ok(Storage::Unavailable(
            "containerd reports no snapshot for it".into(),
        ));
    }
    let Some(mounts) = client.mounts(ns, &c.snapshotter, &c.snapshot_key).await? else {
        return Ok(Storage::Unavailable(format!(
            "snapshot {:?} of snapshotter {:?} is gone",
            c.snapshot_key, c.snapshotter
        )));
    };
    Ok(match mounts.as_slice() {
        [m] if m.r#type == "overlay" => {
            let opt = |k: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(k)?.strip_prefix('='))
            };
            match opt("upperdir") {
                Some(upper) => Storage::Overlay {
                    upper: upper.into(),
                    lowers: opt("lowerdir")
                        .map(|l| {
                            l.split(':')
                                .filter(|s| !s.is_empty())
                                .map(Into::into)
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                None => Storage::Unavailable("its snapshot has no writable layer".into()),
            }
        }
        // A snapshot without parents is a plain directory, bind-mounted.
        [m] if m.r#type == "bind" => Storage::Overlay {
            upper: m.source.clone().into(),
            lowers: Vec::new(),
        },
        _ => Storage::Unavailable(format!(
            "snapshotter {:?} mounts it as {}: ctrfsd assembles overlay layers only",
            c.snapshotter,
            mounts
                .iter()
                .map(|m| m.r#type.as_str())
                .collect::<Vec<_>>()
                .join("+")
        )),
    })
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
                i.is_alive()
                    && i.ident == ident
                    && i.storage.as_deref() == Some(&storage)
                    && stopped.state == "stopped"
                    && i.stopped_state().is_some()
            });
            if !known {
                super::serve_stopped(registry, ident, stopped, storage);
            }
            return Ok(());
        }
        Found::Running(ident, pid, storage) => (ident, pid, storage),
    };
    if registry.serves(&ident, pid) {
        return Ok(());
    }
    // Pin, then ask again: only if the task still has this PID is the pidfd the container's.
    let pidfd = match pin(pid) {
        Ok(fd) => fd,
        Err(e) => {
            debug!("containerd {ns}/{id}: pid {pid}: {e}");
            return Ok(());
        }
    };
    if inspect(client, ns, id, false).await? != Found::Running(ident.clone(), pid, storage.clone())
    {
        debug!("containerd {ns}/{id}: changed while acquiring; the next event or re-list retries");
        return Ok(());
    }
    match Instance::open(ident, pid, pidfd) {
        Ok(inst) => super::serve(registry, inst.with_storage(storage)),
        Err(e) => warn!(
            "containerd container {ns}/{}: cannot open its root: {e}",
            short_id(id)
        ),
    }
    Ok(())
}
