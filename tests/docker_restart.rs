//! Docker going away while ctrfsd serves, and coming back. Its own test binary: it stops the
//! engine, which no other test may see (cargo runs test binaries one after another).

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn engine_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts dockerd the way scripts/setup.sh does, detached so it outlives this test.
fn start_engine() {
    let out = sh(
        "nohup setsid dockerd --bridge=none --iptables=false --ip-masq=false \
                  >>${TMPDIR:-/tmp}/ctrfsd-dockerd.log 2>&1 &",
    );
    assert!(out.status.success());
    wait_until(Duration::from_secs(60), engine_up).expect("dockerd did not come back");
}

#[test]
fn docker_stopping_and_returning_keeps_serving_and_resyncs() {
    require_root();
    assert!(engine_up(), "no Docker engine answers: run scripts/test.sh");
    // An image of one static binary: busybox.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.path().join("bin/busybox")).unwrap();
    fs::write(dir.path().join("marker"), "in-image\n").unwrap();
    let out = sh(&format!(
        "tar -C {} -cf - . | docker import - ctrfsd-restart:1",
        dir.path().display()
    ));
    assert!(out.status.success(), "{out:?}");
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

    // The engine goes away (without live-restore its containers stop with it).
    let out = sh("pkill -TERM -x dockerd");
    assert!(out.status.success(), "{out:?}");
    // Wait for the process to be gone, not only its socket: it stops its containers first.
    wait_until(Duration::from_secs(120), || {
        !sh("pgrep -x dockerd").status.success()
    })
    .expect("dockerd did not stop");
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
    assert!(
        d.log_text()
            .matches("docker (/var/run/docker.sock): connected")
            .count()
            >= 2,
        "{}",
        d.log_text()
    );
}
