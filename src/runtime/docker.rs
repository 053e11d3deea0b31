//! Docker and Podman, through the Docker API (Podman serves a compatible one, rootful at
//! `/run/podman/podman.sock` and per user at `/run/user/<uid>/podman/podman.sock`): list running
//! containers, then follow the events stream; re-list every `resync` as a safety net. When the
//! daemon is unreachable, what is already served stays served (each instance's pidfd says
//! whether it lives), a warning is logged, and the watcher reconnects with backoff and re-lists
//! on reconnect.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;
use log::{debug, info};

use super::{Found, Inspect};
use crate::container::{Identity, Runtime, Stopped, describe};
use crate::layers::Storage;
use crate::registry::Registry;
use crate::trust::Owner;

/// Container events after which the container's state is looked up again ("remove" is
/// Podman's word for Docker's "destroy").
const ACTIONS: &[&str] = &[
    "create", "start", "restart", "die", "stop", "kill", "oom", "rename", "destroy", "remove",
    "pause", "unpause",
];

/// One Docker-API daemon.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Which runtime answers there (Docker, rootful or rootless Podman).
    pub runtime: Runtime,
    /// The rootless user's name; empty for a rootful daemon.
    pub scope: String,
    /// The API's Unix socket.
    pub socket: std::path::PathBuf,
    /// The unprivileged user who runs it (rootless Podman): its socket, PIDs, paths, labels and
    /// answer sizes are checked against that user ([`crate::trust`], [`super::bounded`]).
    pub owner: Option<Owner>,
}

/// Containers at most one user's endpoint may have shown at once; more are logged and left out.
pub const MAX_USER_CONTAINERS: usize = 1000;

impl Endpoint {
    fn key(&self, id: &str) -> Identity {
        Identity::key(self.runtime, &self.scope, id)
    }

    /// A client of the daemon at the socket (no request is made yet), with a 30 s timeout per
    /// request.
    ///
    /// # Errors
    ///
    /// bollard's, if the socket path cannot be used.
    pub fn connect(&self) -> Result<Docker, DockerError> {
        if let Some(owner) = &self.owner {
            return super::bounded::connect(&self.socket, owner.uid, 30);
        }
        Docker::connect_with_unix(
            &self.socket.to_string_lossy(),
            30,
            bollard::API_DEFAULT_VERSION,
        )
    }

    fn label(&self) -> String {
        format!("{} ({})", describe(&self.key("")), self.socket.display())
    }
}

/// Runs forever: connect, sync, follow events; on failure wait and reconnect.
pub async fn watch(registry: Arc<Registry>, ep: Endpoint, resync: Duration) {
    let label = ep.label();
    super::reconnect_forever(&label, || async {
        follow(&registry, &ep, resync)
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

async fn follow(
    registry: &Arc<Registry>,
    ep: &Endpoint,
    resync: Duration,
) -> Result<(), DockerError> {
    let docker = ep.connect()?;
    docker.ping().await?;
    // Events since just before the list, so nothing that happens in between is missed.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(1))
        .unwrap_or(0);
    let options = EventsOptions {
        since: Some(since.to_string()),
        filters: Some(HashMap::from([("type".into(), vec!["container".into()])])),
        ..Default::default()
    };
    let mut events = docker.events(Some(options));
    sync_all(&docker, ep, registry).await?;
    info!("{}: connected; following container events", ep.label());
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(msg)) => {
                    let action = msg.action.unwrap_or_default();
                    let Some(id) = msg.actor.and_then(|a| a.id) else { continue };
                    if !ACTIONS.contains(&action.as_str()) {
                        continue;
                    }
                    debug!("{}: event {action:?} {id:?}", ep.label());
                    if action == "destroy" {
                        registry.remove(&ep.key(&id), "removed");
                    } else {
                        reconcile(&docker, ep, registry, &id).await?;
                    }
                }
            },
            _ = tick.tick() => sync_all(&docker, ep, registry).await?,
        }
    }
}

