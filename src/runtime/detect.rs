//! Which runtimes this host has, found by their API sockets, and looked for again every few
//! seconds: a runtime whose socket appears later is picked up. A runtime already being watched
//! stays watched when its socket goes away (its watcher retries with backoff while its running
//! containers stay served).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::container::{Identity, Runtime, describe};
use crate::registry::Registry;
use crate::trust::Owner;

use super::docker::Endpoint;

/// How often sockets are looked for.
const SCAN: Duration = Duration::from_secs(2);

/// A runtime the user can name with `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Docker Engine (`DOCKER_HOST` or `/var/run/docker.sock`).
    Docker,
    /// Rootful and every user's rootless Podman.
    Podman,
    /// containerd, every namespace.
    Containerd,
    /// The CRI of a Kubernetes node: CRI-O, and containerd's CRI plugin when containerd's own
    /// API is not watched (it reports the same containers, with more detail).
    Cri,
}

/// One API endpoint where a runtime may answer.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Which runtime would answer there.
    pub runtime: Runtime,
    /// The rootless user's name; empty for a rootful runtime.
    pub scope: String,
    /// The API socket.
    pub socket: PathBuf,
    /// Watched even while its socket is missing (named by the user, or `DOCKER_HOST`).
    pub insist: bool,
    /// The unprivileged user whose runtime directory holds the socket (rootless Podman).
    pub uid: Option<u32>,
}

/// Where a user's rootless Podman socket is, relative to `/run/user/<uid>`: Podman's
/// `podman/podman.sock`, or what `CTRFSD_USER_SOCKET` names (a relative path; for tests and
/// hosts that run the user service elsewhere). Only root sets ctrfsd's environment.
pub fn user_socket() -> PathBuf {
    std::env::var_os("CTRFSD_USER_SOCKET")
        .map(PathBuf::from)
        .filter(|p| p.is_relative())
        .unwrap_or_else(|| PathBuf::from("podman/podman.sock"))
}

impl Candidate {
    fn label(&self) -> String {
        describe(&Identity::key(self.runtime, &self.scope, ""))
    }
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Every endpoint of `kinds` worth a look, present or not. `named`: the user asked for these
/// kinds by name (their default sockets are watched even before they exist).
pub fn candidates(kinds: &[Kind], named: bool) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut push = |runtime, scope: String, socket: PathBuf, insist, uid| {
        out.push(Candidate {
            runtime,
            scope,
            socket,
            insist,
            uid,
        })
    };
    if kinds.contains(&Kind::Docker) {
        match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => push(
                Runtime::Docker,
                String::new(),
                PathBuf::from(&h[7..]),
                true,
                None,
            ),
            _ => push(
                Runtime::Docker,
                String::new(),
                PathBuf::from("/var/run/docker.sock"),
                named,
                None,
            ),
        }
    }
    if kinds.contains(&Kind::Podman) {
        push(
            Runtime::Podman,
            String::new(),
            PathBuf::from("/run/podman/podman.sock"),
            named,
            None,
        );
        let rel = user_socket();
        let mut users: Vec<(u32, PathBuf)> = std::fs::read_dir("/run/user")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let uid = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((uid, e.path().join(&rel)))
            })
            .filter(|(uid, _)| *uid != 0)
            .collect();
        users.sort();
        for (uid, socket) in users {
            let user = crate::sys::user_name(uid).unwrap_or_else(|| uid.to_string());
            push(Runtime::PodmanRootless, user, socket, false, Some(uid));
        }
    }
    let containerd = PathBuf::from(
        std::env::var("CONTAINERD_ADDRESS")
            .unwrap_or_else(|_| super::containerd::SOCKET.to_string()),
    );
    if kinds.contains(&Kind::Containerd) {
        push(
            Runtime::Containerd,
            String::new(),
            containerd.clone(),
            named,
            None,
        );
    }
    if kinds.contains(&Kind::Cri) {
        push(
            Runtime::Cri,
            String::new(),
            super::cri::CRIO_SOCKET.into(),
            false,
            None,
        );
        // One container, one entry: through CRI only if containerd's own API is not watched.
        if !kinds.contains(&Kind::Containerd) {
            push(Runtime::Cri, String::new(), containerd, false, None);
        }
    }
    out
}

