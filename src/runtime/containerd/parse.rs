//! What containerd's answers say, without I/O: who a container is, whether its task is live,
//! how it ended, and where its layers are. Table-tested below.

use crate::container::{Identity, Runtime, Stopped};
use crate::layers::Storage;
use crate::registry::invalid_name;

use super::proto;

/// The label nerdctl stores a container's name in.
pub(super) const NERDCTL_NAME: &str = "nerdctl/name";

/// True for task states whose processes are there to be served (running or paused).
pub(super) fn live(p: &proto::Process) -> bool {
    matches!(p.status, 2 | 4 | 5) && p.pid > 0
}

/// Who containerd says this container is; `None` for a pod sandbox (not served).
pub(super) fn identity(ns: &str, c: &proto::Container) -> Option<Identity> {
    let k8s = match crate::runtime::kubernetes(&c.labels) {
        Some(Some(p)) => Some(p),
        Some(None) => return None,
        None => None,
    };
    let name = c
        .labels
        .get(NERDCTL_NAME)
        .filter(|n| invalid_name(n).is_none())
        .cloned()
        .unwrap_or_else(|| c.id.clone());
    let mut ident = Identity::new(Runtime::Containerd, c.id.clone(), name);
    ident.scope = ns.to_string();
    ident.image = c.image.clone();
    ident.k8s = k8s;
    ident.created = c.created_at.as_ref().map_or(0, |t| t.seconds);
    // The CRI plugin's own record names the file (with the right attempt); labels are the
    // fallback (and name nerdctl's JSON log).
    ident.logs = cri_log_path(c)
        .and_then(crate::logs::cri_file)
        .or_else(|| crate::logs::containerd_source(&c.labels, &c.id));
    Some(ident)
}

/// The extension in which containerd's CRI plugin records a Kubernetes container.
const CRI_METADATA: &str = "io.cri-containerd.container.metadata";

/// Where containerd's CRI plugin writes a Kubernetes container's output (under
/// `/var/log/pods/`): `Metadata.LogPath` of its CRI record; `None` for other containers, or
/// if the record cannot be read.
fn cri_log_path(c: &proto::Container) -> Option<std::path::PathBuf> {
    let any = c.extensions.get(CRI_METADATA)?;
    let v: serde_json::Value = serde_json::from_slice(&any.value).ok()?;
    let path = v.get("Metadata")?.get("LogPath")?.as_str()?;
    Some(std::path::PathBuf::from(path)).filter(|p| p.is_absolute())
}

/// How a container without a live task ended, from its task (no I/O).
pub(super) fn stopped(task: Option<proto::Process>) -> Stopped {
    match task {
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
    }
}