/// Full re-list: serve every container (running, and stopped unless `--running-only`), drop
/// what the daemon no longer has.
async fn sync_all(
    docker: &Docker,
    ep: &Endpoint,
    registry: &Arc<Registry>,
) -> Result<(), DockerError> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: registry.shows_stopped(),
            ..Default::default()
        }))
        .await?;
    let mut ids = HashSet::new();
    let max = match ep.owner {
        Some(_) => MAX_USER_CONTAINERS,
        None => usize::MAX,
    };
    if list.len() > max {
        log::warn!(
            "{}: lists {} containers; a user's endpoint shows at most {max}",
            ep.label(),
            list.len()
        );
    }
    for c in list.into_iter().take(max) {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string());
        ids.insert(id.clone());
        let runs = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
        let current = registry.find(&ep.key(&id));
        let fresh = current.is_some_and(|i| {
            i.is_current() && Some(&i.ident.name) == name.as_ref() && i.has_process() == runs
        });
        if !fresh {
            reconcile(docker, ep, registry, &id).await?;
        }
    }
    registry.retain(ep.runtime, |i| i.scope != ep.scope || ids.contains(&i.id));
    Ok(())
}

/// One connected daemon, as the shared acquisition step asks it.
struct Daemon<'a> {
    docker: &'a Docker,
    ep: &'a Endpoint,
}

impl Inspect for Daemon<'_> {
    type Error = DockerError;

    async fn inspect(&self, key: &Identity, with_stopped: bool) -> Result<Found, DockerError> {
        inspect(self.docker, self.ep, &key.id, with_stopped).await
    }

    fn label(&self) -> String {
        self.ep.label()
    }

    fn owner(&self) -> Option<&Owner> {
        self.ep.owner.as_ref()
    }
}

/// Who the daemon says container `id` is, and whether and how it runs.
async fn inspect(
    docker: &Docker,
    ep: &Endpoint,
    id: &str,
    with_stopped: bool,
) -> Result<Found, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(info) => Ok(parse_inspect(ep, id, info, with_stopped)),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(Found::Hidden),
        Err(e) => Err(e),
    }
}

/// What an inspect answer of container `id` says (no I/O): running with its PID, stopped and
/// how, or hidden (a pod sandbox, a container being removed, a stopped one unless
/// `with_stopped`).
fn parse_inspect(
    ep: &Endpoint,
    id: &str,
    info: ContainerInspectResponse,
    with_stopped: bool,
) -> Found {
    let logs = log_source(ep, &info);
    let state = info.state.unwrap_or_default();
    let pid = state.pid.unwrap_or(0);
    let runs = state.running == Some(true) && pid > 0;
    if !runs && !with_stopped {
        return Found::Hidden;
    }
    let config = info.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    // A user's labels are the user's to choose: they never hide a container nor place it
    // among the kubelet's (`k8s/...` is for root's runtimes).
    let k8s = match super::kubernetes(&labels) {
        _ if ep.owner.is_some() => None,
        Some(Some(p)) => Some(p),
        Some(None) => return Found::Hidden,
        None => None,
    };
    let mut ident = ep.key(id);
    ident.name = info
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    ident.image = config.image.unwrap_or_default();
    ident.k8s = k8s;
    ident.logs = Some(logs);
    ident.created = info
        .created
        .as_deref()
        .and_then(super::unix_seconds)
        .unwrap_or(0);
    let storage = match info.graph_driver {
        Some(g) => Storage::from_graph_driver(&g.name, &g.data),
        None => Storage::Unavailable("the runtime reports no storage driver".into()),
    };
    if runs {
        return Found::Running(ident, pid as i32, Some(storage));
    }
    let status = state
        .status
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "exited".into());
    if status == "removing" {
        // Its layers are being deleted; the removal event follows.
        return Found::Hidden;
    }
    let stopped = Stopped {
        exit_code: state.exit_code.filter(|_| status != "created"),
        state: status,
        finished_at: state
            .finished_at
            .filter(|f| !f.starts_with("0001-"))
            .unwrap_or_default(),
    };
    Found::Stopped(ident, stopped, storage)
}

