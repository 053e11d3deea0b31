//! Stopped and crashed containers (issue #5), against a real Docker engine: browsed read-only
//! from their layers through a detached overlay mount, compared entry by entry with
//! `docker export`; the `.diff` view compared with `docker diff`; start/stop/remove cycles; a
//! container whose layers cannot be assembled.
//!
//! The image has three layers of its own making (no registry, no builder): an imported base,
//! then two `docker commit`s, one deleting a file (a whiteout) and one replacing a directory (an
//! opaque directory).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const BASE: &str = "ctrfsd-pm-base:1";
const IMAGE: &str = "ctrfsd-pm:1";

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        busybox_rootfs(
            r,
            &[
                "etc",
                "opt/conf.d",
                "var/log/app/old",
                "tmp",
                "proc",
                "sys",
                "dev",
            ],
            &["sh", "sleep", "echo", "cat", "rm", "mkdir"],
        );
        fs::write(r.join("etc/os-release"), "NAME=ctrfsd-pm\n").unwrap();
        fs::write(r.join("etc/secret-in-base"), "deleted by layer 2\n").unwrap();
        fs::write(r.join("opt/conf.d/a.conf"), "a\n").unwrap();
        fs::write(r.join("opt/conf.d/b.conf"), "b\n").unwrap();
        fs::write(r.join("var/log/app/old/rotated.log"), "old\n").unwrap();
        fs::write(r.join("var/log/app/app.log"), "boot ok\n").unwrap();
        std::os::unix::fs::symlink("/etc/os-release", r.join("etc/abs-link")).unwrap();
        docker_import(r, BASE);
        // Layer 2: a whiteout. Layer 3: conf.d replaced whole (an opaque directory).
        let mut from = BASE.to_string();
        for (i, script) in [
            "rm /etc/secret-in-base",
            "rm -r /opt/conf.d && mkdir /opt/conf.d && echo c > /opt/conf.d/c.conf",
        ]
        .iter()
        .enumerate()
        {
            let tmp = format!("ctrfsd-pm-build-{}-{i}", token());
            docker_ok(&[
                "run",
                "--network",
                "none",
                "--name",
                &tmp,
                &from,
                "/bin/sh",
                "-c",
                script,
            ]);
            let tag = format!("ctrfsd-pm-layer{i}:1");
            docker_ok(&["commit", &tmp, &tag]);
            docker_ok(&["rm", &tmp]);
            from = tag;
        }
        docker_ok(&["tag", &from, IMAGE]);
    });
    IMAGE
}

/// `docker run` (not detached) of `script`, which ends; returns once it has exited.
fn crashed(name: &str, script: &str) -> DockerCtr {
    let image = image();
    let o = docker(&[
        "run",
        "--network",
        "none",
        "--name",
        name,
        image,
        "/bin/sh",
        "-c",
        script,
    ]);
    assert!(
        o.status.code().is_some_and(|c| c != 125),
        "docker run {name}: {o:?}"
    );
    DockerCtr(name.to_string())
}

fn state(d: &Daemon, name: &str) -> Option<String> {
    ctrfsd_xattr(&d.path().join(name), "state")
}

