//! Every runtime on the host, side by side, with real daemons (scripts/setup.sh starts them):
//! rootful and rootless Podman through their API services, containerd in several namespaces,
//! Kubernetes containers labelled as the kubelet labels them, name collisions between runtimes,
//! and `.pid/<PID>/` for a process no runtime knows.
//!
//! Images come from a local busybox tree: `podman import`, then `podman save` into
//! `ctr images import` for containerd. No registry, no network for containers.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::process::Output;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;

const IMAGE: &str = "localhost/ctrfsd-test:1";
use common::ROOTLESS_USER as USER;

fn try_run(cmd: &str) -> Output {
    sh(cmd)
}

const PODMAN_RUN: &str = "podman --runtime runc run -d --network none \
    --ulimit nofile=1024:1024 --ulimit nproc=4096:4096";

/// The image tarball (a root filesystem), built once.
fn rootfs_tar() -> &'static str {
    static TAR: OnceLock<String> = OnceLock::new();
    TAR.get_or_init(|| {
        require_root();
        let dir = tempfile::tempdir().unwrap().keep();
        let r = dir.join("root");
        busybox_rootfs(
            &r,
            &["etc", "tmp", "proc", "sys", "dev"],
            &["sh", "sleep", "cat", "echo"],
        );
        fs::write(r.join("etc/os-release"), "NAME=ctrfsd-test\n").unwrap();
        symlink("/etc/os-release", r.join("etc/abs-link")).unwrap();
        let tar = dir.join("rootfs.tar");
        sh_ok(&format!("tar -C {} -cf {} .", r.display(), tar.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        tar.display().to_string()
    })
}

use std::os::unix::fs::PermissionsExt;

fn podman_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        sh_ok(&format!("podman import -q {} {IMAGE}", rootfs_tar()));
    });
}

fn rootless_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let tar = rootfs_tar();
        sh_ok(&as_user(&format!("podman import -q {tar} {IMAGE}")));
    });
}

/// The image in containerd namespace `ns`.
fn ctr_image(ns: &str) {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap();
    if done.iter().any(|d| d == ns) {
        return;
    }
    podman_image();
    let archive = format!("{}.oci", rootfs_tar());
    if !std::path::Path::new(&archive).exists() {
        sh_ok(&format!("podman save -q -o {archive} {IMAGE}"));
    }
    sh_ok(&format!("ctr -n {ns} images import {archive}"));
    done.push(ns.to_string());
}

/// A container of some runtime, removed on drop.
struct Ctr {
    remove: String,
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = try_run(&self.remove);
    }
}

fn podman_ctr(name: &str) -> Ctr {
    podman_image();
    sh_ok(&format!(
        "{PODMAN_RUN} --name {name} {IMAGE} /bin/busybox sleep 100000"
    ));
    Ctr {
        remove: format!("podman rm -f -t 0 {name}"),
    }
}

fn rootless_ctr(name: &str) -> Ctr {
    rootless_image();
    sh_ok(&as_user(&format!(
        "podman --runtime runc run -d --network none --name {name} {IMAGE} /bin/busybox sleep 100000"
    )));
    Ctr {
        remove: as_user(&format!("podman rm -f -t 0 {name}")),
    }
}

/// `ctr run` in namespace `ns` with `labels` (`--label k=v ...`), container id `id`.
fn containerd_ctr(ns: &str, id: &str, labels: &str) -> Ctr {
    ctr_image(ns);
    sh_ok(&format!(
        "ctr -n {ns} run -d {labels} {IMAGE} {id} /bin/busybox sleep 100000 >/dev/null"
    ));
    Ctr {
        remove: format!(
            // `task delete -f` kills the task and waits for it to exit before deleting it.
            "ctr -n {ns} task delete -f {id}; ctr -n {ns} containers delete {id}"
        ),
    }
}

fn docker_ctr(name: &str) -> DockerCtr {
    let image = "ctrfsd-runtimes:1";
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        sh_ok(&format!(
            "docker import {} {image} >/dev/null",
            rootfs_tar()
        ));
    });
    docker_run(name, image, &["/bin/busybox", "sleep", "100000"])
}

/// Waits until `rel` is served live (a container created but not yet started is shown first
/// from its layers, as `created` or `stopped`).
fn appear(d: &Daemon, rel: &str) -> Duration {
    let p = d.path().join(rel);
    wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&p, "state").as_deref() == Some("running") && p.join("etc/os-release").exists()
    })
    .unwrap_or_else(|| {
        panic!(
            "{rel} never appeared; listed: {:?}; log:\n{}",
            d.names(),
            d.log_text()
        )
    })
}

