//! `/ctr/.logs` for the other runtimes: Podman's `k8s-file` (rootful, and a rootless user's
//! planted link refused), and a Kubernetes container's CRI log under `/var/log/pods`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::ROOTLESS_USER as USER;
use common::*;

fn view(d: &Daemon, name: &str) -> PathBuf {
    d.path().join(".logs").join(name)
}

/// `podman logs NAME` with stdout and stderr as `which` says ("out", "err", "all").
fn podman_logs(name: &str, which: &str) -> Vec<u8> {
    let redirect = match which {
        "out" => "2>/dev/null",
        "err" => "2>&1 >/dev/null",
        _ => "2>&1",
    };
    sh(&format!("podman logs {name} {redirect}")).stdout
}

#[test]
fn podman_k8s_file_views_match_podman_logs() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(
        dir.path(),
        &["tmp", "proc", "dev"],
        &["sh", "echo", "printf", "sleep"],
    );
    let tag = format!("localhost/ctrfsd-logs-pm:{}", token());
    let tar = dir.path().with_extension("tar");
    let out = sh(&format!(
        "tar -C {} -cf {} . && podman import -q {} {tag}",
        dir.path().display(),
        tar.display(),
        tar.display()
    ));
    assert!(out.status.success(), "podman import: {out:?}");
    let name = format!("ctrfsd-logs-pm-{}", token());
    struct Rm(String, String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = sh(&format!(
                "podman rm -f -t 0 {0}; podman rmi -f {1}",
                self.0, self.1
            ));
        }
    }
    let _rm = Rm(name.clone(), tag.clone());
    let run = sh(&format!(
        "podman --runtime runc run -d --network none --log-driver k8s-file \
         --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --name {name} {tag} /bin/sh -c \
         'i=0; while [ $i -lt 100 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done; \
          printf partial; exit 1'"
    ));
    assert!(run.status.success(), "podman run: {run:?}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            stdout(&sh(&format!(
                "podman inspect -f '{{{{.State.Status}}}}' {name}"
            )))
            .trim()
                == "exited"
        })
        .is_some()
    );
    assert!(wait_until(Duration::from_secs(5), || d.has(&name)).is_some());
    let view = view(&d, &name);
    for (file, which) in [("stdout", "out"), ("stderr", "err"), ("all", "all")] {
        let got = std::fs::read(view.join(file)).unwrap();
        let want = podman_logs(&name, which);
        assert!(!want.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{file} of {name} equals podman logs"
        );
    }
}

#[test]
fn cri_log_at_the_path_a_kubernetes_containers_labels_name() {
    require_root();
    let d = Daemon::start(&["--runtime", "containerd", "--resync", "3600"]);
    let t = token();
    let (ns, pod, uid) = (
        format!("logs{}", t.replace('x', "")),
        format!("web-{t}"),
        format!("uid-{t}"),
    );
    // The kubelet's layout, written as a CRI runtime writes it: a line split in two pieces,
    // both streams, and one older rotation kept beside it.
    let dir = PathBuf::from(format!("/var/log/pods/{ns}_{pod}_{uid}/nginx"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }
    let _rm = Rm(dir.clone());
    std::fs::write(
        dir.join("0.log.20261130-220000"),
        "2026-11-30T21:59:59.000000001Z stdout F from the rotation\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0.log"),
        "2026-11-30T22:00:00.000000001Z stdout P upstream timed out \n\
         2026-11-30T22:00:00.000000002Z stderr F [error] upstream timed out (110)\n\
         2026-11-30T22:00:00.000000003Z stdout F while reading response\n",
    )
    .unwrap();
    // Any image of the namespace will do; the one the runtime tests import is used if there.
    let image = stdout(&sh(
        "ctr -n k8s.io images ls -q | grep -v '^sha256' | head -1",
    ));
    let image = image.trim();
    assert!(
        !image.is_empty(),
        "no image in containerd's k8s.io namespace: run tests/runtimes.rs first or scripts/setup.sh"
    );
    let id = format!("logs-app-{t}");
    let labels = format!(
        "--label io.kubernetes.pod.namespace={ns} --label io.kubernetes.pod.name={pod} \
         --label io.kubernetes.pod.uid={uid} --label io.cri-containerd.kind=container \
         --label io.kubernetes.container.name=nginx"
    );
    let run = sh(&format!(
        "ctr -n k8s.io run -d {labels} {image} {id} /bin/busybox sleep 100000 >/dev/null"
    ));
    assert!(run.status.success(), "ctr run: {run:?}");
    struct Ctr(String);
    impl Drop for Ctr {
        fn drop(&mut self) {
            let id = &self.0;
            let _ = sh(&format!(
                "ctr -n k8s.io task kill -s KILL {id}; sleep 0.2; ctr -n k8s.io task delete -f {id}; \
                 ctr -n k8s.io containers delete {id}"
            ));
        }
    }
    let _c = Ctr(id.clone());
    let rel = format!("k8s/{ns}/{pod}/nginx");
    assert!(wait_until(Duration::from_secs(10), || d.path().join(&rel).exists()).is_some());
    let v = d.path().join(".logs").join(&rel);
    assert_eq!(
        std::fs::read_to_string(v.join("stdout")).unwrap(),
        "from the rotation\nupstream timed out while reading response\n"
    );
    assert_eq!(
        std::fs::read_to_string(v.join("stderr")).unwrap(),
        "[error] upstream timed out (110)\n"
    );
    let grep = stdout(&sh(&format!(
        "grep -r 'upstream timed out' {}",
        d.path().join(".logs").display()
    )));
    assert!(grep.contains(&format!("{rel}/stderr:[error]")), "{grep}");
}

