//! A small CRI client acting as the kubelet against containerd's CRI plugin: pod sandboxes
//! with host networking (no CNI, no hostname), containers with a log directory and path, as
//! the kubelet lays them out under `/var/log/pods/`. The requests ctrfsd itself never makes
//! are declared here (field numbers from `pkg/apis/runtime/v1/api.proto` of k8s.io/cri-api);
//! the others are the crate's ([`ctrfsd::runtime::cri::proto`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ctrfsd::runtime::cri::{Client, proto};

/// containerd's socket, where its CRI plugin answers too.
pub const CRI_SOCKET: &str = "/run/containerd/containerd.sock";
/// The sandbox image `scripts/setup.sh` imports into containerd's `k8s.io` namespace (and
/// names in containerd's `sandbox_image`): busybox, sleeping. The tests' containers use it too.
pub const POD_IMAGE: &str = "localhost/ctrfsd-pause:1";

/// `NamespaceMode` NODE: the host's namespace.
const NODE: i32 = 2;
/// `NamespaceMode` CONTAINER: the container's own.
const CONTAINER: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(int32, tag = "1")]
    pub network: i32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(int32, tag = "3")]
    pub ipc: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<proto::PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}
/// StopPodSandbox and RemovePodSandbox take the sandbox's id alone.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SandboxId {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<proto::ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<proto::ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    #[prost(string, tag = "11")]
    pub log_path: String,
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}
/// CreateContainer's answer; StartContainer and RemoveContainer take the id alone.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerId {
    #[prost(string, tag = "1")]
    pub container_id: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// A pod made as the kubelet makes it; stopped and removed (its containers with it, its log
/// directory too) on drop.
pub struct Pod {
    rt: tokio::runtime::Runtime,
    client: Client,
    config: PodSandboxConfig,
    /// The sandbox's id.
    pub id: String,
    /// The pod's namespace and name.
    pub namespace: String,
    pub name: String,
    /// `/var/log/pods/<namespace>_<name>_<uid>`.
    pub log_dir: PathBuf,
}

fn kube_labels(ns: &str, pod: &str, uid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.pod.namespace".into(), ns.into()),
        ("io.kubernetes.pod.name".into(), pod.into()),
        ("io.kubernetes.pod.uid".into(), uid.into()),
    ])
}

fn host_network() -> NamespaceOption {
    NamespaceOption {
        network: NODE,
        pid: CONTAINER,
        ipc: 0,
    }
}

impl Pod {
    /// RunPodSandbox: pod `name` in namespace `ns`, host network, no hostname (a host-network
    /// sandbox must not set one), its log directory under `/var/log/pods/`.
    pub fn run(ns: &str, name: &str) -> Pod {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(Client::connect(Path::new(CRI_SOCKET)))
            .unwrap_or_else(|e| panic!("containerd's CRI at {CRI_SOCKET}: {e} (scripts/setup.sh)"));
        let uid = format!("uid-{name}");
        let log_dir = PathBuf::from(format!("/var/log/pods/{ns}_{name}_{uid}"));
        let config = PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: ns.into(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: log_dir.display().to_string(),
            labels: kube_labels(ns, name, &uid),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                }),
            }),
        };
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let r: RunPodSandboxResponse = rt
            .block_on(client.call("RunPodSandbox", req))
            .unwrap_or_else(|s| {
                panic!("RunPodSandbox: {s:?} (is {POD_IMAGE} imported? scripts/setup.sh)")
            });
        Pod {
            rt,
            client,
            config,
            id: r.pod_sandbox_id,
            namespace: ns.into(),
            name: name.into(),
            log_dir,
        }
    }

    /// CreateContainer then StartContainer: container `name`, attempt `attempt`, running
    /// `script` under busybox sh; its log at `<log_dir>/<name>/<attempt>.log`. Returns its id.
    pub fn start(&self, name: &str, attempt: u32, script: &str) -> String {
        let meta = self.config.metadata.clone().unwrap();
        let mut labels = kube_labels(&meta.namespace, &meta.name, &meta.uid);
        labels.insert("io.kubernetes.container.name".into(), name.into());
        let config = ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(proto::ImageSpec {
                image: POD_IMAGE.into(),
                user_specified_image: String::new(),
            }),
            command: ["/bin/busybox", "sh", "-c", script]
                .map(String::from)
                .to_vec(),
            labels,
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                }),
            }),
        };
        let req = CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        let c: ContainerId = self
            .rt
            .block_on(self.client.call("CreateContainer", req))
            .unwrap_or_else(|s| panic!("CreateContainer: {s:?}"));
        let _: Empty = self
            .rt
            .block_on(self.client.call("StartContainer", c.clone()))
            .unwrap_or_else(|s| panic!("StartContainer: {s:?}"));
        c.container_id
    }

    /// StopContainer with no grace period (the runtime kills it at once); the container stays,
    /// exited, as the kubelet keeps it.
    pub fn stop(&self, id: &str) {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: 0,
        };
        let _: Empty = self
            .rt
            .block_on(self.client.call("StopContainer", req))
            .unwrap_or_else(|s| panic!("StopContainer: {s:?}"));
    }

    /// The verbose ContainerStatus of container `id`.
    pub fn status(&self, id: &str) -> proto::ContainerStatusResponse {
        self.rt
            .block_on(self.client.status(id))
            .unwrap_or_else(|s| panic!("ContainerStatus: {s:?}"))
            .unwrap_or_else(|| panic!("ContainerStatus: no container {id}"))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let id = SandboxId {
            pod_sandbox_id: self.id.clone(),
        };
        for method in ["StopPodSandbox", "RemovePodSandbox"] {
            let r: Result<Empty, _> = self.rt.block_on(self.client.call(method, id.clone()));
            if let Err(s) = r {
                eprintln!("{method} {}: {s:?}", self.id);
            }
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}