/// Mount ids of the overlay mounts ctrfsd holds open that are in no process's mount table:
/// its detached stopped-container views.
fn detached_mounts(d: &Daemon) -> BTreeSet<u64> {
    let mut known = BTreeSet::new();
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let table = fs::read_to_string(p.path().join("mountinfo")).unwrap_or_default();
        known.extend(
            table
                .lines()
                .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok()),
        );
    }
    let mut out = BTreeSet::new();
    for fd in fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .flatten()
    {
        const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
        let overlay =
            rustix::fs::statfs(fd.path()).is_ok_and(|s| s.f_type == OVERLAYFS_SUPER_MAGIC);
        let info = fs::read_to_string(format!(
            "/proc/{}/fdinfo/{}",
            d.pid(),
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .and_then(|v| v.trim().parse().ok())
            && overlay
            && !known.contains(&id)
        {
            out.insert(id);
        }
    }
    out
}

#[test]
fn a_crashed_container_is_browsable_and_equals_docker_export() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-pm-crash-{}", token());
    let c = crashed(
        &name,
        "echo 'FATAL: cannot bind :80' >> /var/log/app/app.log; rm /etc/os-release; \
         rm -r /var/log/app/old; echo state > /tmp/written; exit 3",
    );
    let dir = d.path().join(&c.0);
    wait_until(Duration::from_secs(5), || {
        state(&d, &c.0).as_deref() == Some("exited")
    })
    .unwrap_or_else(|| panic!("exited container not shown; log:\n{}", d.log_text()));
    assert_eq!(ctrfsd_xattr(&dir, "exit_code").as_deref(), Some("3"));
    assert_eq!(
        ctrfsd_xattr(&dir, "pid"),
        None,
        "a stopped container has no pid"
    );
    assert!(ctrfsd_xattr(&dir, "finished_at").is_some_and(|f| f.starts_with("20")));

    // The host tools a user reaches for.
    let m = d.path().display();
    let out = sh(&format!("grep -r FATAL {m}/{name}/var/log"));
    assert_eq!(
        stdout(&out),
        format!("{m}/{name}/var/log/app/app.log:FATAL: cannot bind :80\n")
    );
    let out = sh(&format!("tail -n 1 {m}/{name}/var/log/app/app.log"));
    assert_eq!(stdout(&out), "FATAL: cannot bind :80\n");
    // Deleted by the container, by an image layer, replaced by an image layer: as overlayfs
    // shows them.
    for gone in [
        "etc/os-release",
        "var/log/app/old",
        "etc/secret-in-base",
        "opt/conf.d/a.conf",
    ] {
        assert!(
            fs::symlink_metadata(dir.join(gone)).is_err(),
            "{gone} shown"
        );
    }
    let conf: BTreeSet<String> = fs::read_dir(dir.join("opt/conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(conf, BTreeSet::from(["c.conf".to_string()]));
    assert_eq!(
        fs::read_to_string(dir.join("tmp/written")).unwrap(),
        "state\n"
    );
    // Absolute links stay inside the container's path.
    assert_eq!(
        fs::read_link(dir.join("etc/abs-link")).unwrap(),
        dir.join("etc/os-release")
    );
    // Read-only, and no side effect on the container.
    let w = fs::write(dir.join("tmp/new"), "x");
    assert!(w.is_err(), "a write went through: {w:?}");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", &name]),
        "exited"
    );

    // Entry by entry against `docker export` of the same container.
    let export = tempfile::tempdir().unwrap();
    let out = sh(&format!(
        "docker export {name} | tar --numeric-owner -xpf - -C {}",
        export.path().display()
    ));
    assert!(out.status.success(), "docker export: {out:?}");
    let diff = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ctrfsd-diff"))
        .arg("--tree")
        .arg(export.path())
        .arg(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&diff.stdout);
    eprintln!("{report}");
    assert!(
        diff.status.success(),
        "differences from docker export:\n{report}"
    );
    let last = report.lines().last().unwrap_or("");
    assert!(last.ends_with("; 0 differences"), "{last}");
    let entries: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(entries >= 20, "only {entries} entries compared: {last}");

    // Nothing is mounted where anything else can see it: the view is a detached mount held
    // by ctrfsd alone.
    let upper = docker_ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name]);
    let tables = sh("cat /proc/*/mountinfo");
    assert!(
        !stdout(&tables).contains(&upper),
        "a mount of {upper} is visible"
    );
    assert_eq!(detached_mounts(&d).len(), 1, "one detached mount expected");
    drop(c);
    wait_until(Duration::from_secs(5), || !d.has(&name)).expect("removed container listed");
    wait_until(Duration::from_secs(5), || detached_mounts(&d).is_empty())
        .expect("the detached mount of a removed container is still held");
}

