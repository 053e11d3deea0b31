//! Honest permissions: the kernel's rules apply to every caller through the mount (a uid-0
//! process without capabilities gets what `/proc/<pid>/root` gives it), and `--allow-group`
//! opens the mount to one host group and to nobody else, whatever the kernel has cached.
//! Real Docker containers, real users (scripts/setup.sh creates ctrfsd-member, in group
//! ctrfsd-readers, and ctrfsd-outsider).

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-perm:1";
const GROUP: &str = "ctrfsd-readers";
const MEMBER: &str = "ctrfsd-member";
const OUTSIDER: &str = "ctrfsd-outsider";

/// The test image: files of every kind of permission, owned as a tar made as root keeps them.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        busybox_rootfs(r, &["etc", "root", "home/alice", "srv"], &["sh", "sleep"]);
        let file = |p: &str, mode: u32, uid: u32| {
            fs::write(r.join(p), format!("content of {p}\n")).unwrap();
            fs::set_permissions(r.join(p), fs::Permissions::from_mode(mode)).unwrap();
            chown(r.join(p), Some(uid), Some(uid)).unwrap();
        };
        file("srv/public", 0o644, 0);
        file("srv/mode000", 0o000, 0);
        file("srv/root600", 0o600, 0);
        file("home/alice/private", 0o600, 1000);
        file("root/.profile", 0o600, 0);
        chown(r.join("home/alice"), Some(1000), Some(1000)).unwrap();
        fs::set_permissions(r.join("home/alice"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(r.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    })
}

/// A container of the test image with no capabilities (so a capability-less uid-0 caller may
/// reach its `/proc/<pid>/root`), and its PID.
fn container() -> (DockerCtr, String) {
    let name = format!("ctrfsd-perm-{}", token());
    let c = docker_run_with(&name, &["--cap-drop", "ALL"], image(), &["sleep", "100000"]);
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    (c, pid)
}

/// Runs `argv` as uid 0 with every capability dropped (bounding, inheritable and ambient
/// sets, so nothing comes back at exec).
fn as_uid0_without_caps(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=0",
            "--regid=0",
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
        ])
        .args(argv)
        .output()
        .expect("run setpriv")
}

/// Runs `argv` as `user` with its groups.
fn as_user(user: &str, argv: &[&str]) -> Output {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    assert!(
        out.status.success(),
        "user {user} is missing: run scripts/setup.sh"
    );
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
        ])
        .args(argv)
        .output()
        .expect("run setpriv")
}

/// "ok" or the error text a tool printed (its last `: `-separated part).
fn outcome(o: &Output) -> String {
    if o.status.success() {
        return "ok".into();
    }
    let err = String::from_utf8_lossy(&o.stderr);
    err.trim().rsplit(": ").next().unwrap_or("").to_string()
}

fn denied(o: &Output) -> bool {
    !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied")
}

#[test]
fn uid0_without_capabilities_gets_the_kernels_answer() {
    let (c, pid) = container();
    let d = Daemon::start(&["--runtime", "docker"]);
    let dir = d.path().join(&c.0);
    wait_until(Duration::from_secs(10), || dir.join("srv/public").exists()).expect("not served");
    let proc_root = format!("/proc/{pid}/root");
    let cases: &[(&str, &[&str])] = &[
        ("srv/public", &["cat"]),
        ("srv/mode000", &["cat"]),
        ("srv/root600", &["cat"]),
        ("home/alice/private", &["cat"]),
        ("home/alice", &["ls"]),
        ("root", &["ls", "-a"]),
        ("root/.profile", &["cat"]),
    ];
    for (path, tool) in cases {
        let run = |base: &str| {
            let p = format!("{base}/{path}");
            let mut argv = tool.to_vec();
            argv.push(&p);
            as_uid0_without_caps(&argv)
        };
        let (kernel, ours) = (run(&proc_root), run(dir.to_str().unwrap()));
        assert_eq!(
            (outcome(&ours), String::from_utf8_lossy(&ours.stdout)),
            (outcome(&kernel), String::from_utf8_lossy(&kernel.stdout)),
            "{path}: through ctrfsd (left) and /proc/<pid>/root (right)"
        );
    }
    for path in ["srv/mode000", "home/alice/private", "home/alice"] {
        let p = dir.join(path);
        let o = as_uid0_without_caps(&["cat", p.to_str().unwrap()]);
        assert!(denied(&o), "{path}: {o:?}");
    }
    // Root with its usual capabilities reads everything, as before.
    for path in ["srv/mode000", "home/alice/private", "root/.profile"] {
        assert_eq!(
            fs::read_to_string(dir.join(path)).unwrap(),
            format!("content of {path}\n")
        );
    }
}

