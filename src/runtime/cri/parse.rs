//! What a CRI runtime's answers say, without I/O: who a container is (from its pod sandbox's
//! metadata and its own), whether it runs, how it ended, and the details its verbose status
//! adds (PID, sandbox, snapshot). Table-tested below.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::container::{Identity, PodRef, Runtime, Stopped};

use super::proto;

/// `ContainerState` values (api.proto).
pub(super) const CREATED: i32 = 0;
/// The container's process runs.
pub(super) const RUNNING: i32 = 1;

/// What a container's verbose status adds, from the JSON under `info["info"]`: containerd's
/// CRI plugin and CRI-O both report `pid` and `sandboxID`; containerd also `snapshotter` and
/// `snapshotKey`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Details {
    /// The main process, as the host sees it; `None` or 0 when it does not run.
    pub pid: Option<i32>,
    /// The pod sandbox the container belongs to.
    pub sandbox_id: Option<String>,
    /// containerd's snapshotter and snapshot key of the container's layers.
    pub snapshot: Option<(String, String)>,
}

/// Reads the runtime's verbose details; anything missing or malformed is left `None`.
pub(super) fn details(info: &HashMap<String, String>) -> Details {
    let Some(v) = info
        .get("info")
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
    else {
        return Details::default();
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    Details {
        pid: v
            .get("pid")
            .and_then(serde_json::Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0),
        sandbox_id: text("sandboxID"),
        snapshot: text("snapshotter").zip(text("snapshotKey")),
    }
}

/// Who the container is: always a Kubernetes container, named by its pod sandbox's metadata
/// (namespace, pod name) and its own (container name). `None` if the runtime leaves one of
/// them empty. `scope` tells apart CRI sockets (their re-lists); `logs` is where the
/// runtime writes the container's output (`ContainerStatus.log_path`).
pub(super) fn identity(
    scope: &str,
    s: &proto::ContainerStatus,
    pod: &proto::PodSandboxMetadata,
) -> Option<Identity> {
    let container = s.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    if container.is_empty() || pod.name.is_empty() || pod.namespace.is_empty() {
        return None;
    }
    let mut ident = Identity::new(Runtime::Cri, s.id.clone(), container);
    ident.scope = scope.to_string();
    ident.image = s
        .image
        .as_ref()
        .map(|i| {
            if i.user_specified_image.is_empty() {
                i.image.clone()
            } else {
                i.user_specified_image.clone()
            }
        })
        .unwrap_or_default();
    ident.k8s = Some(PodRef {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        container: container.to_string(),
    });
    ident.created = s.created_at.div_euclid(1_000_000_000);
    ident.logs = crate::logs::cri_file(PathBuf::from(&s.log_path));
    Some(ident)
}

/// True if the status says the container's process runs, and its PID is known.
pub(super) fn running(s: &proto::ContainerStatus, d: &Details) -> bool {
    s.state == RUNNING && d.pid.is_some()
}

/// How a container that does not run ended.
pub(super) fn stopped(s: &proto::ContainerStatus) -> Stopped {
    let finished = (s.finished_at > 0)
        .then(|| {
            jiff::Timestamp::from_nanosecond(i128::from(s.finished_at))
                .ok()
                .map(|t| t.to_string())
        })
        .flatten();
    match s.state {
        CREATED => Stopped {
            state: "created".into(),
            exit_code: None,
            finished_at: String::new(),
        },
        RUNNING | 2 => Stopped {
            state: "exited".into(),
            exit_code: finished.as_ref().map(|_| i64::from(s.exit_code)),
            finished_at: finished.unwrap_or_default(),
        },
        _ => Stopped {
            state: "unknown".into(),
            exit_code: None,
            finished_at: finished.unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: i32, name: &str) -> proto::ContainerStatus {
        proto::ContainerStatus {
            id: "c1".into(),
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 1,
            }),
            state,
            created_at: 1_795_341_906_000_000_005,
            image: Some(proto::ImageSpec {
                image: "sha256:abc".into(),
                user_specified_image: String::new(),
            }),
            log_path: "/var/log/pods/ns_p_u/app/1.log".into(),
            ..Default::default()
        }
    }

    fn pod(ns: &str, name: &str) -> proto::PodSandboxMetadata {
        proto::PodSandboxMetadata {
            name: name.into(),
            uid: "u".into(),
            namespace: ns.into(),
            attempt: 0,
        }
    }

    fn info(json: &str) -> HashMap<String, String> {
        HashMap::from([("info".to_string(), json.to_string())])
    }

    #[test]
    fn verbose_details() {
        // containerd's CRI plugin (1.6), abridged.
        let d = details(&info(
            r#"{"sandboxID":"s1","pid":4242,"removing":false,"snapshotKey":"c1","snapshotter":"overlayfs","runtimeSpec":{}}"#,
        ));
        assert_eq!(
            d,
            Details {
                pid: Some(4242),
                sandbox_id: Some("s1".into()),
                snapshot: Some(("overlayfs".into(), "c1".into())),
            }
        );
        // CRI-O: no snapshot; an exited container's pid is 0.
        let d = details(&info(r#"{"sandboxID":"s2","pid":0,"privileged":false}"#));
        assert_eq!(
            (d.pid, d.sandbox_id.as_deref(), d.snapshot),
            (None, Some("s2"), None)
        );
        for odd in [info("not json"), info(r#"{"pid":"12"}"#), HashMap::new()] {
            assert_eq!(details(&odd).pid, None);
        }
        assert_eq!(details(&info(r#"{"pid":99999999999}"#)).pid, None);
    }

    #[test]
    fn identities() {
        let i = identity(
            "/run/crio/crio.sock",
            &status(RUNNING, "app"),
            &pod("ns", "p"),
        )
        .unwrap();
        assert_eq!(i.runtime, Runtime::Cri);
        assert_eq!((i.id.as_str(), i.name.as_str()), ("c1", "app"));
        assert_eq!(i.scope, "/run/crio/crio.sock");
        assert_eq!(
            i.k8s,
            Some(PodRef {
                namespace: "ns".into(),
                pod: "p".into(),
                container: "app".into()
            })
        );
        assert_eq!(i.created, 1_795_341_906);
        assert_eq!(i.image, "sha256:abc");
        assert_eq!(
            i.logs,
            crate::logs::cri_file(PathBuf::from("/var/log/pods/ns_p_u/app/1.log"))
        );
        let mut s = status(RUNNING, "app");
        s.image.as_mut().unwrap().user_specified_image = "busybox:1".into();
        s.log_path = String::new();
        let i = identity("x", &s, &pod("ns", "p")).unwrap();
        assert_eq!((i.image.as_str(), i.logs), ("busybox:1", None));
        assert_eq!(identity("x", &status(RUNNING, ""), &pod("ns", "p")), None);
        assert_eq!(identity("x", &status(RUNNING, "a"), &pod("", "p")), None);
        assert_eq!(identity("x", &status(RUNNING, "a"), &pod("ns", "")), None);
    }

    #[test]
    fn states() {
        let with_pid = Details {
            pid: Some(7),
            ..Default::default()
        };
        assert!(running(&status(RUNNING, "a"), &with_pid));
        assert!(!running(&status(RUNNING, "a"), &Details::default()));
        assert!(!running(&status(2, "a"), &with_pid));
        let s = |state: &str, code, at: &str| Stopped {
            state: state.into(),
            exit_code: code,
            finished_at: at.into(),
        };
        assert_eq!(stopped(&status(CREATED, "a")), s("created", None, ""));
        let mut exited = status(2, "a");
        exited.finished_at = 1_795_341_906_000_000_000;
        exited.exit_code = 137;
        assert_eq!(
            stopped(&exited),
            s("exited", Some(137), "2026-11-22T10:05:06Z")
        );
        assert_eq!(stopped(&status(2, "a")), s("exited", None, ""));
        assert_eq!(stopped(&status(3, "a")), s("unknown", None, ""));
    }
}
