//! The Kubernetes DaemonSet (issue 17, item 3): deploy/kubernetes/ctrfsd.yaml has the shape a
//! node needs, and the image scripts/build-image.sh makes from this repository, run under
//! Docker with exactly the privileges and mounts the manifest gives it (the `docker run` flags
//! are read from the manifest), serves every runtime's containers at the host's mountpoint,
//! unmounts on stop, and serves again after a SIGKILL left a dead mount behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_norway::Value;

const MANIFEST: &str = "deploy/kubernetes/ctrfsd.yaml";

fn manifest() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFEST);
    serde_norway::from_str(&fs::read_to_string(&path).unwrap()).expect("the manifest parses")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v:?}"))
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{key} is not a list in {v:?}"))
}

/// One volume mount of the ctrfsd container, joined with its hostPath volume.
#[derive(Debug)]
struct HostMount {
    host: PathBuf,
    kind: String,
    target: PathBuf,
    read_only: bool,
    propagation: String,
}

fn pod_spec(m: &Value) -> &Value {
    &m["spec"]["template"]["spec"]
}

fn container(m: &Value) -> &Value {
    let cs = seq(pod_spec(m), "containers");
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

fn host_mounts(m: &Value) -> Vec<HostMount> {
    let volumes = seq(pod_spec(m), "volumes");
    seq(container(m), "volumeMounts")
        .iter()
        .map(|vm| {
            let v = volumes
                .iter()
                .find(|v| s(v, "name") == s(vm, "name"))
                .unwrap_or_else(|| panic!("no volume for {vm:?}"));
            let hp = &v["hostPath"];
            HostMount {
                host: s(hp, "path").into(),
                kind: s(hp, "type").to_string(),
                target: s(vm, "mountPath").into(),
                read_only: vm["readOnly"].as_bool().unwrap_or(false),
                propagation: vm["mountPropagation"]
                    .as_str()
                    .unwrap_or("None")
                    .to_string(),
            }
        })
        .collect()
}

/// The container's arguments (the mountpoint last).
fn args(m: &Value) -> Vec<String> {
    seq(container(m), "args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn manifest_has_what_a_node_needs() {
    let m = manifest();
    assert_eq!(s(&m, "apiVersion"), "apps/v1");
    assert_eq!(s(&m, "kind"), "DaemonSet");
    let labels = &m["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&m["spec"]["selector"]["matchLabels"], labels);
    let spec = pod_spec(&m);
    assert_eq!(spec["hostPID"].as_bool(), Some(true), "host PID namespace");
    // Else the kubelet mounts the token below /var/run, which the image links to the host's
    // /run, mounted read-only: the container fails to start (see docker_opts).
    assert_eq!(
        spec["automountServiceAccountToken"].as_bool(),
        Some(false),
        "no service account token"
    );
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace >= 10, "time to unmount on SIGTERM: {grace}");
    let c = container(&m);
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    assert_eq!(
        s(c, "image"),
        format!("ctrfsd:{}", env!("CARGO_PKG_VERSION")),
        "the tag scripts/build-image.sh makes"
    );
    assert_eq!(s(c, "imagePullPolicy"), "Never", "no registry");
    let mounts = host_mounts(&m);
    let find = |t: &str| {
        mounts
            .iter()
            .find(|h| h.target == Path::new(t))
            .unwrap_or_else(|| panic!("no mount at {t}: {mounts:?}"))
    };
    let fuse = find("/dev/fuse");
    assert_eq!(
        (fuse.host.to_str(), fuse.kind.as_str()),
        (Some("/dev/fuse"), "CharDevice")
    );
    // Runtime sockets, layers of stopped containers, logs: at the paths the runtimes report.
    for p in [
        "/run",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/containers",
        "/var/log/pods",
        "/var/log/containers",
    ] {
        let h = find(p);
        assert_eq!(h.host, Path::new(p), "{p} is the host's own");
        assert!(h.read_only, "{p} is read-only");
        assert_ne!(h.propagation, "Bidirectional", "{p}");
    }
    // The mountpoint: below the one Bidirectional volume (not its root, so a dead mount left
    // by a killed ctrfsd is never the volume's source), created by ctrfsd itself.
    let a = args(&m);
    let mountpoint = PathBuf::from(a.last().unwrap());
    let bidi: Vec<_> = mounts
        .iter()
        .filter(|h| h.propagation == "Bidirectional")
        .collect();
    assert_eq!(bidi.len(), 1, "{mounts:?}");
    assert_eq!(mountpoint.parent(), Some(bidi[0].target.as_path()));
    assert!(!bidi[0].read_only);
    assert!(a.iter().any(|x| x == "--mkdir"), "{a:?}");
    // The probes check that mountpoint with the image's binary.
    for probe in ["readinessProbe", "livenessProbe"] {
        let cmd: Vec<&str> = seq(&c[probe]["exec"], "command")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            cmd,
            ["/ctrfsd", "--check", mountpoint.to_str().unwrap()],
            "{probe}"
        );
        assert!(
            c[probe]["timeoutSeconds"].as_u64().unwrap_or(1) >= 3,
            "{probe}"
        );
    }
}

/// The manifest's readiness probe, run in the ctrfsd container as the kubelet runs it: its exit
/// status and what it printed.
fn probe(m: &Value, name: &str) -> std::process::Output {
    let mut cmd = vec!["exec", name];
    cmd.extend(
        seq(&container(m)["readinessProbe"]["exec"], "command")
            .iter()
            .map(|v| v.as_str().unwrap()),
    );
    docker(&cmd)
}

/// Mounts made for the test, lazily unmounted (last first) on drop; then commands run (last
/// first).
#[derive(Default)]
struct Cleanup {
    mounts: Vec<PathBuf>,
    commands: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        for c in self.commands.iter().rev() {
            let _ = sh(c);
        }
    }
}

