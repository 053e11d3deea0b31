//! Docker from the tests: the `docker` client run with stdin closed, and containers that are
//! removed (with their writable layer) when the test lets go of them.

use std::process::{Command, Output, Stdio};

use super::{require_root, sh, stdout};

/// Runs `docker ARGS`, stdin closed.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Runs `docker ARGS`, fails the test unless it succeeds; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o).trim().to_string()
}

/// Whether a Docker engine answers `docker info`.
pub fn docker_answers() -> bool {
    docker(&["info"]).status.success()
}

/// Fails the test unless it runs as root with a Docker engine answering.
pub fn require_docker() {
    require_root();
    assert!(
        docker_answers(),
        "no Docker engine answers: run scripts/test.sh, which installs and starts one"
    );
}

/// A Docker container, removed (with its writable layer) on drop.
pub struct DockerCtr(pub String);

impl Drop for DockerCtr {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

impl DockerCtr {
    /// The host PID of its main process, as `docker inspect` reports it (0 once it stopped).
    pub fn pid(&self) -> u32 {
        docker_ok(&["inspect", "-f", "{{.State.Pid}}", &self.0])
            .parse()
            .unwrap()
    }

    /// `docker exec NAME /bin/sh -c SCRIPT`, failing the test unless it succeeds.
    pub fn exec(&self, script: &str) {
        docker_ok(&["exec", &self.0, "/bin/sh", "-c", script]);
    }
}

/// `docker run -d --network none --name NAME IMAGE CMD...`.
pub fn docker_run(name: &str, image: &str, cmd: &[&str]) -> DockerCtr {
    docker_run_with(name, &[], image, cmd)
}

/// [`docker_run`] with more `docker run` options (`-v`, ...) before the image.
pub fn docker_run_with(name: &str, opts: &[&str], image: &str, cmd: &[&str]) -> DockerCtr {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    args.extend_from_slice(opts);
    args.push(image);
    args.extend_from_slice(cmd);
    docker_ok(&args);
    DockerCtr(name.to_string())
}

/// `docker logs NAME` with its stdout and stderr as `which` says: "out", "err" or "all" (both,
/// as `docker logs NAME 2>&1` prints them).
pub fn docker_logs(name: &str, which: &str) -> Vec<u8> {
    let redirect = match which {
        "out" => "2>/dev/null",
        "err" => "2>&1 >/dev/null",
        _ => "2>&1",
    };
    sh(&format!("docker logs {name} {redirect}")).stdout
}
