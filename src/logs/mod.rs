//! Container logs as files: what a container wrote to stdout and stderr, decoded from the
//! runtime's log store (README, "Logs").
//!
//! - [`LogSource`]: where a runtime keeps one container's output and in which format; the
//!   runtime watchers fill it in ([`docker_source`], [`cri_source`]) and it travels in the
//!   container's [`crate::container::Identity`].
//! - [`decode`]: the store formats (Docker `json-file` and `local`, CRI / Podman `k8s-file`),
//!   one record at a time, pure.
//! - [`open`]: opening host log files without following symlinks, checking type and owner.
//! - [`store`] (with `segment`, `scan`, `rescan`): one container's rotated files as one growing text per stream, through an index
//!   of offsets (never a decoded copy), so a 1 GiB log costs a few hundred KiB.
//! - [`follow`]: while a view is held, an inotify watch on its store's directory opens each
//!   file the runtime creates at once, before it can be rotated away and deleted.

mod ahead;
mod away;
/// The store formats, record by record.
pub mod decode;
/// Watching held stores, so that files rotated away fast are opened in time.
pub mod follow;
/// Opening host log files safely.
pub mod open;
mod rescan;
mod scan;
mod segment;
/// One container's store as growing texts.
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

/// How a store frames and wraps each line the container wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker `json-file` (and nerdctl's JSON logs): one `{"log":..,"stream":..,"time":..}`
    /// object per line; a `log` without a trailing newline is a piece of a longer line.
    JsonFile,
    /// Docker `local` (and the dual-logging cache): length-prefixed protobuf `LogEntry`.
    Local,
    /// CRI (`<RFC3339> <stream> <P|F> <text>`), also Podman `k8s-file`.
    Cri,
}

/// Where one container's output is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The live file at `path`; rotations are `path.N` / `path.N.gz` / `path.<suffix>` beside it.
    Files {
        /// How the store frames each line.
        format: Format,
        /// The live file's host path (opened without following any link).
        path: PathBuf,
        /// The uid the runtime creates these files as (0, or the rootless Podman user): a file
        /// or directory owned by anyone else is refused.
        owner: u32,
    },
    /// The runtime keeps no readable store; the reason, shown to the user.
    Unavailable(String),
}

/// One view of a container's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// What the container wrote to fd 1.
    Stdout = 0,
    /// What the container wrote to fd 2.
    Stderr = 1,
    /// Both, in the order the store recorded them (as `docker logs 2>&1` prints them).
    All = 2,
}

/// The Docker-API inspect facts that locate a container's log store.
///
/// `driver` is `HostConfig.LogConfig.Type`; `log_path` is `LogPath` (empty for `local`);
/// `container_dir` is the directory of `HostnamePath` (Docker's per-container directory);
/// `podman`: the answer came from Podman's compatible API (whose `json-file` is CRI text, and
/// which keeps no cache for other drivers).
/// Sources: moby `daemon/logger/local` (`local-logs/container.log`) and
/// `daemon/logger/loggerutils/cache` (`container-cached.log`, the dual-logging cache that
/// Docker 20.10+ keeps for every other driver unless `cache-disabled` is set).
pub fn docker_source(
    driver: &str,
    log_path: &str,
    container_dir: &str,
    owner: u32,
    podman: bool,
) -> LogSource {
    let files = |format, path: PathBuf| LogSource::Files {
        format,
        path,
        owner,
    };
    match driver {
        // Podman's `json-file` is an alias of its `k8s-file` (podman-run(1), `--log-driver`),
        // and its compatible API may report either name.
        "json-file" | "k8s-file" if podman && !log_path.is_empty() => {
            files(Format::Cri, log_path.into())
        }
        "json-file" if !log_path.is_empty() => files(Format::JsonFile, log_path.into()),
        "none" => LogSource::Unavailable("the container runs with log driver \"none\"".into()),
        "passthrough" | "passthrough-tty" => LogSource::Unavailable(format!(
            "log driver \"{driver}\" hands the output to the caller; nothing is kept"
        )),
        _ if container_dir.is_empty() => LogSource::Unavailable(format!(
            "log driver \"{driver}\": the runtime reports no log file"
        )),
        "local" => files(
            Format::Local,
            PathBuf::from(container_dir).join("local-logs/container.log"),
        ),
        _ if podman => LogSource::Unavailable(format!(
            "log driver \"{driver}\" keeps no file this runtime lets us read"
        )),
        _ => files(
            Format::Local,
            PathBuf::from(container_dir).join("container-cached.log"),
        ),
    }
}

/// The CRI log file a Kubernetes container's labels name (kubelet's
/// `io.kubernetes.pod.{namespace,name,uid}` and `io.kubernetes.container.name`; the attempt from
/// `io.kubernetes.container.restartCount` when a runtime copies it into labels, else 0).
/// `None`: not a Kubernetes container.
pub fn kubernetes_source(labels: &HashMap<String, String>) -> Option<LogSource> {
    let get = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let ns = get("io.kubernetes.pod.namespace")?;
    let pod = get("io.kubernetes.pod.name")?;
    let container = get("io.kubernetes.container.name")?;
    let uid = get("io.kubernetes.pod.uid").unwrap_or("");
    let attempt = get("io.kubernetes.container.restartCount")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    Some(cri_source(ns, pod, uid, container, attempt))
}

/// The log store a containerd container's labels name: a Kubernetes container's CRI file
/// ([`kubernetes_source`]), or nerdctl's JSON log, `<nerdctl/state-dir>/<id>-json.log`
/// (nerdctl `pkg/logging/jsonfile`, written in Docker's `json-file` format). `None`: neither
/// (a `ctr run` container keeps no log).
pub fn containerd_source(labels: &HashMap<String, String>, id: &str) -> Option<LogSource> {
    if let Some(k8s) = kubernetes_source(labels) {
        return Some(k8s);
    }
    let dir = labels
        .get("nerdctl/state-dir")
        .filter(|d| d.starts_with('/'))?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(LogSource::Files {
        format: Format::JsonFile,
        path: PathBuf::from(dir).join(format!("{id}-json.log")),
        owner: 0,
    })
}

/// A CRI-format log file the runtime named itself (CRI `ContainerStatus.log_path`, or
/// containerd's CRI record), written by the runtime as root. `None` unless `path` is absolute.
pub fn cri_file(path: PathBuf) -> Option<LogSource> {
    path.is_absolute().then_some(LogSource::Files {
        format: Format::Cri,
        path,
        owner: 0,
    })
}

/// The CRI log file of a Kubernetes container: `/var/log/pods/<ns>_<pod>_<uid>/<container>/`
/// `<attempt>.log` (kubelet's layout, `pkg/kubelet/kuberuntime/helpers.go` `BuildContainerLogsDirectory`).
/// `attempt` is the restart count the container's metadata carries.
pub fn cri_source(
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> LogSource {
    let bad = |s: &str| s.is_empty() || s.contains('/') || s == "." || s == "..";
    if [namespace, pod, uid, container].iter().any(|s| bad(s)) {
        return LogSource::Unavailable("the pod's metadata does not name a log directory".into());
    }
    LogSource::Files {
        format: Format::Cri,
        path: PathBuf::from(format!(
            "/var/log/pods/{namespace}_{pod}_{uid}/{container}/{attempt}.log"
        )),
        owner: 0,
    }
}

#[cfg(test)]
mod tests;
