//! The container model, below both the registry and the runtimes: which runtime reports a
//! container ([`Runtime`]), who it is ([`Identity`], [`PodRef`]), how a stopped one ended
//! ([`Stopped`]), and how it is named in log lines ([`describe`], [`short_id`]).
//!
//! Nothing here does I/O; every other module may use it.

/// Which runtime reports a container. The order is the naming priority: when two containers
/// want the same bare name, the earlier kind keeps it (README, "Naming").
///
/// A new runtime adds a variant here and answers the three questions below ([`Self::as_str`],
/// [`Self::bare_names`], [`Self::qualifier`]); the naming rules follow from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    /// `--container NAME=PID`.
    Static,
    /// Docker Engine, through its API socket.
    Docker,
    /// Rootful Podman, through its Docker-compatible API.
    Podman,
    /// containerd, every namespace but Docker's `moby`.
    Containerd,
    /// A Kubernetes node's runtime through the CRI (`runtime.v1.RuntimeService`): CRI-O, or
    /// containerd's CRI plugin when containerd's own API is not watched.
    Cri,
    /// Rootless Podman of one user.
    PodmanRootless,
    /// `/ctr/.pid/<PID>/`.
    Pid,
}

impl Runtime {
    /// The runtime's name in log lines, attributes and qualified names (`web@docker`).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Static => "static",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Cri => "cri",
            Runtime::PodmanRootless => "podman-rootless",
            Runtime::Pid => "pid",
        }
    }

    /// True if a container of this runtime in `scope` may take its bare name (`web`) at the
    /// top level. Only runtimes whose names the host's administrator controls may: a rootless
    /// user or a containerd namespace other than `default` must not shadow them.
    pub fn bare_names(self, scope: &str) -> bool {
        match self {
            Runtime::Static | Runtime::Docker | Runtime::Podman => true,
            Runtime::Containerd => scope == "default",
            Runtime::Cri | Runtime::PodmanRootless | Runtime::Pid => false,
        }
    }

    /// What follows `@` in a qualified name: the runtime's name, or the rootless user, or the
    /// containerd namespace (other than `default`). `None` for runtimes without qualified
    /// names (static entries and `.pid` views).
    pub fn qualifier(self, scope: &str) -> Option<&str> {
        match self {
            Runtime::Static | Runtime::Pid => None,
            Runtime::PodmanRootless => Some(scope),
            Runtime::Containerd if scope != "default" => Some(scope),
            r => Some(r.as_str()),
        }
    }
}

/// A Kubernetes container, as `kubectl` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace (`io.kubernetes.pod.namespace`).
    pub namespace: String,
    /// The pod's name (`io.kubernetes.pod.name`).
    pub pod: String,
    /// The container's name in the pod spec (`io.kubernetes.container.name`).
    pub container: String,
}

/// Who the runtime says this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Which runtime reports it.
    pub runtime: Runtime,
    /// Where in that runtime: the user of a rootless Podman, the containerd namespace; empty
    /// otherwise.
    pub scope: String,
    /// The runtime's container id (`pid:<n>` for static entries).
    pub id: String,
    /// The name the runtime's own CLI shows (`docker ps`, `podman ps`, `nerdctl ps`).
    pub name: String,
    /// The image reference the runtime reports (shown in `user.ctrfsd.image`).
    pub image: String,
    /// Set for containers the kubelet created (not for pod sandboxes, which are not served).
    pub k8s: Option<PodRef>,
    /// Creation time (Unix seconds): of two containers wanting one Kubernetes path, the newer
    /// (a restart) gets it.
    pub created: i64,
    /// Where the runtime keeps the container's stdout and stderr (served under `/ctr/.logs`
    /// and behind links to `/dev/stdout`); `None` if the runtime names no store (CRI:
    /// `ContainerStatus.log_path`; Docker/Podman: inspect's `LogPath` and log driver).
    pub logs: Option<crate::logs::LogSource>,
}

impl Identity {
    /// An identity with only the essentials set.
    pub fn new(runtime: Runtime, id: impl Into<String>, name: impl Into<String>) -> Identity {
        Identity {
            runtime,
            scope: String::new(),
            id: id.into(),
            name: name.into(),
            image: String::new(),
            k8s: None,
            created: 0,
            logs: None,
        }
    }

    /// The key of container `id` in `scope` of `runtime`: what [`Self::same_container`]
    /// compares, with nothing else known.
    pub fn key(runtime: Runtime, scope: &str, id: &str) -> Identity {
        let mut i = Identity::new(runtime, id, "");
        i.scope = scope.to_string();
        i
    }

    /// The same container, as far as the registry is concerned.
    pub fn same_container(&self, other: &Identity) -> bool {
        self.runtime == other.runtime && self.scope == other.scope && self.id == other.id
    }
}

/// What a stopped container's runtime says about how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The runtime's word: "created", "exited", "dead" ("stopped" when containerd keeps no
    /// task to say more).
    pub state: String,
    /// Known only for containers that ran and whose runtime kept the status.
    pub exit_code: Option<i64>,
    /// RFC 3339, as the runtime reports it; empty if it never ran.
    pub finished_at: String,
}

impl Stopped {
    /// How it ended, in words for a log line: "created (never started)", "exited (exit code
    /// 3)", "dead".
    pub fn describe(&self) -> String {
        match self.exit_code {
            _ if self.state == "created" => "created (never started)".to_string(),
            Some(code) => format!("{} (exit code {code})", self.state),
            None => self.state.clone(),
        }
    }
}

/// How a container's runtime is described in log lines and attributes: "docker",
/// "podman-rootless (alice)", "containerd (k8s.io)".
pub fn describe(ident: &Identity) -> String {
    if ident.scope.is_empty() {
        ident.runtime.as_str().to_string()
    } else {
        format!("{} ({})", ident.runtime.as_str(), ident.scope)
    }
}

/// The first 12 characters of a runtime id, as `docker ps` shows it (never panics on odd ids).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert_eq!(short_id("3f2a9c0d11aa22bb"), "3f2a9c0d11aa");
        assert_eq!(short_id("77aa"), "77aa");
        assert_eq!(short_id("ééééééé"), "éééééé"); // 12 bytes: a char boundary
        assert_eq!(short_id("aéééééé"), "aéééééé"); // byte 12 is inside a char: whole id
    }

    #[test]
    fn descriptions() {
        let mut i = Identity::new(Runtime::PodmanRootless, "x", "web");
        i.scope = "alice".into();
        assert_eq!(describe(&i), "podman-rootless (alice)");
        assert_eq!(
            describe(&Identity::new(Runtime::Docker, "x", "web")),
            "docker"
        );
        let s = |state: &str, code| Stopped {
            state: state.into(),
            exit_code: code,
            finished_at: String::new(),
        };
        assert_eq!(s("created", None).describe(), "created (never started)");
        assert_eq!(s("exited", Some(3)).describe(), "exited (exit code 3)");
        assert_eq!(s("dead", None).describe(), "dead");
    }
}