#[test]
fn a_rootless_users_symlinked_log_is_refused() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    busybox_rootfs(&root, &["tmp", "proc", "dev"], &["sh", "echo", "sleep"]);
    let tar = dir.path().join("root.tar");
    assert!(
        sh(&format!(
            "tar -C {} -cf {} .",
            root.display(),
            tar.display()
        ))
        .status
        .success()
    );
    sh(&format!(
        "chmod 755 {}; chmod 644 {}",
        dir.path().display(),
        tar.display()
    ));
    let tag = format!("localhost/ctrfsd-logs-rl:{}", token());
    let out = sh(&as_user(&format!(
        "podman import -q {} {tag}",
        tar.display()
    )));
    assert!(out.status.success(), "podman import as {USER}: {out:?}");
    let name = format!("ctrfsd-logs-rl-{}", token());
    struct Rm(String, String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = sh(&as_user(&format!("podman rm -f -t 0 {}", self.0)));
            let _ = sh(&as_user(&format!("podman rmi -f {}", self.1)));
        }
    }
    let _rm = Rm(name.clone(), tag.clone());
    let run = sh(&as_user(&format!(
        "podman --runtime runc run -d --network none --log-driver k8s-file --name {name} {tag} \
         /bin/sh -c 'echo rootless-line; sleep 100000'"
    )));
    assert!(run.status.success(), "podman run as {USER}: {run:?}");
    let view = d.path().join(".logs").join(format!("{name}@{USER}"));
    // The user's own files, owned by the user: served.
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            view.join("stdout")
        )
        .is_ok_and(|s| s == "rootless-line\n"))
        .is_some(),
        "{:?}",
        listing(&view)
    );
    // The user plants a link to a host file where the runtime keeps the log.
    let path = stdout(&sh(&as_user(&format!(
        "podman inspect -f '{{{{.HostConfig.LogConfig.Path}}}}' {name}"
    ))));
    let path = path.trim();
    assert!(path.ends_with("ctr.log"), "{path}");
    let plant = sh(&as_user(&format!(
        "mv {path} {path}.keep && ln -s /etc/shadow {path}"
    )));
    assert!(plant.status.success(), "{plant:?}");
    assert!(
        wait_until(Duration::from_secs(5), || listing(&view) == ["unavailable"]).is_some(),
        "{:?}",
        listing(&view)
    );
    let why = std::fs::read_to_string(view.join("unavailable")).unwrap();
    assert!(
        why.contains("refused") && why.contains("symbolic link"),
        "{why}"
    );
    assert!(std::fs::read(view.join("stdout")).is_err());
    let grep = sh(&format!("grep -r 'root:' {}", view.display()));
    assert!(stdout(&grep).is_empty(), "{}", stdout(&grep));
    assert!(d.log_text().contains("refused"));
}

