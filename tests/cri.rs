//! Kubernetes pods made the way the kubelet makes them, through containerd's CRI plugin (the
//! tests act as the kubelet: tests/common/cri.rs), and ctrfsd watching that socket through the
//! CRI only (`--runtime cri`): containers at `k8s/<namespace>/<pod>/<container>`, no sandbox,
//! a restart moving the path to the new attempt while the exited one stays reachable at
//! `~<id12>`, the CRI log file where `/var/log/pods` says. CRI-O speaks the same API; it is
//! not installed here, so these run against containerd's implementation only.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Waits until `rel` is served running with `file` in it.
fn appear_running(d: &Daemon, rel: &str, file: &str) -> Duration {
    let p = d.path().join(rel);
    wait_until(Duration::from_secs(20), || {
        ctrfsd_xattr(&p, "state").as_deref() == Some("running") && p.join(file).exists()
    })
    .unwrap_or_else(|| {
        panic!(
            "{rel} never appeared running with {file}; listed: {:?}; log:\n{}",
            d.names(),
            d.log_text()
        )
    })
}

/// The line the container's script writes first, then it sleeps (busybox `sh`).
fn script(marker: &str) -> String {
    format!("echo hello from {marker}; echo {marker} > /{marker}; exec /bin/busybox sleep 100000")
}

#[test]
fn list_runtimes_knows_the_cri() {
    require_root();
    let o = std::process::Command::new(bin())
        .args(["--list-runtimes", "--runtime", "cri"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("cri ")
            && l.contains(CRI_SOCKET)
            && l.contains("ok; containerd")
            && l.contains("(CRI v1)")),
        "containerd's CRI plugin not reported as answering:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("cri ") && l.contains("/var/run/crio/crio.sock")),
        "{out}"
    );
    // With containerd's own API watched too, its socket is not also watched through CRI.
    let o = std::process::Command::new(bin())
        .args([
            "--list-runtimes",
            "--runtime",
            "cri",
            "--runtime",
            "containerd",
        ])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.starts_with("cri ")
            && l.contains(CRI_SOCKET)
            && l.contains("served through containerd's own API")),
        "{out}"
    );
}

