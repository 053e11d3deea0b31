//! End-to-end tests against a real Docker engine (started by scripts/setup.sh), with an image
//! built by `docker import` from busybox-static and local files: no registry is used.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-test:1";
const MARKER: &str = "/etc/ctrfsd-docker-host-marker";
const MARKER_TEXT: &str = "HOST-ONLY-DOCKER-MARKER-7f3a";

/// Builds the test image once per test binary.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        fs::write(MARKER, MARKER_TEXT).unwrap();
        busybox_rootfs(
            r,
            &[
                "etc",
                "usr/share/zoneinfo",
                "var/log/app",
                "tmp",
                "proc",
                "sys",
                "dev",
            ],
            &["sh", "sleep", "echo", "cat"],
        );
        fs::write(r.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
        symlink("/usr/share/zoneinfo/UTC", r.join("etc/localtime")).unwrap();
        symlink("../../usr/share/zoneinfo/UTC", r.join("var/log/zone-rel")).unwrap();
        symlink(MARKER, r.join("evil")).unwrap();
        symlink(
            format!("../../../../..{MARKER}"),
            r.join("var/log/evil-rel"),
        )
        .unwrap();
        fs::write(
            r.join("var/log/app/app.log"),
            "boot ok\nan ERROR happened\n",
        )
        .unwrap();
        fs::write(r.join("etc/os-release"), "NAME=ctrfsd-test\n").unwrap();
    })
}

/// A running test container of [`image`] that runs `script` in its shell.
fn run(name: &str, script: &str) -> DockerCtr {
    docker_run(name, image(), &["/bin/sh", "-c", script])
}

fn sleeper(name: &str) -> DockerCtr {
    run(name, "exec sleep 100000")
}

fn docker_daemon() -> Daemon {
    image();
    Daemon::start(&[])
}

#[test]
fn names_follow_start_rename_recreate_and_stop() {
    let d = docker_daemon();
    let t = token();
    let (n1, n2) = (format!("ctrfsd-a-{t}"), format!("ctrfsd-b-{t}"));
    let mut c = sleeper(&n1);
    let took =
        wait_until(Duration::from_secs(5), || d.has(&n1)).expect("new container never listed");
    eprintln!("start -> listed: {took:?}");
    assert!(took <= WITHIN, "start took {took:?}");
    c.exec("echo one > /inst");
    assert_eq!(
        fs::read_to_string(d.path().join(&n1).join("inst")).unwrap(),
        "one\n"
    );

    docker_ok(&["rename", &n1, &n2]);
    c.0 = n2.clone();
    let took =
        wait_until(Duration::from_secs(5), || !d.has(&n1) && d.has(&n2)).expect("rename not seen");
    eprintln!("rename -> listed: {took:?}");
    assert!(took <= WITHIN, "rename took {took:?}");
    assert!(
        fs::metadata(d.path().join(&n1)).is_err(),
        "old name still resolves"
    );
    assert_eq!(
        fs::read_to_string(d.path().join(&n2).join("inst")).unwrap(),
        "one\n"
    );

    // Remove and recreate under the same name: never the old instance's files.
    drop(c);
    let c = run(&n2, "echo two > /inst; exec sleep 100000");
    let inst = d.path().join(&n2).join("inst");
    let mut reads = Vec::new();
    let took = wait_until(Duration::from_secs(5), || {
        let r = fs::read_to_string(&inst).ok();
        let done = r.as_deref() == Some("two\n");
        reads.push(r);
        done
    })
    .expect("recreated container not served");
    eprintln!("recreate -> served: {took:?}");
    assert!(took <= WITHIN, "recreate took {took:?}");
    assert!(
        reads.iter().all(|r| r.as_deref() != Some("one\n")),
        "old instance served: {reads:?}"
    );

    // Stopped: still listed (as `docker ps -a` lists it), now from its layers; removed: gone.
    let dir = d.path().join(&n2);
    docker_ok(&["stop", "-t", "0", &c.0]);
    let took = wait_until(Duration::from_secs(5), || {
        ctrfsd_xattr(&dir, "state").as_deref() == Some("exited")
    })
    .expect("stopped container not shown as exited");
    eprintln!("stop -> shown exited: {took:?}");
    assert!(took <= WITHIN, "stop took {took:?}");
    assert_eq!(fs::read_to_string(&inst).unwrap(), "two\n");
    docker_ok(&["rm", &c.0]);
    let took =
        wait_until(Duration::from_secs(5), || !d.has(&n2)).expect("removed container still listed");
    eprintln!("rm -> gone: {took:?}");
    assert!(took <= WITHIN, "rm took {took:?}");
}