/// Where a container's layers are, from its snapshot's mounts (no I/O): `None` if it has no
/// snapshot key, `Some(None)` if the snapshotter has no such snapshot.
pub(super) fn storage_of(
    c: &proto::Container,
    mounts: Option<Option<Vec<proto::Mount>>>,
) -> Storage {
    let Some(mounts) = mounts else {
        return Storage::Unavailable("containerd reports no snapshot for it".into());
    };
    let Some(mounts) = mounts else {
        return Storage::Unavailable(format!(
            "snapshot {:?} of snapshotter {:?} is gone",
            c.snapshot_key, c.snapshotter
        ));
    };
    match mounts.as_slice() {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PodRef;

    fn container(labels: &[(&str, &str)]) -> proto::Container {
        proto::Container {
            id: "c1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            image: "docker.io/library/nginx:1".into(),
            snapshotter: "overlayfs".into(),
            snapshot_key: "c1".into(),
            created_at: Some(proto::Timestamp {
                seconds: 1_795_341_906,
                nanos: 5,
            }),
            extensions: Default::default(),
        }
    }

    fn task(status: i32, pid: u32, exit_status: u32, exited_at: Option<i64>) -> proto::Process {
        proto::Process {
            container_id: "c1".into(),
            id: "c1".into(),
            pid,
            status,
            exit_status,
            exited_at: exited_at.map(|seconds| proto::Timestamp { seconds, nanos: 0 }),
        }
    }

    #[test]
    fn identities() {
        let i = identity("default", &container(&[(NERDCTL_NAME, "web")])).unwrap();
        assert_eq!((i.name.as_str(), i.scope.as_str()), ("web", "default"));
        assert_eq!(i.runtime, Runtime::Containerd);
        assert_eq!(i.image, "docker.io/library/nginx:1");
        assert_eq!(i.created, 1_795_341_906);
        assert_eq!(i.k8s, None);
        // No usable nerdctl name: the id.
        for labels in [&[][..], &[(NERDCTL_NAME, "a/b")], &[(NERDCTL_NAME, "")]] {
            assert_eq!(identity("team", &container(labels)).unwrap().name, "c1");
        }
        let pod = [
            ("io.kubernetes.pod.namespace", "ns"),
            ("io.kubernetes.pod.name", "p"),
            ("io.kubernetes.container.name", "c"),
        ];
        let k = identity("k8s.io", &container(&pod)).unwrap();
        assert_eq!(
            k.k8s,
            Some(PodRef {
                namespace: "ns".into(),
                pod: "p".into(),
                container: "c".into()
            })
        );
        let sandbox = [
            ("io.cri-containerd.kind", "sandbox"),
            ("io.kubernetes.pod.namespace", "ns"),
            ("io.kubernetes.pod.name", "p"),
        ];
        assert_eq!(identity("k8s.io", &container(&sandbox)), None);
        // Labels without the pod's uid name no log directory: said, not guessed.
        assert!(matches!(
            k.logs,
            Some(crate::logs::LogSource::Unavailable(_))
        ));
    }

    #[test]
    fn cri_log_paths() {
        // As containerd 1.6's CRI plugin records a container (abridged).
        let record = |json: &str| {
            let mut c = container(&[]);
            c.extensions.insert(
                CRI_METADATA.into(),
                proto::Any {
                    type_url: "github.com/containerd/cri/pkg/store/container/Metadata".into(),
                    value: json.as_bytes().to_vec(),
                },
            );
            match identity("k8s.io", &c).unwrap().logs {
                Some(crate::logs::LogSource::Files { path, .. }) => Some(path),
                _ => None,
            }
        };
        assert_eq!(
            record(
                r#"{"Version":"v1","Metadata":{"ID":"c1","SandboxID":"s1","LogPath":"/var/log/pods/ns_p_u/app/0.log","StopSignal":""}}"#
            ),
            Some("/var/log/pods/ns_p_u/app/0.log".into())
        );
        for odd in [
            r#"{"Version":"v1","Metadata":{"LogPath":""}}"#,
            r#"{"Version":"v1","Metadata":{"LogPath":"relative/0.log"}}"#,
            r#"{"Version":"v1","Metadata":{}}"#,
            "not json",
        ] {
            assert_eq!(record(odd), None, "{odd}");
        }
    }

    #[test]
    fn task_states() {
        // 1 created, 2 running, 3 stopped, 4 paused, 5 pausing.
        for (status, pid, served) in [
            (1, 42, false),
            (2, 42, true),
            (2, 0, false),
            (3, 42, false),
            (4, 42, true),
            (5, 42, true),
        ] {
            assert_eq!(live(&task(status, pid, 0, None)), served, "{status} {pid}");
        }
        let s = |state: &str, code, at: &str| Stopped {
            state: state.into(),
            exit_code: code,
            finished_at: at.into(),
        };
        assert_eq!(stopped(Some(task(1, 0, 0, None))), s("created", None, ""));
        assert_eq!(
            stopped(Some(task(3, 0, 137, Some(1_795_341_906)))),
            s("exited", Some(137), "2026-11-22T10:05:06Z")
        );
        assert_eq!(stopped(None), s("stopped", None, ""));
    }

    #[test]
    fn snapshot_mounts() {
        let c = container(&[]);
        let mount = |t: &str, source: &str, options: &[&str]| proto::Mount {
            r#type: t.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        let overlay = mount(
            "overlay",
            "overlay",
            &["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"],
        );
        assert_eq!(
            storage_of(&c, Some(Some(vec![overlay]))),
            Storage::Overlay {
                upper: "/u".into(),
                lowers: vec!["/l1".into(), "/l2".into()]
            }
        );
        // A view of an image without a writable layer.
        let ro = mount("overlay", "overlay", &["lowerdir=/l1:/l2"]);
        assert_eq!(
            storage_of(&c, Some(Some(vec![ro]))),
            Storage::Unavailable("its snapshot has no writable layer".into())
        );
        let bind = mount("bind", "/snap/1/fs", &["rbind", "rw"]);
        assert_eq!(
            storage_of(&c, Some(Some(vec![bind]))),
            Storage::Overlay {
                upper: "/snap/1/fs".into(),
                lowers: Vec::new()
            }
        );
        for (mounts, why) in [
            (None, "containerd reports no snapshot for it"),
            (
                Some(None),
                "snapshot \"c1\" of snapshotter \"overlayfs\" is gone",
            ),
        ] {
            assert_eq!(storage_of(&c, mounts), Storage::Unavailable(why.into()));
        }
        let odd = vec![mount("btrfs", "/dev/x", &[]), mount("bind", "/y", &[])];
        let Storage::Unavailable(why) = storage_of(&c, Some(Some(odd))) else {
            panic!("two mounts assembled");
        };
        assert!(why.ends_with("mounts it as btrfs+bind: ctrfsd assembles overlay layers only"));
    }
}