#[test]
fn pods_made_as_the_kubelet_makes_them_through_the_cri_only() {
    require_root();
    let t = token();
    let (ns, name) = (format!("shop-{t}"), format!("api-{t}"));
    let d = Daemon::start(&["--runtime", "cri", "--resync", "3600"]);
    let pod = Pod::run(&ns, &name);
    let (m0, m1) = (format!("attempt0-{t}"), format!("attempt1-{t}"));
    let c0 = pod.start("app", 0, &script(&m0));
    let rel = format!("k8s/{ns}/{name}/app");
    appear_running(&d, &rel, &m0);
    let dir = d.path().join(&rel);
    assert_eq!(xattr(&dir, "id"), c0);
    assert_eq!(xattr(&dir, "k8s.pod"), name);
    assert_eq!(
        fs::read_to_string(dir.join(&m0)).unwrap(),
        format!("{m0}\n")
    );
    // The sandbox is not a user container: not in the pod's directory, not by its id.
    assert_eq!(listing(&d.path().join(format!("k8s/{ns}/{name}"))), ["app"]);
    assert!(!d.has(&pod.id));
    assert!(fs::symlink_metadata(d.path().join(&pod.id)).is_err());

    // The CRI log file: where the kubelet asked, under /var/log/pods, with the output in it.
    let log = pod.log_dir.join("app/0.log");
    let status = pod.status(&c0);
    assert_eq!(
        status.status.as_ref().map(|s| s.log_path.as_str()),
        Some(log.to_str().unwrap())
    );
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&log).is_ok_and(|s| s.contains(&format!("hello from {m0}")))
    })
    .unwrap_or_else(|| {
        panic!(
            "{} has no output: {:?}",
            log.display(),
            fs::read_to_string(&log)
        )
    });

    // And served as /ctr/.logs/<path>: stdout and stderr apart, without the CRI prefix.
    let logs = d.path().join(".logs").join(&rel);
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(logs.join("stdout")).is_ok_and(|s| s == format!("hello from {m0}\n"))
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: {:?}; log:\n{}",
            logs.display(),
            fs::read_to_string(logs.join("stdout")),
            d.log_text()
        )
    });
    assert_eq!(fs::read_to_string(logs.join("stderr")).unwrap(), "");
    assert_eq!(
        ctrfsd_xattr(&logs.join("stdout"), "log_source").as_deref(),
        log.to_str()
    );

    let shows = |dir: &std::path::Path, m: &str| {
        fs::read_to_string(dir.join("all")).is_ok_and(|s| s.contains(&format!("hello from {m}")))
    };

    // Watched through containerd's own API as well: the container still appears once, and its
    // log comes from containerd's record of the CRI container (the same file).
    let both = Daemon::start(&["--runtime", "containerd", "--runtime", "cri"]);
    appear_running(&both, &rel, &m0);
    assert_eq!(
        listing(&both.path().join(format!("k8s/{ns}/{name}"))),
        ["app"]
    );
    let both_logs = both.path().join(".logs").join(&rel);
    wait_until(Duration::from_secs(10), || shows(&both_logs, &m0)).unwrap_or_else(|| {
        panic!(
            "{} never showed the output: {:?}",
            both_logs.display(),
            fs::read_to_string(both_logs.join("all"))
        )
    });
    drop(both);

    // A restart as the kubelet does it: attempt 0 stopped (kept, exited), attempt 1 created
    // and started in the same sandbox. The path moves to attempt 1; attempt 0 stays reachable
    // at `~<id12>`, from its layers.
    pod.stop(&c0);
    let c1 = pod.start("app", 1, &script(&m1));
    let took = wait_until(Duration::from_secs(20), || {
        ctrfsd_xattr(&dir, "id").as_deref() == Some(c1.as_str())
            && ctrfsd_xattr(&dir, "state").as_deref() == Some("running")
    })
    .unwrap_or_else(|| panic!("path never moved to {c1}; log:\n{}", d.log_text()));
    assert!(took <= WITHIN_API, "restart -> moved took {took:?}");
    assert_eq!(
        fs::read_to_string(dir.join(&m1)).unwrap(),
        format!("{m1}\n")
    );
    let previous = d.path().join(format!("{rel}~{}", &c0[..12]));
    wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&previous, "id").as_deref() == Some(c0.as_str())
    })
    .unwrap_or_else(|| {
        panic!(
            "the exited attempt is not shown; listed: {:?}; log:\n{}",
            d.names(),
            d.log_text()
        )
    });
    assert_ne!(xattr(&previous, "state"), "running");
    assert_eq!(
        fs::read_to_string(previous.join(&m0)).unwrap(),
        format!("{m0}\n")
    );
    assert!(pod.log_dir.join("app/1.log").exists());
    // Each attempt's own log, at its own path.
    let logs_of = |p: &str| fs::read_to_string(d.path().join(".logs").join(p).join("stdout"));
    wait_until(Duration::from_secs(10), || {
        logs_of(&rel).is_ok_and(|s| s == format!("hello from {m1}\n"))
    })
    .unwrap_or_else(|| panic!("{rel}: {:?}", logs_of(&rel)));
    let prev_rel = format!("{rel}~{}", &c0[..12]);
    assert_eq!(logs_of(&prev_rel).unwrap(), format!("hello from {m0}\n"));

    // StopPodSandbox, RemovePodSandbox: the pod's containers go.
    drop(pod);
    wait_until(Duration::from_secs(10), || {
        !d.path().join(format!("k8s/{ns}")).exists()
    })
    .unwrap_or_else(|| panic!("the pod stayed: {:?}; log:\n{}", d.names(), d.log_text()));
}