#[test]
fn the_diff_view_answers_what_docker_diff_answers() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let t = token();
    let stopped = crashed(
        &format!("ctrfsd-pm-diff-{t}"),
        "echo more >> /var/log/app/app.log; rm /etc/os-release; rm -r /var/log/app/old; \
         mkdir -p /srv/data; echo x > /srv/data/x; exit 1",
    );
    let running = docker_run(
        &format!("ctrfsd-pm-live-{t}"),
        image(),
        &[
            "/bin/sh",
            "-c",
            "rm /etc/os-release; echo y > /tmp/y; exec sleep 100000",
        ],
    );
    for c in [&stopped, &running] {
        let view = d.path().join(".diff").join(&c.0);
        wait_until(Duration::from_secs(5), || {
            view.join("tmp").exists() || view.join("srv").exists()
        })
        .unwrap_or_else(|| panic!("{} has no .diff view; log:\n{}", c.0, d.log_text()));
        let mut want = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for line in docker_ok(&["diff", &c.0]).lines() {
            let (kind, path) = line.split_once(' ').unwrap();
            want.insert(path.to_string());
            if kind == "D" {
                deleted.insert(path.to_string());
            }
        }
        let found = stdout(&sh(&format!("cd {} && find . -mindepth 1", view.display())));
        let got: BTreeSet<String> = found.lines().map(|l| l[1..].to_string()).collect();
        assert_eq!(got, want, "{}: find in .diff vs docker diff", c.0);
        let links = stdout(&sh(&format!(
            "cd {} && find . -type l -lname '(deleted)'",
            view.display()
        )));
        let got: BTreeSet<String> = links.lines().map(|l| l[1..].to_string()).collect();
        assert_eq!(got, deleted, "{}: deletions", c.0);
        assert!(!deleted.is_empty());
        // grep searches only what the container wrote.
        let out = sh(&format!("grep -rl . {}", view.display()));
        assert!(!stdout(&out).contains("busybox"), "{}", stdout(&out));
        assert_eq!(ctrfsd_xattr(&view, "state").as_deref(), Some("diff"));
    }
}

#[test]
fn start_stop_and_remove_move_the_path_between_views() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-pm-cycle-{}", token());
    let c = DockerCtr(name.clone());
    docker_ok(&[
        "create",
        "--network",
        "none",
        "--name",
        &name,
        image(),
        "/bin/sh",
        "-c",
        "echo $$ > /tmp/pid; exec sleep 100000",
    ]);
    let dir = d.path().join(&name);
    wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("created")
    })
    .expect("created container not shown");
    // Browsing a created container starts nothing.
    assert_eq!(
        fs::read_to_string(dir.join("var/log/app/app.log")).unwrap(),
        "boot ok\n"
    );
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", &name]),
        "created"
    );
    assert_eq!(detached_mounts(&d).len(), 1);

    docker_ok(&["start", &name]);
    let took = wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("running")
            && fs::read_to_string(dir.join("tmp/pid")).is_ok()
    })
    .expect("started container not live");
    eprintln!("start -> live view: {took:?}");
    assert!(took <= WITHIN, "start took {took:?}");
    let released = wait_until(Duration::from_secs(5), || detached_mounts(&d).is_empty())
        .expect("the detached mount was not released when the container started");
    eprintln!("start -> detached mount released: {took:?} + {released:?}");
    docker_ok(&["exec", &name, "/bin/sh", "-c", "echo live > /tmp/live"]);
    assert_eq!(fs::read_to_string(dir.join("tmp/live")).unwrap(), "live\n");

    docker_ok(&["stop", "-t", "0", &name]);
    let took = wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("exited")
    })
    .expect("stopped container not shown exited");
    eprintln!("stop -> stopped view: {took:?}");
    assert!(took <= WITHIN, "stop took {took:?}");
    assert_eq!(fs::read_to_string(dir.join("tmp/live")).unwrap(), "live\n");
    assert_eq!(ctrfsd_xattr(&dir, "exit_code").as_deref(), Some("137"));

    docker_ok(&["start", &name]);
    wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("running")
    })
    .expect("restarted container not live");
    drop(c);
    let took = wait_until(Duration::from_secs(5), || !d.has(&name))
        .expect("removed container still listed");
    eprintln!("rm -f -> gone: {took:?}");
    assert!(took <= WITHIN, "rm took {took:?}");
    assert!(fs::symlink_metadata(d.path().join(".diff").join(&name)).is_err());
    assert!(detached_mounts(&d).is_empty());
}

