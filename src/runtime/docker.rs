//! Docker: list running containers, then follow the events stream; re-list every `resync` as a
//! safety net. When dockerd is unreachable, what is already served stays served (each
//! instance's pidfd says whether it lives), a warning is logged, and the watcher reconnects with
//! backoff and re-lists on reconnect.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;
use log::{debug, info, warn};

use crate::instance::{Identity, Instance, pin, short_id};
use crate::registry::Registry;

const RUNTIME: &str = "docker";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Container events after which the container's state is looked up again.
const ACTIONS: &[&str] = &[
    "start", "restart", "die", "stop", "kill", "oom", "rename", "destroy", "pause", "unpause",
];

/// Runs forever: connect, sync, follow events; on failure wait and reconnect.
pub async fn watch(registry: Arc<Registry>, resync: Duration) {
    let mut backoff = Duration::from_secs(1);
    let mut warned = false;
    loop {
        let started = Instant::now();
        let err = match follow(&registry, resync).await {
            Ok(()) => "the events stream ended".to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        if warned {
            debug!("docker: {err}; retrying in {backoff:?}");
        } else {
            warn!(
                "docker ({}): {err}; serving what is known, retrying in {backoff:?}",
                std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
            );
            warned = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if started.elapsed() > Duration::from_secs(60) {
            warned = false;
        }
    }
}

async fn follow(registry: &Arc<Registry>, resync: Duration) -> Result<(), DockerError> {
    let docker = Docker::connect_with_defaults()?;
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
    sync_all(&docker, registry).await?;
    info!("docker: connected; following container events");
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
                    debug!("docker: event {action} {id}");
                    if action == "destroy" {
                        registry.remove_id(RUNTIME, &id, "removed");
                    } else {
                        reconcile(&docker, registry, &id).await?;
                    }
                }
            },
            _ = tick.tick() => sync_all(&docker, registry).await?,
        }
    }
}

/// Full re-list: serve every running container, drop what Docker no longer runs.
async fn sync_all(docker: &Docker, registry: &Arc<Registry>) -> Result<(), DockerError> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: false,
            ..Default::default()
        }))
        .await?;
    let mut ids = HashSet::new();
    for c in list {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string());
        ids.insert(id.clone());
        let current = registry.find_id(RUNTIME, &id);
        let fresh = current.is_some_and(|i| i.is_alive() && Some(i.name()) == name.as_deref());
        if !fresh {
            reconcile(docker, registry, &id).await?;
        }
    }
    registry.retain_runtime(RUNTIME, |i| ids.contains(&i.ident.id));
    Ok(())
}

/// The state Docker reports for one container: name and main PID if it runs.
async fn running(docker: &Docker, id: &str) -> Result<Option<(String, i32)>, DockerError> {
    let info = match docker.inspect_container(id, None).await {
        Ok(info) => info,
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = info.state.unwrap_or_default();
    let pid = state.pid.unwrap_or(0);
    if state.running != Some(true) || pid <= 0 {
        return Ok(None);
    }
    let name = info
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    Ok(Some((name, pid as i32)))
}

/// Brings the registry in line with what Docker says about `id`. Transport errors are returned
/// (the caller reconnects); problems with this one container are logged and skipped.
async fn reconcile(docker: &Docker, registry: &Arc<Registry>, id: &str) -> Result<(), DockerError> {
    let Some((name, pid)) = running(docker, id).await? else {
        registry.remove_id(RUNTIME, id, "not running");
        return Ok(());
    };
    if let Some(cur) = registry.find_id(RUNTIME, id)
        && cur.is_alive()
        && cur.pid == pid
        && cur.name() == name
    {
        return Ok(());
    }
    if let Some(reason) = crate::registry::invalid_name(&name) {
        warn!("docker container {id}: name {name:?} {reason}; not shown");
        return Ok(());
    }
    // Pin the PID, then ask again: only if Docker still reports this PID for this container
    // is the pidfd known to be the container's main process.
    let pidfd = match pin(pid) {
        Ok(fd) => fd,
        Err(e) => {
            debug!("docker container {name}: pid {pid}: {e}");
            return Ok(());
        }
    };
    if running(docker, id).await? != Some((name.clone(), pid)) {
        debug!(
            "docker container {name}: changed while acquiring; the next event or re-list retries"
        );
        return Ok(());
    }
    let ident = Identity {
        name: name.clone(),
        runtime: RUNTIME,
        id: id.to_string(),
    };
    match Instance::open(ident, pid, pidfd) {
        Ok(inst) => super::serve(registry, inst),
        Err(e) => warn!(
            "docker container {name} ({}): cannot open its root: {e}",
            short_id(id)
        ),
    }
    Ok(())
}