fn disappear(d: &Daemon, rel: &str) -> Duration {
    let p = d.path().join(rel);
    wait_until(Duration::from_secs(10), || {
        fs::symlink_metadata(&p).is_err()
    })
    .unwrap_or_else(|| panic!("{rel} never went away; log:\n{}", d.log_text()))
}

#[test]
fn podman_rootful_by_name_id_and_attributes() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let name = format!("pod-{}", token());
    let c = podman_ctr(&name);
    let took = appear(&d, &name);
    assert!(took <= WITHIN_API, "podman start -> listed took {took:?}");
    let dir = d.path().join(&name);
    assert_eq!(
        fs::read_to_string(dir.join("etc/os-release")).unwrap(),
        "NAME=ctrfsd-test\n"
    );
    let id = sh_ok(&format!("podman inspect -f '{{{{.Id}}}}' {name}"));
    let pid = sh_ok(&format!("podman inspect -f '{{{{.State.Pid}}}}' {name}"));
    assert_eq!(xattr(&dir, "runtime"), "podman");
    assert_eq!(xattr(&dir, "id"), id);
    assert_eq!(xattr(&dir, "pid"), pid);
    assert_eq!(xattr(&dir, "image"), IMAGE);
    // The full id, a unique prefix and the qualified name lead to it, as links to the name.
    for alias in [id.as_str(), &id[..12], &format!("{name}@podman")] {
        let a = d.path().join(alias);
        assert_eq!(fs::read_link(&a).unwrap().to_str(), Some(name.as_str()));
        assert_eq!(
            fs::read_to_string(a.join("etc/os-release")).unwrap(),
            "NAME=ctrfsd-test\n"
        );
    }
    // Aliases are not listed: `ls` shows each container once.
    assert!(!d.names().iter().any(|n| n.starts_with(&id[..12])));
    // Absolute links inside resolve inside this container, at its path.
    assert_eq!(
        fs::read_link(dir.join("etc/abs-link")).unwrap(),
        dir.join("etc/os-release")
    );
    drop(c);
    let took = disappear(&d, &name);
    assert!(took <= WITHIN_API, "podman rm -> gone took {took:?}");
    assert!(fs::symlink_metadata(d.path().join(&id[..12])).is_err());
}

#[test]
fn podman_rootless_named_by_owner_with_host_ownership() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let name = format!("rl-{}", token());
    let _c = rootless_ctr(&name);
    let path = format!("{name}@{USER}");
    let took = appear(&d, &path);
    eprintln!("rootless start -> listed: {took:?}");
    assert!(!d.has(&name), "a rootless container must say whose it is");
    let dir = d.path().join(&path);
    assert_eq!(xattr(&dir, "runtime"), format!("podman-rootless ({USER})"));
    // Files owned by root inside the user namespace are the user's on the host, as
    // /proc/<pid>/root shows them.
    let pid = xattr(&dir, "pid");
    let direct = fs::metadata(format!("/proc/{pid}/root/etc/os-release")).unwrap();
    let served = fs::metadata(dir.join("etc/os-release")).unwrap();
    assert_eq!(served.uid(), rootless_uid());
    assert_eq!((served.uid(), served.gid()), (direct.uid(), direct.gid()));
}

