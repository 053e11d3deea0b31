//! Issue 13, section 2: an endpoint run by an unprivileged user is not trusted with PIDs, paths
//! or names. A fake Docker API (tests/data/fake_docker_api.py) runs as the real unprivileged
//! user ctrfsd-test on a socket in its `/run/user/<uid>/`, and ctrfsd (told where by
//! `CTRFSD_USER_SOCKET`) watches it as that user's rootless Podman. It reports dockerd's PID,
//! a plain process of the user (the host's root), `UpperDir=/etc` and a symlink to `/etc`,
//! Kubernetes and sandbox labels, another runtime's container id, control characters, and an
//! endless event object; in another test its socket is a symlink to Docker's. Nothing of the
//! host beyond what the user's own container holds may come back through the mount.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const USER: &str = "ctrfsd-test";
const IMAGE: &str = "ctrfsd-untrusted:1";

fn uid() -> u32 {
    let o = sh(&format!("id -u {USER}"));
    assert!(
        o.status.success(),
        "user {USER} missing: run scripts/setup.sh"
    );
    stdout(&o).trim().parse().unwrap()
}

/// `setpriv` to the test user (all groups dropped), then `args`.
fn as_user(args: &[&str]) -> Command {
    let u = uid().to_string();
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &u, "--regid", &u, "--clear-groups"])
        .args(args)
        .stdin(Stdio::null());
    c
}

