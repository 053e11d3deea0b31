//! Start-up errors, exit codes and the daemon's life: the contract scripts rely on.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Usage: ctrfsd [OPTIONS] [MOUNTPOINT]") && out.contains("--container"),
        "{out}"
    );
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    // "ctrfsd 0.1.0 (commit 0123456789ab)", "-dirty" appended for uncommitted changes.
    let version = out.trim();
    let rest = version
        .strip_prefix(&format!("ctrfsd {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{version}"));
    let hash = rest.trim_end_matches(')').trim_end_matches("-dirty");
    assert!(
        hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
}

#[test]
fn bad_option_values_are_usage_errors() {
    for (args, want) in [
        (
            &["--cache-ttl", "0"][..],
            "--cache-ttl <SECS>': 0 is not in 1..=3600",
        ),
        (
            &["--cache-ttl", "3601"],
            "--cache-ttl <SECS>': 3601 is not in 1..=3600",
        ),
        (&["--threads", "0"], "--threads <N>': 0 is not in 1..=64"),
        (&["--threads", "65"], "--threads <N>': 65 is not in 1..=64"),
        (&["--resync", "0"], "--resync <SECS>': must be at least 1"),
        (
            &["--max-detached", "0"],
            "--max-detached <N>': must be at least 1",
        ),
        (
            &["--max-detached", "x"],
            "--max-detached <N>': invalid digit",
        ),
        (
            &["--runtime", "none", "--runtime", "docker"],
            "--runtime none cannot be combined with other runtimes",
        ),
        (
            &["--runtime", "lxc"],
            "invalid value 'lxc' for '--runtime <NAME>'",
        ),
    ] {
        // The mountpoint does not exist: parsing must fail before it is looked at.
        let mut argv = args.to_vec();
        argv.push("/nonexistent-ctrfsd-mountpoint");
        let (code, out, err) = run(&argv);
        assert_eq!(code, Some(2), "{argv:?}: {err}");
        assert!(err.contains(want), "{argv:?}: {err}");
        assert!(out.is_empty(), "{argv:?}: {out}");
        // --list-runtimes checks the same values.
        argv.pop();
        argv.push("--list-runtimes");
        assert_eq!(run(&argv).0, Some(2), "{argv:?}");
    }
}

#[test]
fn bad_input_gets_one_line_naming_the_thing_and_the_reason() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let missing = dir.path().join("missing");
    let me = std::process::id();
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (vec![], 2, "MOUNTPOINT".into()),
        (
            vec![missing.display().to_string()],
            3,
            format!("mountpoint {}: does not exist", missing.display()),
        ),
        (
            vec![file.display().to_string()],
            3,
            format!("mountpoint {}: not a directory", file.display()),
        ),
        (
            vec![
                "--runtime".into(),
                "none".into(),
                "--container".into(),
                "web".into(),
                dir.path().display().to_string(),
            ],
            2,
            "--container web: expected NAME=PID".into(),
        ),
        (
            vec![
                "--runtime".into(),
                "none".into(),
                "--container".into(),
                "web=999999999".into(),
                dir.path().display().to_string(),
            ],
            2,
            "--container web=999999999: process 999999999".into(),
        ),
        // One process under two names: the second would replace the first unseen.
        (
            vec![
                "--runtime".into(),
                "none".into(),
                "--container".into(),
                format!("a={me}"),
                "--container".into(),
                format!("b={me}"),
                dir.path().display().to_string(),
            ],
            2,
            format!("--container b={me}: process {me} is already given as a"),
        ),
        (
            vec![
                "--log-level".into(),
                "loud".into(),
                dir.path().display().to_string(),
            ],
            2,
            "--log-level loud".into(),
        ),
    ];
    for (args, want_code, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(want_code), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    // Not root: refused before touching anything.
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            bin(),
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must run as root"));
}