/// The root-run runtimes whose API socket exists now, among `kinds` (what a first full list
/// can be expected from at start; `--runtime` names without a socket are left out, and so are
/// users' endpoints: an untrusted user must not be able to delay readiness).
pub fn present(kinds: &[Kind], named: bool) -> Vec<Runtime> {
    let mut out: Vec<Runtime> = candidates(kinds, named)
        .into_iter()
        .filter(|c| c.uid.is_none() && is_socket(&c.socket))
        .map(|c| c.runtime)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The user `uid` as the owner of the endpoint at `socket`, or why it is refused: the socket
/// must be reached without symlinks and be the user's (checked again at every connection).
fn user_endpoint(socket: &Path, uid: u32) -> Result<Owner, String> {
    crate::trust::open_socket(socket, uid).map_err(|e| e.to_string())?;
    Ok(Owner::of(uid))
}

/// Runs forever: starts a watcher for every endpoint as soon as its socket exists.
pub async fn watch_all(registry: Arc<Registry>, kinds: Vec<Kind>, named: bool, resync: Duration) {
    let mut started: HashSet<PathBuf> = HashSet::new();
    let mut refused: HashMap<PathBuf, String> = HashMap::new();
    loop {
        for c in candidates(&kinds, named) {
            if started.contains(&c.socket) || !(c.insist || is_socket(&c.socket)) {
                continue;
            }
            let owner = match c.uid {
                None => None,
                Some(uid) => match user_endpoint(&c.socket, uid) {
                    Ok(o) => Some(o),
                    Err(why) => {
                        // Logged once per reason: the socket is looked at every 2 s.
                        if refused.get(&c.socket) != Some(&why) {
                            warn!(
                                "{} at {}: not watched: {why}",
                                c.label(),
                                c.socket.display()
                            );
                            refused.insert(c.socket.clone(), why);
                        }
                        continue;
                    }
                },
            };
            info!("{} at {}: watching", c.label(), c.socket.display());
            started.insert(c.socket.clone());
            let reg = registry.clone();
            match c.runtime {
                Runtime::Containerd => {
                    tokio::spawn(super::containerd::watch(reg, c.socket, resync));
                }
                Runtime::Cri => {
                    tokio::spawn(super::cri::watch(reg, c.socket, resync));
                }
                runtime => {
                    let ep = Endpoint {
                        runtime,
                        scope: c.scope,
                        socket: c.socket,
                        owner,
                    };
                    tokio::spawn(super::docker::watch(reg, ep, resync));
                }
            }
        }
        tokio::time::sleep(SCAN).await;
    }
}

/// `--list-runtimes`: one line per endpoint, saying what answered there or why nothing did.
pub async fn report(kinds: &[Kind]) -> String {
    let mut lines = Vec::new();
    let cands = candidates(kinds, true);
    if kinds.contains(&Kind::Podman) && !cands.iter().any(|c| c.runtime == Runtime::PodmanRootless)
    {
        lines.push((
            "podman-rootless".to_string(),
            "/run/user/<uid>/podman/podman.sock".to_string(),
            "no user has a runtime directory under /run/user".to_string(),
        ));
    }
    for c in cands.iter().cloned() {
        let state = if !c.socket.exists() {
            match c.runtime {
                Runtime::Podman | Runtime::PodmanRootless => {
                    "not found (no socket: start `podman system service` or podman.socket)"
                        .to_string()
                }
                _ => "not found (no socket)".to_string(),
            }
        } else if !is_socket(&c.socket) {
            "not a socket".to_string()
        } else {
            probe(&c).await
        };
        lines.push((c.label(), c.socket.display().to_string(), state));
    }
    if kinds.contains(&Kind::Cri) && kinds.contains(&Kind::Containerd) {
        lines.push((
            "cri".to_string(),
            cands
                .iter()
                .find(|c| c.runtime == Runtime::Containerd)
                .map(|c| c.socket.display().to_string())
                .unwrap_or_default(),
            "served through containerd's own API (`--runtime cri` alone uses its CRI plugin)"
                .to_string(),
        ));
    }
    let w0 = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let w1 = lines.iter().map(|l| l.1.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(a, b, c)| format!("{a:w0$}  {b:w1$}  {c}\n"))
        .collect()
}

async fn probe(c: &Candidate) -> String {
    let timeout = Duration::from_secs(5);
    let work = async {
        match c.runtime {
            Runtime::Containerd => {
                let client = super::containerd::Client::connect(&c.socket).await?;
                let mut parts = Vec::new();
                for ns in client.namespaces().await.map_err(|s| s.to_string())? {
                    let tasks = client.tasks(&ns).await.map_err(|s| s.to_string())?;
                    let n = tasks.iter().filter(|t| t.status == 2).count();
                    let note = if ns == "moby" {
                        " (Docker's own: served through Docker)"
                    } else {
                        ""
                    };
                    parts.push(format!("{ns}: {n} running{note}"));
                }
                Ok::<_, String>(format!("ok; namespaces {}", parts.join(", ")))
            }
            Runtime::Cri => {
                let client = super::cri::Client::connect(&c.socket).await?;
                let v = client.version().await.map_err(|s| s.to_string())?;
                let pods = client.sandboxes().await.map_err(|s| s.to_string())?;
                let ctrs = client.containers().await.map_err(|s| s.to_string())?;
                let running = ctrs.iter().filter(|c| c.state == 1).count();
                Ok(format!(
                    "ok; {} {} (CRI {}), {} pods, {running} running containers",
                    v.runtime_name,
                    v.runtime_version,
                    v.runtime_api_version,
                    pods.len()
                ))
            }
            runtime => {
                let owner = match c.uid {
                    Some(uid) => Some(user_endpoint(&c.socket, uid)?),
                    None => None,
                };
                let ep = Endpoint {
                    runtime,
                    scope: c.scope.clone(),
                    socket: c.socket.clone(),
                    owner,
                };
                let docker = ep.connect().map_err(|e| e.to_string())?;
                let v = docker.version().await.map_err(|e| e.to_string())?;
                let n = docker
                    .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
                    .await
                    .map_err(|e| e.to_string())?
                    .len();
                Ok(format!(
                    "ok; {} {}, {n} running",
                    v.components
                        .and_then(|c| c.into_iter().next())
                        .map(|c| c.name)
                        .unwrap_or_else(|| "engine".into()),
                    v.version.unwrap_or_default()
                ))
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => format!("not answering: {e}"),
        Err(_) => format!("not answering within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri_sockets(kinds: &[Kind]) -> Vec<PathBuf> {
        candidates(kinds, true)
            .into_iter()
            .filter(|c| c.runtime == Runtime::Cri)
            .map(|c| c.socket)
            .collect()
    }

    #[test]
    fn containerd_through_cri_only_when_its_own_api_is_not_watched() {
        let containerd = PathBuf::from(
            std::env::var("CONTAINERD_ADDRESS")
                .unwrap_or_else(|_| super::super::containerd::SOCKET.to_string()),
        );
        let crio = PathBuf::from(super::super::cri::CRIO_SOCKET);
        assert_eq!(
            cri_sockets(&[Kind::Cri]),
            [crio.clone(), containerd.clone()]
        );
        assert_eq!(cri_sockets(&[Kind::Containerd, Kind::Cri]), [crio]);
        assert!(cri_sockets(&[Kind::Containerd]).is_empty());
        // Sockets that may be absent are not insisted on (CRI-O or containerd, not both).
        assert!(candidates(&[Kind::Cri], true).iter().all(|c| !c.insist));
    }
}