#[test]
fn stopped_views_are_bounded_and_layers_that_cannot_be_assembled_say_why() {
    let t = token();
    let a = crashed(&format!("ctrfsd-pm-a-{t}"), "echo A > /who; exit 0");
    let b = crashed(&format!("ctrfsd-pm-b-{t}"), "echo B > /who; exit 0");
    let d = Daemon::start(&["--runtime", "docker", "--max-detached", "1"]);
    wait_until(Duration::from_secs(5), || d.has(&a.0) && d.has(&b.0)).expect("not listed");
    // One view held at a time, yet every read is right, however they alternate. A released
    // view's mount lives on only while the (bounded) read-fd cache holds one of its files, as
    // it does here for `who`: at most 2 mounts for 2 containers, never one per assembly.
    for round in 0..3 {
        for (c, who) in [(&a, "A\n"), (&b, "B\n")] {
            assert_eq!(
                fs::read_to_string(d.path().join(&c.0).join("who")).unwrap(),
                who,
                "round {round}"
            );
            let held = detached_mounts(&d).len();
            assert!(held <= 2, "round {round}: {held} detached mounts held");
        }
    }
    let dirs = stdout(&sh(&format!(
        "ls {}/{}/ {}/{}/",
        d.path().display(),
        a.0,
        d.path().display(),
        b.0
    )));
    assert!(dirs.matches("who").count() == 2, "{dirs}");

    // `--running-only` does not show them at all, once it has listed what Docker has (it
    // says so after its first full list, before following events).
    let r = Daemon::start(&["--runtime", "docker", "--running-only"]);
    wait_until(Duration::from_secs(10), || {
        r.log_text()
            .contains(": connected; following container events")
    })
    .unwrap_or_else(|| panic!("never listed Docker's containers; log:\n{}", r.log_text()));
    assert!(!r.has(&a.0) && !r.has(&b.0), "{:?}", r.names());
    drop(r);

    // Layers gone (moved away here, and put back): listed, with the reason; never shown as an
    // empty directory. A layer that is gone answers ENOENT, as the container's removal (the
    // usual reason) will.
    let name = format!("ctrfsd-pm-gone-{t}");
    let c = crashed(&name, "echo x > /x; exit 0");
    let upper = docker_ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name]);
    let aside = format!("{upper}.ctrfsd-test-aside");
    fs::rename(&upper, &aside).unwrap();
    struct Restore(String, String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = fs::rename(&self.1, &self.0);
        }
    }
    let restore = Restore(upper.clone(), aside);
    let dir = d.path().join(&name);
    // Exited as the runtime reports it (not the live instance of the moment it ran).
    wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("exited")
    })
    .expect("not listed as exited");
    let err = fs::read_dir(&dir).map(|_| ()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    let out = sh(&format!("ls {}", dir.display()));
    assert!(!out.status.success(), "an empty listing: {out:?}");
    let why = ctrfsd_xattr(&dir, "unavailable").expect("no user.ctrfsd.unavailable");
    assert!(why.contains(&upper) && why.contains("gone"), "{why}");
    assert!(
        d.log_text().contains(&why),
        "reason not logged:\n{}",
        d.log_text()
    );
    drop(restore);
    drop(c);
    for c in [a, b] {
        drop(c);
    }
}

#[test]
fn a_stopped_container_with_a_host_escaping_link_stays_contained() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let m = HostMarker::plant();
    let marker = m.path.display().to_string();
    let name = format!("ctrfsd-pm-evil-{}", token());
    let _c = crashed(
        &name,
        &format!(
            "ln -s {marker} /evil-abs; ln -s ../../../../../..{marker} /tmp/evil-rel; \
             mkdir -p /a/b; ln -s ../../../../../../ /a/b/up; exit 2"
        ),
    );
    wait_until(Duration::from_secs(5), || {
        state(&d, &name).as_deref() == Some("exited")
    })
    .expect("not shown");
    let v = d.path().join(&name);
    for link in ["evil-abs", "tmp/evil-rel"] {
        assert!(
            fs::read_to_string(v.join(link)).is_err(),
            "{link} read the host"
        );
    }
    for cmd in [
        format!("grep -r {} {}", m.content, v.display()),
        format!("grep -R {} {}", m.content, v.display()),
        format!("cat {}/a/b/up{marker}", v.display()),
        format!("tar -h -cf - -C {} . 2>/dev/null", v.display()),
    ] {
        let out = sh(&format!("timeout 60 {cmd}"));
        assert_ne!(out.status.code(), Some(124), "`{cmd}` did not finish");
        assert!(
            !stdout(&out).contains(&m.content),
            "`{cmd}` printed the host marker"
        );
    }
    assert!(m.path.exists());
}