/// A rootless user's Podman image (busybox), imported as [`USER`]; removed with its
/// containers on drop.
struct RootlessImage {
    tag: String,
    ctrs: Vec<String>,
}

impl RootlessImage {
    fn import() -> RootlessImage {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        busybox_rootfs(&root, &["tmp", "proc", "dev"], &["sh", "echo", "sleep"]);
        let tar = dir.path().join("root.tar");
        let made = sh(&format!(
            "tar -C {} -cf {} . && chmod 755 {} && chmod 644 {}",
            root.display(),
            tar.display(),
            dir.path().display(),
            tar.display()
        ));
        assert!(made.status.success(), "{made:?}");
        let tag = format!("localhost/ctrfsd-logs-rl:{}", token());
        let out = sh(&as_user(&format!(
            "podman import -q {} {tag}",
            tar.display()
        )));
        assert!(out.status.success(), "podman import as {USER}: {out:?}");
        RootlessImage {
            tag,
            ctrs: Vec::new(),
        }
    }

    /// Runs `script` in a new `k8s-file` container as [`USER`]; returns its name.
    fn run(&mut self, script: &str) -> String {
        let name = format!("ctrfsd-logs-rl-{}", token());
        self.ctrs.push(name.clone());
        let run = sh(&as_user(&format!(
            "podman --runtime runc run -d --network none --log-driver k8s-file --name {name} \
             {} /bin/sh -c '{script}'",
            self.tag
        )));
        assert!(run.status.success(), "podman run as {USER}: {run:?}");
        name
    }
}

impl Drop for RootlessImage {
    fn drop(&mut self) {
        for c in &self.ctrs {
            let _ = sh(&as_user(&format!("podman rm -f -t 0 {c}")));
        }
        let _ = sh(&as_user(&format!("podman rmi -f {}", self.tag)));
    }
}

/// A rootless user plants a 20 GB sparse file where a rotation of their log would be: the
/// store is refused within seconds, with the reason (it was read through to be indexed, five
/// minutes of zeros on the FUSE worker of the reader that asked), and another container's
/// view answers meanwhile.
#[test]
fn a_planted_sparse_rotation_is_refused_at_once() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let mut img = RootlessImage::import();
    let name = img.run("echo planted-store; sleep 100000");
    let other = img.run("echo other-line; sleep 100000");
    let view = d.path().join(".logs").join(format!("{name}@{USER}"));
    let other_out = d
        .path()
        .join(".logs")
        .join(format!("{other}@{USER}"))
        .join("stdout");
    for (p, want) in [
        (view.join("stdout"), "planted-store\n"),
        (other_out.clone(), "other-line\n"),
    ] {
        let served = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&p).is_ok_and(|s| s == want)
        });
        assert!(served.is_some(), "{} is served", p.display());
    }
    let path = stdout(&sh(&as_user(&format!(
        "podman inspect -f '{{{{.HostConfig.LogConfig.Path}}}}' {name}"
    ))));
    let planted = format!("{}.1", path.trim());
    // Larger than a rotation may be; then one within that size but sparse.
    for (size, reason) in [("20G", "more than any rotated file"), ("100M", "sparse")] {
        let plant = sh(&as_user(&format!("truncate -s {size} {planted}")));
        assert!(plant.status.success(), "{plant:?}");
        let refused = wait_until(Duration::from_secs(5), || {
            // Another container's view answers within a second all along.
            within(Duration::from_secs(1), "another container's view", || {
                std::fs::read_to_string(&other_out).is_ok_and(|s| s == "other-line\n")
            });
            listing(&view) == ["unavailable"]
        });
        assert!(refused.is_some(), "{size}: {:?}", listing(&view));
        let why = std::fs::read_to_string(view.join("unavailable")).unwrap();
        assert!(
            why.contains("ctr.log.1: refused") && why.contains(reason),
            "{size}: {why}"
        );
        assert!(d.log_text().contains(reason));
        // Gone again: the store is served again.
        assert!(sh(&as_user(&format!("rm {planted}"))).status.success());
        let back = wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(view.join("stdout")).is_ok_and(|s| s == "planted-store\n")
        });
        assert!(back.is_some(), "{size}: {:?}", listing(&view));
    }
}