#[test]
fn root_only_by_default() {
    let (c, _pid) = container();
    let d = Daemon::start(&["--runtime", "docker"]);
    let dir = d.path().join(&c.0);
    wait_until(Duration::from_secs(10), || dir.join("srv/public").exists()).expect("not served");
    for user in [MEMBER, OUTSIDER] {
        let o = as_user(user, &["ls", d.path().to_str().unwrap()]);
        assert!(denied(&o), "{user}: {o:?}");
        let o = as_user(user, &["cat", dir.join("srv/public").to_str().unwrap()]);
        assert!(denied(&o), "{user}: {o:?}");
    }
}

#[test]
fn allow_group_lets_members_in_and_nobody_else() {
    let (c, _pid) = container();
    let d = Daemon::start(&["--runtime", "docker", "--allow-group", GROUP]);
    let mnt = d.path();
    let dir = mnt.join(&c.0);
    wait_until(Duration::from_secs(10), || dir.join("srv/public").exists()).expect("not served");
    let p = |rel: &str| dir.join(rel).to_str().unwrap().to_string();

    // Members: in, with the files' own host-view permissions.
    let o = as_user(MEMBER, &["ls", mnt.to_str().unwrap()]);
    assert!(stdout(&o).lines().any(|l| l == c.0), "{o:?}");
    let o = as_user(MEMBER, &["cat", &p("srv/public")]);
    assert_eq!(stdout(&o), "content of srv/public\n", "{o:?}");
    for rel in ["srv/root600", "srv/mode000", "home/alice/private", "root"] {
        let o = as_user(MEMBER, &["ls", &p(rel)]);
        if rel == "srv/root600" || rel == "srv/mode000" {
            let o = as_user(MEMBER, &["cat", &p(rel)]);
            assert!(denied(&o), "member reads {rel}: {o:?}");
        } else {
            assert!(denied(&o), "member lists {rel}: {o:?}");
        }
    }
    // `.pid/` is root's, always.
    let pid_dir = mnt.join(format!(".pid/{}/etc", std::process::id()));
    let o = as_user(MEMBER, &["ls", pid_dir.to_str().unwrap()]);
    assert!(denied(&o), "member in .pid: {o:?}");
    assert!(pid_dir.is_dir(), "root lost .pid");
    // Its logs are root's, as the runtime's log file is on the host (0640 root:root).
    let log = mnt.join(".logs").join(&c.0).join("all");
    wait_until(Duration::from_secs(10), || log.exists()).expect("no log view");
    let o = as_user(MEMBER, &["cat", log.to_str().unwrap()]);
    assert!(denied(&o), "member reads the log: {o:?}");
    assert!(fs::read(&log).is_ok(), "root lost the log");
    // What a container is: readable by members, as `docker inspect` is to the docker group.
    let o = as_user(
        MEMBER,
        &[
            "getfattr",
            "--only-values",
            "-n",
            "user.ctrfsd.name",
            &p(""),
        ],
    );
    assert_eq!(stdout(&o), c.0, "{o:?}");

    // Everyone else: denied everywhere, even for what root and a member just cached.
    assert!(fs::read_to_string(dir.join("srv/public")).is_ok());
    let attr = |rel: &str| {
        vec![
            "getfattr".to_string(),
            "-n".into(),
            "user.ctrfsd.name".into(),
            p(rel),
        ]
    };
    let tries: Vec<Vec<String>> = vec![
        vec!["ls".into(), mnt.to_str().unwrap().into()],
        vec!["ls".into(), p("")],
        vec!["stat".into(), p("srv/public")],
        vec!["cat".into(), p("srv/public")],
        vec!["ls".into(), pid_dir.to_str().unwrap().into()],
        vec!["ls".into(), mnt.join(".diff").to_str().unwrap().into()],
        attr(""),
        vec![
            "getfattr".into(),
            "-n".into(),
            "user.ctrfsd.requests".into(),
            mnt.to_str().unwrap().into(),
        ],
    ];
    for argv in &tries {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = as_user(OUTSIDER, &argv);
        assert!(denied(&o), "outsider {argv:?}: {o:?}");
    }
    // A uid-0 process without capabilities is neither root (for `.pid/`, 0500) nor a member,
    // but owns the mount root: it enters as root would, under the kernel's rules.
    let o = as_uid0_without_caps(&["cat", &p("srv/public")]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn allow_group_that_does_not_exist_is_a_usage_error() {
    require_root();
    let mnt = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["--allow-group", "no-such-group-ctrfsd"])
        .arg(mnt.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "ctrfsd: --allow-group no-such-group-ctrfsd: no such group on this host"
    );
    assert!(!is_mounted(mnt.path()));
    // A numeric gid needs no group entry.
    let gid = stdout(&sh(&format!("getent group {GROUP} | cut -d: -f3")));
    assert!(
        !gid.trim().is_empty(),
        "group {GROUP} is missing: run scripts/setup.sh"
    );
    let mut d = Daemon::start(&["--runtime", "none", "--allow-group", gid.trim()]);
    let o = as_user(MEMBER, &["ls", "-ld", d.path().to_str().unwrap()]);
    assert!(stdout(&o).starts_with("dr-xr-x---"), "{o:?}");
    assert!(d.stop().success());
}