#[test]
fn refuses_a_live_mount_and_cleans_a_dead_one() {
    let c = FakeContainer::start(|r| fs::write(r.join("f"), "data").unwrap(), "");
    let arg = format!("c={}", c.pid());
    let mut d = Daemon::start(&["--runtime", "none", "--container", &arg]);
    let mnt = d.path().to_path_buf();
    // A second daemon on the same live mount is refused.
    let (code, _, err) = run(&["--runtime", "none", mnt.to_str().unwrap()]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("already mounted"), "{err}");
    // Killed without unmounting: the mountpoint is dead ...
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let e = fs::read_dir(&mnt).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
    let (code, _, err) = run(&["--check", mnt.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the mount is dead"), "{err}");
    // ... and the next start cleans it up and serves again.
    let mut d2 = Command::new(bin())
        .args(["--runtime", "none", "--container", &arg])
        .arg(&mnt)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        fs::read_to_string(mnt.join("c/f"))
            .map(|s| s == "data")
            .unwrap_or(false)
    });
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&d2),
        rustix::process::Signal::TERM,
    );
    let status = d2.wait().unwrap();
    assert!(ok.is_some(), "restart over a dead mount did not serve");
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&mnt));
}

/// `ctrfsd --check` (the DaemonSet's probes): 0 for a live mount; 1 with the reason for no
/// mount, another filesystem, and a daemon that does not answer, within its 2 s.
#[test]
fn check_says_whether_a_live_ctrfsd_answers() {
    let d = Daemon::start(&["--runtime", "none"]);
    let mnt = d.path().to_str().unwrap().to_owned();
    let (code, out, err) = run(&["--check", &mnt]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ctrfsd answers"), "{out}");
    let plain = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["--check", plain.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing is mounted there"), "{err}");
    let (code, _, err) = run(&["--check", "/proc"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the mount there is proc, not ctrfsd"), "{err}");
    // A wedged daemon (stopped): no answer, said within the deadline; answers again after.
    let pid = rustix::process::Pid::from_raw(d.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    // SIGSTOP takes effect per thread as each next leaves the kernel: wait until every
    // thread shows state T, or a worker could still answer.
    let stopped = || {
        fs::read_dir(format!("/proc/{}/task", d.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .all(|t| {
                fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
                    .unwrap_or(true)
            })
    };
    assert!(
        wait_until(Duration::from_secs(10), stopped).is_some(),
        "ctrfsd did not stop"
    );
    let (code, _, err) = run(&["--check", &mnt]);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("did not answer within 2 s"), "{err}");
    let (code, _, err) = run(&["--check", &mnt]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sigterm_with_busy_files_unmounts_and_exits_zero() {
    let c = FakeContainer::start(|r| fs::write(r.join("f"), "data").unwrap(), "");
    let mut d = Daemon::start(&[
        "--runtime",
        "none",
        "--container",
        &format!("c={}", c.pid()),
    ]);
    // A shell sitting in the mount and a file held open keep it busy.
    let mut busy = Command::new("sh")
        .arg("-c")
        .arg("exec 3< f; sleep 30")
        .current_dir(d.path().join("c"))
        .spawn()
        .unwrap();
    let held = d.path().join("c/f");
    wait_until(Duration::from_secs(10), || {
        fs::read_link(format!("/proc/{}/fd/3", busy.id())).is_ok_and(|p| p == held)
    })
    .expect("the shell never held the file open");
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log_text());
    assert!(!is_mounted(d.path()), "mount left behind");
    assert!(d.log_text().contains("SIGTERM: unmounting"));
    // It was busy when asked to go (a plain unmount would have worked otherwise).
    assert!(
        d.log_text().contains("busy, detaching lazily"),
        "log:\n{}",
        d.log_text()
    );
    let _ = busy.kill();
    let _ = busy.wait();
}

#[test]
fn docker_unreachable_at_start_still_serves_what_is_known() {
    let c = FakeContainer::start(|r| fs::write(r.join("f"), "data").unwrap(), "");
    let d = Daemon::start_with(&["--container", &format!("c={}", c.pid())], |cmd| {
        cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    });
    assert_eq!(fs::read_to_string(d.path().join("c/f")).unwrap(), "data");
    let warned = wait_until(Duration::from_secs(5), || d.log_text().contains("WARN"));
    assert!(
        warned.is_some(),
        "no warning about Docker:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("docker (/nonexistent/docker.sock)") && log.contains("retrying"),
        "{log}"
    );
}
