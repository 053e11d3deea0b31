//! Docker going away while ctrfsd serves, and coming back, with and without live-restore. Its
//! own test binary: it stops the engine, which no other test may see (cargo runs test binaries
//! one after another); its tests take turns through [`ENGINE`].

mod common;

use std::fs;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// An image of one static binary, busybox, and a marker file.
fn image() -> &'static str {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path(), &[], &[]);
    fs::write(dir.path().join("marker"), "in-image\n").unwrap();
    docker_import(dir.path(), "ctrfsd-restart:1");
    "ctrfsd-restart:1"
}

/// One test at a time stops and starts the engine.
static ENGINE: Mutex<()> = Mutex::new(());

/// Starts dockerd the way scripts/setup.sh does, detached so it outlives this test.
fn start_engine() {
    start_engine_with("");
}

fn start_engine_with(extra: &str) {
    let out = sh(&format!(
        "nohup setsid dockerd --bridge=none --iptables=false --ip-masq=false {extra} \
                  >>${{TMPDIR:-/tmp}}/ctrfsd-dockerd.log 2>&1 &"
    ));
    assert!(out.status.success());
    wait_until(Duration::from_secs(60), docker_answers).expect("dockerd did not come back");
}

/// SIGTERM to dockerd; returns once the process is gone (it stops its containers first, unless
/// it runs with live-restore).
fn stop_engine() {
    let out = sh("pkill -TERM -x dockerd");
    assert!(out.status.success(), "{out:?}");
    wait_until(Duration::from_secs(120), || {
        !sh("pgrep -x dockerd").status.success()
    })
    .expect("dockerd did not stop");
}

#[test]
fn docker_stopping_and_returning_keeps_serving_and_resyncs() {
    require_root();
    let _turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        docker_answers(),
        "no Docker engine answers: run scripts/test.sh"
    );
    image();
    let name = format!("ctrfsd-dr-{}", token());
    let _ = docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "ctrfsd-restart:1",
        "/bin/busybox",
        "sleep",
        "1000000",
    ]);

    let plain = FakeContainer::start(|r| fs::write(r.join("f"), "static\n").unwrap(), "");
    let d = Daemon::start(&["--container", &format!("plain={}", plain.pid())]);
    wait_until(Duration::from_secs(5), || d.has(&name)).expect("docker container not listed");
    // Connected (its first re-list done: the machine may hold many containers), so the
    // reconnection below is a second connection.
    wait_until(Duration::from_secs(30), || {
        d.log_text()
            .contains("docker (/var/run/docker.sock): connected")
    })
    .unwrap_or_else(|| panic!("never connected:\n{}", d.log_text()));

    // The engine goes away (without live-restore its containers stop with it).
    stop_engine();
    let gone = wait_until(Duration::from_secs(30), || !d.has(&name));
    // What does not depend on Docker keeps being served, and nothing hangs.
    assert_eq!(
        fs::read_to_string(d.path().join("plain/f")).unwrap(),
        "static\n"
    );
    assert!(
        gone.is_some(),
        "a container stopped with the engine is still listed"
    );
    let warned = wait_until(Duration::from_secs(10), || d.log_text().contains("WARN"));
    assert!(
        warned.is_some(),
        "no warning when Docker went away:\n{}",
        d.log_text()
    );

    // It comes back; the container is started again: ctrfsd reconnects and re-lists.
    start_engine();
    docker_ok(&["start", &name]);
    // Running again, not only listed from its layers as a stopped container.
    let took = wait_until(Duration::from_secs(45), || {
        ctrfsd_xattr(&d.path().join(&name), "state").as_deref() == Some("running")
            && fs::read_to_string(d.path().join(&name).join("marker"))
                .is_ok_and(|s| s == "in-image\n")
    });
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(
        took.is_some(),
        "not served again after Docker returned:\n{}",
        d.log_text()
    );
    eprintln!("served again {took:?} after `docker start`");
    // The reconnection's own log line follows its re-list (which may have served it first).
    let reconnected = wait_until(Duration::from_secs(10), || {
        d.log_text()
            .matches("docker (/var/run/docker.sock): connected")
            .count()
            >= 2
    });
    assert!(reconnected.is_some(), "{}", d.log_text());
}

#[test]
fn with_live_restore_containers_outlive_the_engine_and_nothing_stale_survives() {
    require_root();
    let _turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        docker_answers(),
        "no Docker engine answers: run scripts/test.sh"
    );
    stop_engine();
    start_engine_with("--live-restore");
    let restore = Restore;
    let image = image();
    let t = token();
    let (keep, dies) = (format!("ctrfsd-lr-keep-{t}"), format!("ctrfsd-lr-dies-{t}"));
    let ctrs: Vec<DockerCtr> = [&keep, &dies]
        .iter()
        .map(|n| {
            docker_run(
                n,
                image,
                &[
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "echo alive > /alive; exec /bin/busybox sleep 1000000",
                ],
            )
        })
        .collect();
    let pid = |n: &str| docker_ok(&["inspect", "-f", "{{.State.Pid}}", n]);
    let (keep_pid, dies_pid) = (pid(&keep), pid(&dies));
    let d = Daemon::start(&["--runtime", "docker"]);
    let alive =
        |n: &str| fs::read_to_string(d.path().join(n).join("alive")).is_ok_and(|s| s == "alive\n");
    wait_until(Duration::from_secs(5), || alive(&keep) && alive(&dies)).expect("not served");

    // The engine goes; with live-restore its containers keep running and stay served.
    stop_engine();
    assert!(
        alive(&keep) && alive(&dies),
        "served no more without the engine"
    );
    assert_eq!(
        ctrfsd_xattr(&d.path().join(&keep), "pid").as_deref(),
        Some(keep_pid.as_str())
    );
    // One of them dies while nobody can report it: its pidfd says so, and it goes.
    let out = sh(&format!("kill -9 {dies_pid}"));
    assert!(out.status.success(), "{out:?}");
    let took = wait_until(Duration::from_secs(5), || !d.has(&dies))
        .expect("a container that died without its engine is still listed");
    eprintln!("died without the engine -> gone: {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    assert!(alive(&keep));

    // The engine returns: the survivor is the same process, still served; the dead one is
    // shown as exited (from its layers), not as the running container it was.
    start_engine_with("--live-restore");
    let back = wait_until(Duration::from_secs(45), || {
        ctrfsd_xattr(&d.path().join(&dies), "state").as_deref() == Some("exited")
    });
    assert!(
        back.is_some(),
        "the dead container not resynced:\n{}",
        d.log_text()
    );
    assert_eq!(pid(&keep), keep_pid);
    assert_eq!(
        ctrfsd_xattr(&d.path().join(&keep), "state").as_deref(),
        Some("running")
    );
    assert!(alive(&keep));
    drop(ctrs);
    wait_until(Duration::from_secs(5), || !d.has(&keep) && !d.has(&dies))
        .expect("removed, still listed");
    drop(restore);
}

/// Puts the engine back as scripts/setup.sh starts it (no live-restore), whatever happened.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        if sh("pgrep -x dockerd").status.success() {
            stop_engine();
        }
        start_engine();
    }
}