#[test]
fn containerd_namespaces_names_and_events() {
    require_root();
    // A long resync: anything seen within seconds came from containerd's event stream.
    let d = Daemon::start(&["--runtime", "containerd", "--resync", "3600"]);
    let t = token();
    let (name, id) = (format!("nerd-{t}"), format!("nerd-id-{t}"));
    let c = containerd_ctr("default", &id, &format!("--label nerdctl/name={name}"));
    let took = appear(&d, &name);
    assert!(
        took <= WITHIN_API,
        "containerd start -> listed took {took:?}"
    );
    let dir = d.path().join(&name);
    assert_eq!(xattr(&dir, "runtime"), "containerd (default)");
    assert_eq!(xattr(&dir, "id"), id);
    assert_eq!(
        fs::read_link(d.path().join(&id)).unwrap().to_str(),
        Some(name.as_str())
    );

    // Another namespace: qualified by it, never bare.
    let other = "ctrfsd-team";
    let id2 = format!("plain-{t}");
    let c2 = containerd_ctr(other, &id2, "");
    appear(&d, &format!("{id2}@{other}"));
    assert!(!d.has(&id2));

    // Its writable layer, and once its task is killed, its files from its snapshot.
    assert!(fs::read_dir(d.path().join(".diff").join(&name)).is_ok());
    assert_eq!(xattr(&dir, "state"), "running");
    sh_ok(&format!("ctr -n default task kill -s KILL {id}"));
    let took = wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&dir, "state").as_deref() == Some("exited")
    })
    .unwrap_or_else(|| panic!("killed task not shown exited; log:\n{}", d.log_text()));
    assert!(
        took <= WITHIN_API,
        "containerd kill -> exited took {took:?}"
    );
    assert_eq!(xattr(&dir, "exit_code"), "137");
    assert_eq!(
        fs::read_to_string(dir.join("etc/os-release")).unwrap(),
        "NAME=ctrfsd-test\n"
    );
    drop(c);
    let took = disappear(&d, &name);
    assert!(
        took <= WITHIN_API,
        "containerd delete -> gone took {took:?}"
    );
    drop(c2);
    disappear(&d, &format!("{id2}@{other}"));
}

#[test]
fn kubernetes_pods_by_namespace_pod_and_container_and_restarts_move() {
    require_root();
    let d = Daemon::start(&["--runtime", "containerd", "--resync", "3600"]);
    let t = token();
    let pod = format!("api-{t}");
    let labels = |kind: &str, ctr: Option<&str>| {
        let mut l = format!(
            "--label io.kubernetes.pod.namespace=shop --label io.kubernetes.pod.name={pod} \
             --label io.kubernetes.pod.uid=uid-{t} --label io.cri-containerd.kind={kind}"
        );
        if let Some(c) = ctr {
            l.push_str(&format!(" --label io.kubernetes.container.name={c}"));
        }
        l
    };
    let sandbox_id = format!("sandbox-{t}");
    let _sandbox = containerd_ctr("k8s.io", &sandbox_id, &labels("sandbox", None));
    let first = format!("app1-{t}");
    let c1 = containerd_ctr("k8s.io", &first, &labels("container", Some("app")));
    let rel = format!("k8s/shop/{pod}/app");
    appear(&d, &rel);
    let dir = d.path().join(&rel);
    assert_eq!(xattr(&dir, "id"), first);
    assert_eq!(xattr(&dir, "k8s.pod"), pod);
    // The pause container is not a user container: not listed, not reachable by id.
    let listed: Vec<String> = fs::read_dir(d.path().join("k8s/shop").join(&pod))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ["app"]);
    assert!(fs::symlink_metadata(d.path().join(&sandbox_id)).is_err());
    assert!(!d.has(&sandbox_id));
    // The id leads to the Kubernetes path.
    assert_eq!(
        fs::read_link(d.path().join(&first)).unwrap().to_str(),
        Some(rel.as_str())
    );

    // A restart: the old container's process dies (its container stays, as the kubelet keeps
    // it for `kubectl logs --previous`), the kubelet starts a new container with the same
    // labels. The path moves to the new one; the exited one stays browsable at `~<id>`.
    // (`task delete -f` sends SIGKILL and waits for the exit before deleting the task.)
    sh_ok(&format!("ctr -n k8s.io task delete -f {first} >/dev/null"));
    let second = format!("app2-{t}");
    let _c2 = containerd_ctr("k8s.io", &second, &labels("container", Some("app")));
    // (Created before its task starts, the new container may hold the path as `stopped` for a
    // moment: both are stopped then, and the newer one ranks first.)
    let took = wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&dir, "id").as_deref() == Some(second.as_str())
            && ctrfsd_xattr(&dir, "state").as_deref() == Some("running")
    })
    .unwrap_or_else(|| panic!("path never moved to {second}; log:\n{}", d.log_text()));
    assert!(took <= WITHIN_API, "restart -> moved took {took:?}");
    let id12 = &first[..first.len().min(12)];
    let previous = d.path().join(format!("{rel}~{id12}"));
    wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&previous, "id").as_deref() == Some(first.as_str())
    })
    .unwrap_or_else(|| panic!("the exited container is not shown; log:\n{}", d.log_text()));
    assert_ne!(xattr(&previous, "state"), "running");
    assert_eq!(
        fs::read_to_string(previous.join("etc/os-release")).unwrap(),
        "NAME=ctrfsd-test\n"
    );
    drop(c1);
    disappear(&d, &format!("{rel}~{id12}"));
}