impl Cleanup {
    /// `path` bind-mounted on itself and made shared, as a node's root mount is (systemd makes
    /// `/` shared; this VM's is private, and Docker, like the kubelet, refuses
    /// `rshared`/`rslave` from a private mount).
    fn shared(&mut self, path: &Path) {
        sh_ok(&format!("mount --bind {0} {0}", path.display()));
        self.mounts.push(path.to_path_buf());
        sh_ok(&format!("mount --make-shared {}", path.display()));
    }
}

/// `docker run` options for the manifest's pod: privileges, environment and every hostPath
/// mount with its read-only flag and propagation. The Bidirectional volume's host directory is
/// `mnt`; the sources of other propagating mounts are reached through non-recursive binds
/// under the shared directory `stage` (the same directories, on a shared mount).
fn docker_opts(m: &Value, mnt: &Path, stage: &Path, cleanup: &mut Cleanup) -> Vec<String> {
    let spec = pod_spec(m);
    let c = container(m);
    let mut o = vec!["--network".into(), "none".into()];
    if spec["hostPID"].as_bool() == Some(true) {
        o.extend(["--pid".into(), "host".into()]);
    }
    if c["securityContext"]["privileged"].as_bool() == Some(true) {
        let missing = missing_caps();
        if missing.is_empty() {
            o.push("--privileged".into());
        } else {
            // This VM withholds CAP_SYS_RESOURCE from everyone, root included; runc fails to
            // grant what it does not have, and Docker's --privileged ignores --cap-drop. So:
            // what --privileged gives, spelled out, less what the host cannot give.
            o.extend(
                [
                    "--cap-add=ALL",
                    "--security-opt=seccomp=unconfined",
                    "--security-opt=apparmor=unconfined",
                    "--security-opt=systempaths=unconfined",
                    "--device-cgroup-rule=a *:* rwm",
                ]
                .map(String::from),
            );
            o.extend(missing.into_iter().map(|c| format!("--cap-drop={c}")));
        }
    }
    if let Some(g) = spec["terminationGracePeriodSeconds"].as_u64() {
        o.push(format!("--stop-timeout={g}"));
    }
    for e in seq(c, "env") {
        o.extend(["-e".into(), format!("{}={}", s(e, "name"), s(e, "value"))]);
    }
    if spec["automountServiceAccountToken"].as_bool() != Some(false) {
        // What the kubelet adds to every pod that does not opt out: its token, read-only,
        // after the hostPath mounts (runtimes order mounts by depth).
        let token = stage.join("serviceaccount");
        fs::create_dir_all(&token).unwrap();
        fs::write(token.join("token"), "not a token").unwrap();
        cleanup.commands.push(format!("rm -r {}", token.display()));
        o.extend([
            "--mount".into(),
            format!(
                "type=bind,source={},target=/var/run/secrets/kubernetes.io/serviceaccount,readonly",
                token.display()
            ),
        ]);
    }
    for h in host_mounts(m) {
        if h.kind == "DirectoryOrCreate" {
            // What the kubelet does for this type.
            fs::create_dir_all(&h.host).unwrap();
        }
        let (src, prop) = match h.propagation.as_str() {
            "Bidirectional" => (mnt.to_path_buf(), "rshared"),
            "HostToContainer" => {
                let staged = stage.join(h.host.strip_prefix("/").unwrap());
                fs::create_dir_all(&staged).unwrap();
                sh_ok(&format!(
                    "mount --bind {} {}",
                    h.host.display(),
                    staged.display()
                ));
                cleanup.mounts.push(staged.clone());
                if h.read_only {
                    sh_ok(&format!("mount -o remount,bind,ro {}", staged.display()));
                }
                (staged, "rslave")
            }
            "None" => (h.host.clone(), "rprivate"),
            p => panic!("mountPropagation {p}"),
        };
        let ro = if h.read_only { ",readonly" } else { "" };
        o.extend([
            "--mount".into(),
            format!(
                "type=bind,source={},target={}{ro},bind-propagation={prop}",
                src.display(),
                h.target.display()
            ),
        ]);
    }
    o
}