fn run_as_user(args: &[&str]) {
    let o = as_user(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {o:?}");
}

/// A process of the test user, killed on drop.
struct UserProc(Child);

impl UserProc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for UserProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fake endpoint and everything of the user's it names, removed on drop.
struct Fake {
    /// `ctrfsd-<token>` under `/run/user/<uid>`: where the socket is.
    run: PathBuf,
    /// `ctrfsd-<token>` under the user's home: its "storage".
    home: PathBuf,
    /// The script and its spec (root's, world-readable).
    tmp: tempfile::TempDir,
    server: Option<UserProc>,
}

impl Fake {
    fn new(tok: &str) -> Fake {
        require_root();
        let u = uid();
        let run = PathBuf::from(format!("/run/user/{u}/ctrfsd-{tok}"));
        let home = PathBuf::from(format!("/home/{USER}/ctrfsd-{tok}"));
        run_as_user(&["mkdir", "-m", "700", run.to_str().unwrap()]);
        run_as_user(&["mkdir", "-m", "700", home.to_str().unwrap()]);
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fake_docker_api.py"),
            tmp.path().join("fake.py"),
        )
        .unwrap();
        Fake {
            run,
            home,
            tmp,
            server: None,
        }
    }

    /// Serves `spec` (the JSON the script reads) on `<run>/api.sock`.
    fn serve(&mut self, spec: &serde_json::Value) {
        let spec_path = self.tmp.path().join("spec.json");
        fs::write(&spec_path, spec.to_string()).unwrap();
        fs::set_permissions(&spec_path, fs::Permissions::from_mode(0o644)).unwrap();
        let sock = self.run.join("api.sock");
        let stats = self.run.join("stats.json");
        let child = as_user(&[
            "/usr/bin/python3",
            self.tmp.path().join("fake.py").to_str().unwrap(),
            sock.to_str().unwrap(),
            spec_path.to_str().unwrap(),
            stats.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
        self.server = Some(UserProc(child));
        within(Duration::from_secs(10), "the fake endpoint listens", || {
            sock.exists()
        });
    }

    /// `CTRFSD_USER_SOCKET` for a socket named `name` in the run directory.
    fn rel(&self, name: &str) -> String {
        format!("{}/{name}", self.run.file_name().unwrap().to_str().unwrap())
    }

    fn stats(&self) -> serde_json::Value {
        fs::read_to_string(self.run.join("stats.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.take();
        let _ = fs::remove_dir_all(&self.run);
        let _ = fs::remove_dir_all(&self.home);
    }
}

fn docker_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(dir.path(), &["etc", "proc", "sys", "dev"], &["sleep"]);
        docker_import(dir.path(), IMAGE);
    });
    IMAGE
}

fn dockerd_pid() -> String {
    let o = sh("pidof dockerd");
    assert!(o.status.success(), "dockerd is not running");
    stdout(&o).split_whitespace().next().unwrap().to_string()
}

/// Every file through the mount that could hold the host's secrets, for names with `tok`.
fn never_host(d: &Daemon, tok: &str, marker: &HostMarker) {
    let shadow = fs::read("/etc/shadow").unwrap();
    for top in [d.path().to_path_buf(), d.path().join(".diff")] {
        for name in listing(&top).into_iter().filter(|n| n.contains(tok)) {
            for rel in [
                "etc/shadow".to_string(),
                "shadow".into(),
                format!("etc/{}", marker.name()),
                marker.name(),
            ] {
                let p = top.join(&name).join(&rel);
                if let Ok(got) = fs::read(&p) {
                    assert_ne!(got, shadow, "{} serves the host's /etc/shadow", p.display());
                    assert!(
                        !String::from_utf8_lossy(&got).contains(&marker.content),
                        "{} serves the host marker",
                        p.display()
                    );
                }
            }
        }
    }
}

/// Issue 13, section 2: PIDs, layer paths, labels, ids and names from a user's endpoint.
#[test]
fn a_users_endpoint_shows_only_what_the_user_reaches() {
    let tok = token();
    let marker = HostMarker::plant();
    let mut fake = Fake::new(&tok);
    let dock = docker_run(
        &format!("dock-{tok}"),
        docker_image(),
        &["/bin/sleep", "100000"],
    );
    let dock_id = docker_ok(&["inspect", "-f", "{{.Id}}", &dock.0]);

    // The user's own container: a process in a user namespace of theirs, chrooted into a tree
    // of theirs; and the layers of a stopped one, below their home.
    let h = fake.home.clone();
    let rootfs = h.join("rootfs");
    busybox_rootfs(&rootfs, &["etc"], &["sleep"]);
    fs::write(rootfs.join("etc/os-release"), format!("NAME=mine-{tok}\n")).unwrap();
    for (dir, file, text) in [
        ("upper", "hello", "from-upper"),
        ("lower", "base", "from-lower"),
    ] {
        fs::create_dir_all(h.join(dir)).unwrap();
        fs::write(h.join(dir).join(file), text).unwrap();
    }
    let o = sh(&format!("chown -R {USER}: {}", h.display()));
    assert!(o.status.success(), "{o:?}");
    run_as_user(&["ln", "-s", "/etc", h.join("link").to_str().unwrap()]);
    // Root's 0600 files among the user's: what a hard link to another user's file would be
    // where `fs.protected_hardlinks` is 0. The user's processes cannot read them.
    for planted in [h.join("upper/planted"), rootfs.join("etc/planted")] {
        fs::write(&planted, "root only\n").unwrap();
        fs::set_permissions(
            &planted,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let live = UserProc(
        as_user(&[
            "unshare",
            "-Urm",
            &format!("--root={}", rootfs.display()),
            "/bin/busybox",
            "sleep",
            "100000",
        ])
        .spawn()
        .unwrap(),
    );
    let plain = UserProc(as_user(&["sleep", "100000"]).spawn().unwrap());
    within(
        Duration::from_secs(10),
        "the user's container is chrooted",
        || fs::read_link(format!("/proc/{}/root", live.pid())).is_ok_and(|r| r == rootfs),
    );

    let (live_pid, up, low) = (live.pid(), h.join("upper"), h.join("lower"));
    let running = |name: &str, pid: &str, labels: serde_json::Value| {
        serde_json::json!({"Id": format!("fake{tok}{name}"), "Name": format!("{name}-{tok}"),
                           "Running": true, "Pid": pid.parse::<u64>().unwrap(),
                           "Labels": labels})
    };
    let stopped = |name: &str, upper: &Path, lower: &str| {
        serde_json::json!({"Id": format!("fake{tok}{name}"), "Name": format!("{name}-{tok}"),
                           "UpperDir": upper, "LowerDir": lower})
    };
    let none = serde_json::json!({});
    let mut alias = running("alias", &live_pid.to_string(), none.clone());
    alias["Id"] = dock_id.clone().into();
    // An id sharing the 12 characters `docker ps` shows of Docker's (every process's
    // `/proc/<pid>/cgroup` names its container's id), differing after them.
    let mut prefix = running("prefix", &live_pid.to_string(), none.clone());
    let next = if dock_id.as_bytes()[12] == b'0' {
        "1"
    } else {
        "0"
    };
    prefix["Id"] = format!("{}{next}{}", &dock_id[..12], "f".repeat(51)).into();
    let mut evil = running("evil", &live_pid.to_string(), none.clone());
    evil["Name"] = format!("evil\n\u{1b}[31m-{tok}").into();
    let ns = format!("ns-{tok}");
    let spec = serde_json::json!({"endless": false, "containers": [
        running("hostroot", &dockerd_pid(), none.clone()),
        running("plain", &plain.pid().to_string(), none.clone()),
        evil,
        stopped("etc", Path::new("/etc"), ""),
        stopped("linked", &h.join("link"), ""),
        alias,
        prefix,
        running("kube", &live_pid.to_string(), serde_json::json!({
            "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": "p",
            "io.kubernetes.container.name": "c"})),
        running("sandbox", &live_pid.to_string(), serde_json::json!({
            "io.kubernetes.docker.type": "podsandbox",
            "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": "p"})),
        stopped("ok", &up, low.to_str().unwrap()),
        running("live", &live_pid.to_string(), none.clone()),
    ]});
    fake.serve(&spec);
    let rel = fake.rel("api.sock");
    let d = Daemon::start_with(&["--runtime", "docker", "--runtime", "podman"], |c| {
        c.env("CTRFSD_USER_SOCKET", &rel);
    });
    let q = |n: &str| format!("{n}-{tok}@{USER}");

    // Listed in order, so once the last is shown every one before it was judged.
    wait_until(Duration::from_secs(20), || {
        d.has(&q("live")) && d.has(&format!("dock-{tok}"))
    })
    .unwrap_or_else(|| panic!("not listed: {:?}; log:\n{}", d.names(), d.log_text()));
    let mine = fs::read_to_string(d.path().join(q("live")).join("etc/os-release"));
    assert_eq!(
        mine.unwrap(),
        format!("NAME=mine-{tok}\n"),
        "the user's own container"
    );
    let ok = d.path().join(q("ok"));
    assert_eq!(fs::read_to_string(ok.join("hello")).unwrap(), "from-upper");
    assert_eq!(fs::read_to_string(ok.join("base")).unwrap(), "from-lower");
    // Shown only as the user's processes could read them (`idmap`): root's 0600 files in the
    // user's running container, stopped view and `.diff` view are listed, never read.
    for planted in [
        d.path().join(q("live")).join("etc/planted"),
        ok.join("planted"),
        d.path().join(".diff").join(q("ok")).join("planted"),
    ] {
        assert!(fs::metadata(&planted).is_ok(), "{planted:?} is listed");
        let e = fs::read(&planted).map(|_| ()).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{planted:?}"
        );
    }

    // Another process's PID (dockerd's: the host's root), the user's own plain process (also
    // the host's root), and a name with control characters: never shown.
    let names = d.names();
    for refused in ["hostroot", "plain", "evil"] {
        assert!(
            !names
                .iter()
                .any(|n| n.contains(refused) && n.contains(&tok)),
            "{refused} is shown: {names:?}"
        );
    }
    assert!(
        names.iter().all(|n| !n.chars().any(char::is_control)),
        "{names:?}"
    );
    let log = d.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(log.contains("refused"), "no refusal logged:\n{log}");

    // `UpperDir=/etc` and a symlink to /etc: listed, with the reason, never shown.
    let etc = d.path().join(q("etc"));
    assert!(fs::read(etc.join("shadow")).is_err());
    assert!(fs::read(d.path().join(".diff").join(q("etc")).join("shadow")).is_err());
    let why = ctrfsd_xattr(&etc, "unavailable").unwrap_or_default();
    assert!(why.contains("refused") && why.contains("/etc"), "{why:?}");
    let linked = d.path().join(q("linked"));
    assert!(fs::read(linked.join("shadow")).is_err());
    assert!(fs::read(d.path().join(".diff").join(q("linked")).join("shadow")).is_err());
    assert!(ctrfsd_xattr(&linked, "unavailable").is_some());

    // Labels neither place nor hide: no `k8s/...` from a user, the sandbox is listed.
    assert!(!d.path().join("k8s").join(&ns).exists());
    assert!(d.has(&q("kube")) && d.has(&q("sandbox")), "{:?}", d.names());

    // Another runtime's id stays that runtime's alias.
    let target = fs::read_link(d.path().join(&dock_id)).unwrap();
    assert!(
        target.to_string_lossy().ends_with(&format!("dock-{tok}")),
        "{target:?}"
    );
    // And so does its short id, though the user's id shares it (before, it resolved nothing).
    let short = fs::read_link(d.path().join(&dock_id[..12])).unwrap();
    assert!(
        short.to_string_lossy().ends_with(&format!("dock-{tok}")),
        "{short:?}"
    );
    assert!(d.has(&q("prefix")), "{:?}", d.names());
    never_host(&d, &tok, &marker);
}

/// Issue 13, section 2: one endless event object must not grow ctrfsd without bound.
#[test]
fn an_endless_event_object_is_cut_off() {
    let tok = token();
    let mut fake = Fake::new(&tok);
    fake.serve(&serde_json::json!({"endless": true, "containers": []}));
    let rel = fake.rel("api.sock");
    let d = Daemon::start_with(&["--runtime", "podman"], |c| {
        c.env("CTRFSD_USER_SOCKET", &rel);
    });
    let rss = || {
        let s = fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut max = 0;
    // Cut off at its limit, ctrfsd reconnects: a second events connection.
    let took = wait_until(Duration::from_secs(120), || {
        max = max.max(rss());
        fake.stats()["events_connections"].as_u64().unwrap_or(0) >= 2
    });
    let sent = fake.stats()["events_bytes"].as_u64().unwrap_or(0);
    eprintln!("endless event: {sent} bytes sent, ctrfsd VmRSS at most {max} KiB, took {took:?}");
    assert!(
        took.is_some(),
        "never cut off ({sent} bytes sent; max RSS {max} KiB)"
    );
    assert!(max < 128 * 1024, "ctrfsd grew to {max} KiB");
}

/// A user's endpoint that sends its container list one byte a second: the answer is cut off
/// at its time limit (30 s, said in the log) and the list asked again, instead of the user's
/// watcher waiting forever.
#[test]
fn a_trickling_answer_is_cut_off_at_its_time_limit() {
    let tok = token();
    let mut fake = Fake::new(&tok);
    fake.serve(&serde_json::json!({"trickle": true, "containers": []}));
    let rel = fake.rel("api.sock");
    let d = Daemon::start_with(&["--runtime", "podman"], |c| {
        c.env("CTRFSD_USER_SOCKET", &rel);
    });
    let took = wait_until(Duration::from_secs(120), || {
        fake.stats()["lists"].as_u64().unwrap_or(0) >= 2
    });
    assert!(
        took.is_some(),
        "the trickling list was never given up; ctrfsd's log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text()
            .contains("did not finish its answer within 30 s"),
        "the reason is logged:\n{}",
        d.log_text()
    );
}

/// Issue 13, section 2: a user's socket that is a symlink to Docker's is refused, with a
/// logged reason, and no Docker container appears under the user's name.
#[test]
fn a_socket_link_to_dockers_is_refused() {
    let tok = token();
    let fake = Fake::new(&tok);
    let dock = docker_run(
        &format!("dock-{tok}"),
        docker_image(),
        &["/bin/sleep", "100000"],
    );
    run_as_user(&[
        "ln",
        "-s",
        "/var/run/docker.sock",
        fake.run.join("link.sock").to_str().unwrap(),
    ]);
    let rel = fake.rel("link.sock");
    let d = Daemon::start_with(&["--runtime", "podman"], |c| {
        c.env("CTRFSD_USER_SOCKET", &rel);
    });
    within(Duration::from_secs(10), "the refusal is logged", || {
        d.log_text().contains("not watched")
    });
    assert!(
        holds_for(WITHIN_API, || !d.names().iter().any(|n| n.contains(&tok))),
        "Docker's container is shown under the user's name: {:?}",
        d.names()
    );
    drop(dock);
}

/// Issue 13, section 2: 20,000 junk containers on one user's endpoint. At most
/// `MAX_USER_CONTAINERS` are shown, the rest are left out with a logged reason, and a Docker
/// container started meanwhile appears as promptly as ever (each change costs what it changes:
/// src/registry/claims.rs; the time is measured by scripts/bench-events.sh, not here).
#[test]
fn twenty_thousand_junk_containers_are_bounded() {
    use ctrfsd::runtime::docker::MAX_USER_CONTAINERS as CAP;
    let tok = token();
    let mut fake = Fake::new(&tok);
    let junk: Vec<serde_json::Value> = (0..20_000)
        .map(|i| serde_json::json!({"Id": format!("junk{tok}{i:06}"), "Name": format!("junk{i}-{tok}")}))
        .collect();
    fake.serve(&serde_json::json!({"endless": false, "containers": junk}));
    let rel = fake.rel("api.sock");
    let d = Daemon::start_with(&["--runtime", "docker", "--runtime", "podman"], |c| {
        c.env("CTRFSD_USER_SOCKET", &rel);
    });
    let shown = || {
        d.names()
            .iter()
            .filter(|n| n.starts_with("junk") && n.contains(&tok))
            .count()
    };
    within(Duration::from_secs(600), "the cap is reached", || {
        shown() >= CAP
    });
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "lists 20000 containers; a user's endpoint shows at most {CAP}"
        )),
        "the cap is not logged"
    );
    let dock = docker_run(
        &format!("dock-{tok}"),
        docker_image(),
        &["/bin/sleep", "100000"],
    );
    within(WITHIN_API, "the Docker container is listed", || {
        d.has(&dock.0)
    });
    assert_eq!(shown(), CAP, "more than the cap shown");
}