#[test]
fn a_name_taken_by_two_runtimes_hides_neither() {
    require_root();
    let d = Daemon::start(&[
        "--runtime",
        "docker",
        "--runtime",
        "podman",
        "--runtime",
        "containerd",
    ]);
    let name = format!("dup-{}", token());
    let p = podman_ctr(&name);
    appear(&d, &name);
    assert_eq!(xattr(&d.path().join(&name), "runtime"), "podman");
    let cid = format!("{name}-cid");
    let _c = containerd_ctr("default", &cid, &format!("--label nerdctl/name={name}"));
    appear(&d, &format!("{name}@containerd"));
    let dk = docker_ctr(&name);
    // Docker comes first: it takes the bare name, Podman's moves to name@podman.
    let took = wait_until(Duration::from_secs(10), || {
        d.has(&format!("{name}@podman"))
            && try_run(&format!(
                "getfattr --only-values -n user.ctrfsd.runtime '{}'",
                d.path().join(&name).display()
            ))
            .stdout
                == b"docker"
    })
    .unwrap_or_else(|| panic!("docker did not take the name; log:\n{}", d.log_text()));
    eprintln!("collision resolved in {took:?}");
    let listed: Vec<String> = d
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&name))
        .collect();
    assert_eq!(
        listed,
        [
            name.clone(),
            format!("{name}@containerd"),
            format!("{name}@podman")
        ]
    );
    // Qualified names always resolve, listed or not.
    assert_eq!(
        fs::read_link(d.path().join(format!("{name}@docker")))
            .unwrap()
            .to_str(),
        Some(name.as_str())
    );
    drop(dk);
    // Docker's gone: Podman's takes the bare name back.
    wait_until(Duration::from_secs(10), || {
        !d.has(&format!("{name}@podman"))
            && try_run(&format!(
                "getfattr --only-values -n user.ctrfsd.runtime '{}'",
                d.path().join(&name).display()
            ))
            .stdout
                == b"podman"
    })
    .unwrap_or_else(|| panic!("podman did not get the name back; log:\n{}", d.log_text()));
    drop(p);
}

#[test]
fn any_process_by_pid_with_containment() {
    require_root();
    let m = HostMarker::plant();
    let marker = m.path.display().to_string();
    let mut c = FakeContainer::start(
        |r| {
            fs::write(r.join("inside"), "INSIDE\n").unwrap();
            symlink(&marker, r.join("escape")).unwrap();
            symlink(
                "../../../../../..".to_string() + &marker,
                r.join("escape-rel"),
            )
            .unwrap();
        },
        "",
    );
    let d = Daemon::start(&["--runtime", "none"]);
    let pid = c.pid();
    let dir = d.path().join(".pid").join(pid.to_string());
    assert_eq!(fs::read_to_string(dir.join("inside")).unwrap(), "INSIDE\n");
    assert_eq!(
        fs::read_link(dir.join("escape")).unwrap(),
        dir.join(marker.trim_start_matches('/'))
    );
    for link in ["escape", "escape-rel"] {
        assert!(
            fs::read_to_string(dir.join(link)).is_err(),
            "{link} reached the host file"
        );
    }
    // Through the kernel's own view the same link escapes (so the check above means something).
    assert_eq!(
        fs::read_to_string(c.proc_root().join("escape")).unwrap(),
        m.content
    );
    let grep = try_run(&format!("grep -rs '{}' '{}'", m.content, dir.display()));
    assert!(grep.stdout.is_empty(), "grep -r found host data");
    // `.pid` lists nothing (walking it must not walk every process on the host).
    assert_eq!(fs::read_dir(d.path().join(".pid")).unwrap().count(), 0);
    assert!(fs::metadata(d.path().join(".pid/0")).is_err());
    assert!(fs::metadata(d.path().join(".pid/notapid")).is_err());
    c.kill();
    wait_until(Duration::from_secs(3), || {
        fs::metadata(dir.join("inside")).is_err()
    })
    .expect("a dead process's root is still served");
}