#[test]
fn grep_glob_and_tail_f_work_across_containers() {
    let d = docker_daemon();
    let t = token();
    let a = sleeper(&format!("ctrfsd-ga-{t}"));
    let b = sleeper(&format!("ctrfsd-gb-{t}"));
    wait_until(Duration::from_secs(5), || d.has(&a.0) && d.has(&b.0)).expect("not listed");
    let m = d.path().display();

    let out = sh(&format!("grep -r ERROR {m}/{}/var/log", a.0));
    assert!(
        stdout(&out).contains("app/app.log:an ERROR happened"),
        "{out:?}"
    );

    let out = sh(&format!("ls -d {m}/*/etc"));
    for c in [&a, &b] {
        assert!(
            stdout(&out).contains(&format!("{m}/{}/etc", c.0)),
            "{}",
            stdout(&out)
        );
    }
    let out = sh(&format!("cat {m}/ctrfsd-g*-{t}/etc/os-release"));
    assert_eq!(stdout(&out), "NAME=ctrfsd-test\n".repeat(2));

    let got = tail_follow(&d.path().join(&a.0).join("var/log/app/app.log"), || {
        a.exec("echo appended-by-container >> /var/log/app/app.log")
    });
    assert_eq!(
        got.as_deref(),
        Ok("appended-by-container\n"),
        "tail -f did not show the line"
    );
}