/// Where the daemon keeps this container's output (`/ctr/.logs`).
fn log_source(
    ep: &Endpoint,
    info: &bollard::models::ContainerInspectResponse,
) -> crate::logs::LogSource {
    let labels = info
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let driver = info
        .host_config
        .as_ref()
        .and_then(|h| h.log_config.as_ref())
        .and_then(|l| l.typ.clone())
        .unwrap_or_default();
    let dir = info
        .hostname_path
        .as_deref()
        .and_then(|p| std::path::Path::new(p).parent())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A rootless Podman's files belong to its user (the uid in its socket path).
    let owner = match ep.runtime {
        Runtime::PodmanRootless => ep
            .socket
            .strip_prefix("/run/user")
            .ok()
            .and_then(|p| p.iter().next())
            .and_then(|u| u.to_str()?.parse().ok())
            .unwrap_or(u32::MAX),
        _ => 0,
    };
    if driver != "json-file"
        && let Some(k8s) = crate::logs::kubernetes_source(&labels)
    {
        return k8s;
    }
    crate::logs::docker_source(
        &driver,
        info.log_path.as_deref().unwrap_or(""),
        &dir,
        owner,
        ep.runtime != Runtime::Docker,
    )
}

/// Brings the registry in line with what the daemon says about `id`. Transport errors are
/// returned (the caller reconnects); problems with this one container are logged and skipped.
async fn reconcile(
    docker: &Docker,
    ep: &Endpoint,
    registry: &Arc<Registry>,
    id: &str,
) -> Result<(), DockerError> {
    if ep.owner.is_some()
        && registry.find(&ep.key(id)).is_none()
        && registry.count(ep.runtime, &ep.scope) >= MAX_USER_CONTAINERS
    {
        debug!(
            "{}: container {id:?} left out: {MAX_USER_CONTAINERS} already shown",
            ep.label()
        );
        return Ok(());
    }
    let found = inspect(docker, ep, id, registry.shows_stopped()).await?;
    let (ident, pid, storage) = match found {
        Found::Hidden => {
            registry.remove(&ep.key(id), "not running");
            return Ok(());
        }
        Found::Stopped(ident, stopped, storage) => {
            super::serve_stopped(registry, ident, stopped, storage, ep.owner.as_ref());
            return Ok(());
        }
        Found::Running(ident, pid, storage) => (ident, pid, storage),
    };
    super::acquire(&Daemon { docker, ep }, registry, ident, pid, storage).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PodRef;

    fn ep() -> Endpoint {
        Endpoint {
            runtime: Runtime::Podman,
            scope: String::new(),
            socket: "/run/podman/podman.sock".into(),
            owner: None,
        }
    }

    /// An inspect answer as the Docker API sends it (only the fields ctrfsd reads).
    fn answer(state: &str, labels: &str) -> ContainerInspectResponse {
        let json = format!(
            r#"{{"Id": "c0ffee", "Name": "/web", "Created": "2026-11-22T10:05:06.69147866Z",
                "State": {state},
                "Config": {{"Image": "nginx:1", "Labels": {labels}}},
                "HostConfig": {{"LogConfig": {{"Type": "json-file"}}}},
                "LogPath": "/l/ctr.log",
                "GraphDriver": {{"Name": "overlay2",
                                 "Data": {{"UpperDir": "/u", "LowerDir": "/l1:/l2"}}}}}}"#
        );
        serde_json::from_str(&json).expect("a valid inspect answer")
    }

    fn ident() -> Identity {
        let mut i = Identity::new(Runtime::Podman, "c0ffee", "web");
        i.image = "nginx:1".into();
        i.created = 1_795_341_906;
        // Podman's `json-file` is CRI text, at the `LogPath` it reports.
        i.logs = Some(crate::logs::LogSource::Files {
            format: crate::logs::Format::Cri,
            path: "/l/ctr.log".into(),
            owner: 0,
        });
        i
    }

    fn overlay() -> Storage {
        Storage::Overlay {
            upper: "/u".into(),
            lowers: vec!["/l1".into(), "/l2".into()],
        }
    }

    fn stopped(state: &str, code: Option<i64>, at: &str) -> Stopped {
        Stopped {
            state: state.into(),
            exit_code: code,
            finished_at: at.into(),
        }
    }

    #[test]
    fn inspect_answers() {
        let running = r#"{"Status": "running", "Running": true, "Pid": 4242}"#;
        let exited = r#"{"Status": "exited", "Running": false, "Pid": 0, "ExitCode": 3,
                         "FinishedAt": "2026-11-22T11:00:00Z"}"#;
        let created = r#"{"Status": "created", "Running": false, "Pid": 0, "ExitCode": 0,
                          "FinishedAt": "0001-01-01T00:00:00Z"}"#;
        let removing = r#"{"Status": "removing", "Running": false, "Pid": 0}"#;
        let no_pid = r#"{"Status": "running", "Running": true, "Pid": 0}"#;
        let sandbox = r#"{"io.kubernetes.docker.type": "podsandbox",
                          "io.kubernetes.pod.namespace": "ns", "io.kubernetes.pod.name": "p"}"#;
        let k8s = r#"{"io.kubernetes.pod.namespace": "ns", "io.kubernetes.pod.name": "p",
                      "io.kubernetes.container.name": "c"}"#;
        let mut in_pod = ident();
        in_pod.k8s = Some(PodRef {
            namespace: "ns".into(),
            pod: "p".into(),
            container: "c".into(),
        });
        let table: Vec<(&str, &str, bool, Found)> = vec![
            (
                running,
                "{}",
                false,
                Found::Running(ident(), 4242, Some(overlay())),
            ),
            (
                running,
                k8s,
                false,
                Found::Running(in_pod, 4242, Some(overlay())),
            ),
            (running, sandbox, true, Found::Hidden),
            (exited, "{}", false, Found::Hidden),
            (
                exited,
                "{}",
                true,
                Found::Stopped(
                    ident(),
                    stopped("exited", Some(3), "2026-11-22T11:00:00Z"),
                    overlay(),
                ),
            ),
            (
                created,
                "{}",
                true,
                Found::Stopped(ident(), stopped("created", None, ""), overlay()),
            ),
            (removing, "{}", true, Found::Hidden),
            (
                no_pid,
                "{}",
                true,
                Found::Stopped(ident(), stopped("running", None, ""), overlay()),
            ),
        ];
        for (state, labels, with_stopped, want) in table {
            let got = parse_inspect(&ep(), "c0ffee", answer(state, labels), with_stopped);
            assert_eq!(got, want, "{state} {labels} with_stopped={with_stopped}");
        }
    }

    /// Issue 13: a user's Kubernetes and sandbox labels neither place nor hide a container.
    #[test]
    fn a_users_labels_are_only_labels() {
        let mut user = ep();
        user.runtime = Runtime::PodmanRootless;
        user.scope = "mallory".into();
        user.owner = Some(Owner {
            uid: 1001,
            home: "/home/mallory".into(),
        });
        let running = r#"{"Status": "running", "Running": true, "Pid": 4242}"#;
        for labels in [
            r#"{"io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.pod.name": "p",
                "io.kubernetes.container.name": "c"}"#,
            r#"{"io.cri-containerd.kind": "sandbox", "io.kubernetes.pod.namespace": "ns",
                "io.kubernetes.pod.name": "p"}"#,
        ] {
            let got = parse_inspect(&user, "c0ffee", answer(running, labels), false);
            let Found::Running(ident, _, _) = got else {
                panic!("hidden by a user's labels: {labels}");
            };
            assert_eq!(ident.k8s, None, "{labels}");
        }
    }

    #[test]
    fn an_answer_without_storage_driver() {
        let mut a = answer(r#"{"Running": false, "Pid": 0}"#, "{}");
        a.graph_driver = None;
        let Found::Stopped(_, s, storage) = parse_inspect(&ep(), "c0ffee", a, true) else {
            panic!("not stopped");
        };
        assert_eq!(s, stopped("exited", None, ""));
        assert_eq!(
            storage,
            Storage::Unavailable("the runtime reports no storage driver".into())
        );
    }
}