#[test]
fn list_runtimes_says_what_answers() {
    require_root();
    let o = std::process::Command::new(bin())
        .arg("--list-runtimes")
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = stdout(&o);
    eprintln!("{out}");
    for (rt, sock) in [
        ("docker", "/var/run/docker.sock"),
        ("podman", "/run/podman/podman.sock"),
        ("containerd", "/run/containerd/containerd.sock"),
        (&format!("podman-rootless ({USER})"), "/podman/podman.sock"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(rt) && l.contains(sock) && l.contains("ok;")),
            "{rt} at {sock} not reported as answering:\n{out}"
        );
    }
    // A runtime that is not there says why.
    let o = std::process::Command::new(bin())
        .args(["--list-runtimes", "--runtime", "docker"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("/nonexistent/docker.sock") && out.contains("not found"),
        "{out}"
    );
    assert!(
        !out.contains("podman"),
        "--runtime docker listed others:\n{out}"
    );
}

#[test]
fn runtime_option_restricts_the_set() {
    require_root();
    let name = format!("only-{}", token());
    let _p = podman_ctr(&name);
    let cid = format!("only-cd-{}", token());
    let _c = containerd_ctr("default", &cid, &format!("--label nerdctl/name={cid}"));
    let d = Daemon::start(&["--runtime", "containerd"]);
    appear(&d, &cid);
    // Nothing to wait for: the point is that the Podman container does not show, for as long
    // as Podman's own test above allows it to take to show when Podman is watched.
    assert!(
        holds_for(WITHIN_API, || !d.has(&name)),
        "podman container served with --runtime containerd"
    );
}

#[test]
fn a_runtime_whose_socket_appears_later_is_picked_up_and_kept_when_it_goes() {
    require_root();
    let t = token();
    let cid = format!("late-{t}");
    let _c = containerd_ctr("default", &cid, &format!("--label nerdctl/name={cid}"));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("containerd.sock");
    // Auto-detection (no --runtime), with containerd's address where nothing listens yet.
    let d = Daemon::start_with(&[], |cmd| {
        cmd.env("CONTAINERD_ADDRESS", &sock);
    });
    // Once the watchers it did find have listed their containers (each says so), the
    // container is still not served, and stays so for as long as showing it may take.
    wait_until(Duration::from_secs(10), || {
        d.log_text().contains(": connected; following")
    })
    .unwrap_or_else(|| panic!("no runtime found at all; log:\n{}", d.log_text()));
    assert!(
        holds_for(WITHIN_API, || !d.has(&cid)),
        "served before its runtime's socket existed"
    );
    // The socket appears (a relay to the real containerd).
    let mut relay = std::process::Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
        .arg("UNIX-CONNECT:/run/containerd/containerd.sock")
        .spawn()
        .expect("run socat (scripts/setup.sh installs it)");
    let took = appear(&d, &cid);
    eprintln!("socket appeared -> served: {took:?}");
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    // It goes away (socat and its per-connection children): its running container stays
    // served, and the watcher retries.
    let _ = sh(&format!("pkill -f 'UNIX-LISTEN:{}'", sock.display()));
    let _ = relay.kill();
    let _ = relay.wait();
    let _ = fs::remove_file(&sock);
    wait_until(Duration::from_secs(5), || {
        d.log_text()
            .contains(&format!("containerd ({}): ", sock.display()))
            && d.log_text().contains("retrying")
    })
    .unwrap_or_else(|| panic!("no retry logged; log:\n{}", d.log_text()));
    assert_eq!(
        fs::read_to_string(d.path().join(&cid).join("etc/os-release")).unwrap(),
        "NAME=ctrfsd-test\n"
    );
}

#[test]
fn many_pid_views_are_bounded_and_evicted_ones_reopen() {
    require_root();
    let d = Daemon::start(&["--runtime", "none"]);
    // More processes than ctrfsd holds views of (128): old views are dropped, never wedged.
    struct Kids(Vec<std::process::Child>);
    impl Drop for Kids {
        fn drop(&mut self) {
            for k in &mut self.0 {
                let _ = k.kill();
                let _ = k.wait();
            }
        }
    }
    let kids = Kids(
        (0..140)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("1000")
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    for round in 0..2 {
        for k in &kids.0 {
            let p = d.path().join(".pid").join(k.id().to_string()).join("proc");
            assert!(p.is_dir(), "round {round}: {} not served", p.display());
        }
    }
    // Each view holds its root, its pidfd, the exit watcher's pidfd and its mountinfo (polled
    // for mount changes, so a new mount is classified before it is crossed).
    let fds = fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    eprintln!("{fds} fds open for 140 PID views looked up twice");
    assert!(fds < 128 * 4 + 64, "{fds} fds held for 140 PID views");
}