#[test]
fn links_resolve_inside_the_container_and_never_escape() {
    let d = docker_daemon();
    let c = sleeper(&format!("ctrfsd-l-{}", token()));
    wait_until(Duration::from_secs(5), || d.has(&c.0)).expect("not listed");
    let v = d.path().join(&c.0);
    let host = Path::new("/proc").join(c.pid().to_string()).join("root");
    // The kernel's own view reads the host's files through these links ...
    assert_eq!(fs::read_to_string(host.join("evil")).unwrap(), MARKER_TEXT);
    // ... ctrfsd reads the container's, or nothing.
    assert_eq!(
        fs::read_to_string(v.join("etc/localtime")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    assert_eq!(
        fs::read_to_string(v.join("var/log/zone-rel")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    for link in ["evil", "var/log/evil-rel"] {
        let r = fs::read_to_string(v.join(link));
        assert!(r.is_err(), "{link}: {r:?}");
    }
    for cmd in [
        format!("grep -r {MARKER_TEXT} {}", v.display()),
        format!("grep -R {MARKER_TEXT} {}", v.display()),
        format!("tar -h -cf - -C {} . 2>/dev/null", v.display()),
    ] {
        let out = sh(&format!("timeout 120 {cmd}"));
        assert_ne!(out.status.code(), Some(124), "`{cmd}` did not finish");
        assert!(
            !stdout(&out).contains(MARKER_TEXT),
            "`{cmd}` printed the host marker"
        );
    }
}

#[test]
fn a_restarted_container_is_served_from_its_new_process() {
    let d = docker_daemon();
    let c = sleeper(&format!("ctrfsd-r-{}", token()));
    wait_until(Duration::from_secs(5), || d.has(&c.0)).expect("not listed");
    c.exec("echo kept > /state");
    let before = c.pid();
    let old_dir = d.path().join(&c.0).join("etc");
    assert!(fs::read_dir(&old_dir).is_ok());
    docker_ok(&["restart", "-t", "0", &c.0]);
    let after = c.pid();
    assert_ne!(before, after);
    let state = d.path().join(&c.0).join("state");
    // Between the stop and the start event the container is shown from its layers, which
    // hold `/state` too: wait for the new process's registration, not just for the file.
    let registered = format!("pid {after})");
    let took = wait_until(Duration::from_secs(5), || {
        d.has(&c.0)
            && d.log_text().contains(&registered)
            && fs::read_to_string(&state)
                .map(|s| s == "kept\n")
                .unwrap_or(false)
    });
    let log = d.log_text();
    let took =
        took.unwrap_or_else(|| panic!("restarted container not served from pid {after}:\n{log}"));
    eprintln!("restart -> served: {took:?}");
    // The writable layer survives the restart, and the path now leads to the new process's root.
    assert!(fs::read_to_string(d.path().join(&c.0).join("etc/os-release")).is_ok());
}

#[test]
fn pause_kill_and_recreate_while_host_tools_hold_files_open() {
    use std::io::{Read, Seek, SeekFrom};
    let d = docker_daemon();
    let name = format!("ctrfsd-pk-{}", token());
    let c = run(
        &name,
        "i=0; while [ $i -lt 2000 ]; do echo first-instance-line-$i; i=$((i+1)); done > /big; \
         echo ready > /ready; exec sleep 100000",
    );
    let dir = d.path().join(&name);
    // Served from its process's root, not from the created view of its layers that shows
    // `/ready` too for the moment before the start event arrives: a file opened there and read
    // after the start answers ESTALE (README, Limitations: "Open files in the default mode").
    wait_until(Duration::from_secs(5), || {
        dir.join("ready").exists() && ctrfsd_xattr(&dir, "state").as_deref() == Some("running")
    })
    .expect("not served");
    let mut held = fs::File::open(dir.join("big")).unwrap();
    let mut head = [0u8; 22];
    held.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"first-instance-line-0\n");

    // Paused (frozen): its files are still read, nothing waits on the frozen processes.
    docker_ok(&["pause", &name]);
    let out = sh(&format!(
        "timeout 20 grep -c first-instance {}/big",
        dir.display()
    ));
    assert_eq!(stdout(&out), "2000\n", "{out:?}");
    assert_eq!(ctrfsd_xattr(&dir, "state").as_deref(), Some("running"));
    docker_ok(&["unpause", &name]);

    // Killed: the open file keeps reading as on a real filesystem; new lookups see the
    // stopped container's files (its writable layer) within a second.
    docker_ok(&["kill", &name]);
    let took = wait_until(Duration::from_secs(5), || {
        ctrfsd_xattr(&dir, "state").as_deref() == Some("exited")
    })
    .expect("killed container not shown exited");
    assert!(took <= WITHIN, "kill -> exited took {took:?}");
    let mut rest = String::new();
    held.read_to_string(&mut rest).unwrap();
    assert!(
        rest.ends_with("first-instance-line-1999\n"),
        "{}",
        &rest[rest.len() - 40..]
    );
    assert!(
        fs::read_to_string(dir.join("big"))
            .unwrap()
            .starts_with("first-instance")
    );

    // Removed and recreated under the same name: new lookups see only the new instance within
    // a second; the handle opened on the old one still reads the old bytes.
    drop(c);
    let _c = run(&name, "echo second-instance > /big; exec sleep 100000");
    let mut seen = Vec::new();
    let took = wait_until(Duration::from_secs(5), || {
        let r = fs::read_to_string(dir.join("big")).ok();
        let done = r.as_deref() == Some("second-instance\n");
        seen.push(r.map(|s| s.lines().next().unwrap_or("").to_string()));
        done
    })
    .expect("recreated container not served");
    assert!(took <= WITHIN, "recreate -> served took {took:?}");
    assert!(
        seen.iter()
            .flatten()
            .all(|l| l == "second-instance" || l.starts_with("first-instance")),
        "{seen:?}"
    );
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"first-instance-line-0\n");
}