/// Capabilities (by Docker's names) missing from this process's bounding set.
fn missing_caps() -> Vec<&'static str> {
    // Bit order of linux/capability.h.
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1 << i) == 0)
        .map(|(_, n)| *n)
        .collect()
}

/// The host's view of the Bidirectional volume's mount: whether ctrfsd is mounted there.
fn ctrfsd_at(path: &Path) -> bool {
    is_mounted(path)
}

#[test]
fn deployed_image_serves_every_runtime_and_survives_kill() {
    require_docker();
    let m = manifest();
    let started = Instant::now();
    let image = sh_ok(&format!(
        "{}/scripts/build-image.sh",
        env!("CARGO_MANIFEST_DIR")
    ));
    let built = started.elapsed();
    assert_eq!(image, s(container(&m), "image"));
    eprintln!("scripts/build-image.sh: {built:?}");

    // One container of each runtime, from one busybox tree.
    let t = token();
    let tree = tempfile::tempdir().unwrap();
    busybox_rootfs(tree.path(), &["etc", "proc", "sys", "dev"], &["sleep"]);
    fs::write(tree.path().join("etc/os-release"), format!("NAME={t}\n")).unwrap();
    let tar = tree.path().with_extension("tar");
    sh_ok(&format!(
        "tar -C {} -cf {} .",
        tree.path().display(),
        tar.display()
    ));
    let mut cleanup = Cleanup::default();
    let tag = format!("ctrfsd-deploy-{t}:1");
    let (dname, pname, cname) = (
        format!("deploy-d-{t}"),
        format!("deploy-p-{t}"),
        format!("deploy-c-{t}"),
    );
    sh_ok(&format!("docker import {} {tag}", tar.display()));
    cleanup.commands.push(format!("docker rmi {tag}"));
    cleanup.commands.push(format!("docker rm -f {dname}")); // even if `docker run` fails
    let _d = docker_run(&dname, &tag, &["/bin/busybox", "sleep", "100000"]);
    let ptag = format!("localhost/{tag}");
    sh_ok(&format!("podman import -q {} {ptag}", tar.display()));
    cleanup.commands.push(format!("podman rmi -f {ptag}"));
    sh_ok(&format!(
        "podman --runtime runc run -d --network none --ulimit nofile=1024:1024 \
         --ulimit nproc=4096:4096 --name {pname} {ptag} /bin/busybox sleep 100000"
    ));
    cleanup.commands.push(format!("podman rm -f -t 0 {pname}"));
    let oci = tree.path().with_extension("oci");
    sh_ok(&format!("podman save -q -o {} {ptag}", oci.display()));
    sh_ok(&format!("ctr -n default images import {}", oci.display()));
    cleanup
        .commands
        .push(format!("ctr -n default images rm {ptag}"));
    sh_ok(&format!(
        "ctr -n default run -d {ptag} {cname} /bin/busybox sleep 100000 >/dev/null"
    ));
    cleanup.commands.push(format!(
        "ctr -n default task delete -f {cname}; ctr -n default containers delete {cname}"
    ));
    let _ = fs::remove_file(&tar);
    let _ = fs::remove_file(&oci);

    // The node: the Bidirectional volume's host directory, and the staging of the others.
    // Never removed recursively (host directories are bound below it): the cleanup detaches
    // every mount, then deletes only empty directories on this filesystem.
    let work = tempfile::tempdir().unwrap().keep();
    cleanup.commands.insert(
        0,
        format!(
            "find {} -xdev -depth -type d -empty -delete",
            work.display()
        ),
    );
    let mnt = work.join("mnt");
    let stage = work.join("stage");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&stage).unwrap();
    cleanup.shared(&mnt);
    cleanup.shared(&stage);
    let opts = docker_opts(&m, &mnt, &stage, &mut cleanup);
    let a = args(&m);
    let inside = PathBuf::from(a.last().unwrap());
    let bidi = host_mounts(&m)
        .into_iter()
        .find(|h| h.propagation == "Bidirectional")
        .unwrap();
    let served = mnt.join(inside.strip_prefix(&bidi.target).unwrap());
    let name = format!("ctrfsd-deploy-{t}");
    let mut cmd: Vec<&str> = vec!["run", "-d", "--name", &name];
    cmd.extend(opts.iter().map(String::as_str));
    cmd.push(&image);
    cmd.extend(a.iter().map(String::as_str));
    let ctrfsd = DockerCtr(name.clone());
    docker_ok(&cmd);

    let logs = || {
        stdout(&docker(&["logs", &name]))
            + &String::from_utf8_lossy(&docker(&["logs", &name]).stderr)
    };
    let serves = |limit: Duration| {
        wait_until(limit, || {
            ctrfsd_at(&served)
                && [&dname, &pname, &cname].iter().all(|n| {
                    fs::read_to_string(served.join(n).join("etc/os-release"))
                        .is_ok_and(|s| s == format!("NAME={t}\n"))
                })
        })
        .is_some()
    };
    assert!(
        serves(Duration::from_secs(20)),
        "Docker, Podman and containerd containers under {} on the host; ctrfsd's log:\n{}",
        served.display(),
        logs()
    );
    let ready = probe(&m, &name);
    assert!(
        ready.status.success() && stdout(&ready).contains("ctrfsd answers"),
        "the readiness probe passes: {ready:?}"
    );

    // docker stop: SIGTERM, as the kubelet sends; ctrfsd unmounts and exits 0.
    docker_ok(&["stop", &name]);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "0"
    );
    assert!(!ctrfsd_at(&served), "unmounted on the host after SIGTERM");

    // Started again, killed: a dead mount stays on the host; the next start cleans it up.
    docker_ok(&["start", &name]);
    assert!(
        serves(Duration::from_secs(20)),
        "serves after a restart:\n{}",
        logs()
    );
    docker_ok(&["kill", "-s", "KILL", &name]);
    within(
        Duration::from_secs(10),
        "the killed ctrfsd's mount is dead",
        || {
            fs::metadata(served.join(&dname))
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
                || rustix::fs::statfs(&served).is_err_and(|e| e == rustix::io::Errno::NOTCONN)
        },
    );
    // The host's own check says the mount is dead, and why.
    let dead = std::process::Command::new(bin())
        .arg("--check")
        .arg(&served)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&dead.stderr);
    assert_eq!(dead.status.code(), Some(1), "{said}");
    assert!(said.contains("the mount is dead"), "{said}");
    docker_ok(&["start", &name]);
    assert!(
        serves(Duration::from_secs(20)),
        "serves again after SIGKILL:\n{}",
        logs()
    );
    assert!(logs().contains("stale mount removed"), "{}", logs());
    docker_ok(&["stop", &name]);
    assert!(!ctrfsd_at(&served));
    drop(ctrfsd);
}

#[test]
fn mkdir_creates_a_missing_mountpoint() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("a/ctr");
    let mut child = std::process::Command::new(bin())
        .args(["--mkdir", "--runtime", "none"])
        .arg(&mountpoint)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mounted = wait_until(Duration::from_secs(20), || is_mounted(&mountpoint));
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    );
    let status = child.wait().unwrap();
    assert!(
        mounted.is_some(),
        "ctrfsd --mkdir mounted on a path that did not exist"
    );
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&mountpoint) && mountpoint.is_dir());
}
