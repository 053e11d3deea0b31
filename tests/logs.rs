//! `/ctr/.logs`: each container's output as files, compared line for line with what the
//! runtime's own CLI prints, through real Docker containers and their real log stores.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// A busybox image made from the host's busybox (no registry), kept between runs.
fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_docker();
        let tag = "ctrfsd-logs:1".to_string();
        if docker(&["image", "inspect", &tag]).status.success() {
            return tag;
        }
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(
            dir.path(),
            &["tmp", "var/log/nginx", "dev"],
            &[
                "sh", "echo", "printf", "sleep", "seq", "touch", "rm", "head", "tr", "cat",
            ],
        );
        docker_import(dir.path(), &tag);
        tag
    })
}

/// Runs `script` in a new container with `opts`; removed on drop.
fn run_ctr(opts: &[&str], script: &str) -> DockerCtr {
    let name = format!("ctrfsd-logs-{}", token());
    docker_run_with(&name, opts, image(), &["sh", "-c", script])
}

fn wait_exited(name: &str) {
    let done = wait_until(Duration::from_secs(60), || {
        docker_ok(&["inspect", "-f", "{{.State.Status}}", name]) == "exited"
    });
    assert!(done.is_some(), "{name} did not exit");
}

/// Waits until ctrfsd shows `name` as exited. Listed is not enough: a container that ran
/// while ctrfsd watched is listed live until its exit is noticed, then is gone for the instant
/// before it is listed again as exited, and its `.logs` view with it.
fn wait_shown_exited(d: &Daemon, name: &str) {
    let dir = d.path().join(name);
    let shown = wait_until(Duration::from_secs(5), || {
        ctrfsd_xattr(&dir, "state").as_deref() == Some("exited")
    });
    assert!(
        shown.is_some(),
        "{name} not shown exited; log:\n{}",
        d.log_text()
    );
}

fn view(d: &Daemon, name: &str) -> PathBuf {
    d.path().join(".logs").join(name)
}

/// Every view of `name` equals `docker logs` (stdout, stderr, both), and `stat` sizes equal
/// what `read` returns.
fn assert_views_match(d: &Daemon, name: &str) {
    assert_views_match_with(d, name, |w| w);
}

/// [`assert_views_match`] against `docker logs` as `fix` corrects it.
fn assert_views_match_with(d: &Daemon, name: &str, fix: impl Fn(Vec<u8>) -> Vec<u8>) {
    let dir = view(d, name);
    for (file, which) in [("stdout", "out"), ("stderr", "err"), ("all", "all")] {
        let path = dir.join(file);
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want = fix(docker_logs(name, which));
        assert!(!want.is_empty(), "docker logs {name} printed nothing");
        if got != want {
            let (g, w) = (
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
            );
            let first = g.lines().zip(w.lines()).position(|(a, b)| a != b);
            panic!(
                "{file} of {name} differs from docker logs: {} vs {} lines, first difference at \
                 line {first:?}",
                g.lines().count(),
                w.lines().count()
            );
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, got.len() as u64, "stat size of {}", path.display());
    }
}

/// A script that writes `n` numbered lines to stdout and stderr, with `long` one line of
/// 40 KiB (Docker splits it at 16 KiB), a last line without a newline, and exits 3.
///
/// Before the long line the script pauses a second: Docker copies stdout and stderr with one
/// reader each and stamps a record when its reader gets it, so a last `err` line read late
/// lands between the pieces of the long line, in `docker logs` and in the view alike (both
/// print that order), and the line is no longer whole in `all`. That happened about once in
/// ten runs on a loaded machine; the pause shapes the input, it waits for nothing.
fn chatty(n: u32, long: bool) -> String {
    let long = if long {
        "sleep 1; head -c 40960 /dev/zero | tr '\\0' x; echo;"
    } else {
        ""
    };
    format!(
        "i=0; while [ $i -lt {n} ]; do echo \"out $i ERROR-or-not\"; echo \"err $i\" >&2; \
         i=$((i+1)); done; {long} printf 'no newline'; exit 3"
    )
}

#[test]
fn json_file_views_match_docker_logs_across_rotations() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let plain = run_ctr(
        &["--log-opt", "max-size=16k", "--log-opt", "max-file=4"],
        &chatty(300, false),
    );
    let gz = run_ctr(
        &[
            "--log-opt",
            "max-size=16k",
            "--log-opt",
            "max-file=4",
            "--log-opt",
            "compress=true",
        ],
        &chatty(300, false),
    );
    let simple = run_ctr(&[], &chatty(300, true));
    for c in [&plain, &gz, &simple] {
        wait_exited(&c.0);
        // Docker compresses a rotation in the background: wait until it has settled.
        assert!(
            wait_until(Duration::from_secs(10), || {
                let p = docker_ok(&["inspect", "-f", "{{.LogPath}}", &c.0]);
                let dir = Path::new(&p).parent().unwrap().to_owned();
                !listing(&dir).iter().any(|n| n.ends_with(".tmp"))
            })
            .is_some()
        );
        wait_shown_exited(&d, &c.0);
        assert_views_match(&d, &c.0);
    }
    let p = docker_ok(&["inspect", "-f", "{{.LogPath}}", &gz.0]);
    let dir = Path::new(&p).parent().unwrap().to_owned();
    assert!(
        listing(&dir).iter().any(|n| n.ends_with(".gz")),
        "the compressed case rotated into .gz files: {:?}",
        listing(&dir)
    );
    // The line Docker split at 16 KiB is one line again, and nothing was lost.
    let all = std::fs::read_to_string(view(&d, &simple.0).join("all")).unwrap();
    let x = "x".repeat(40960);
    assert!(all.lines().any(|l| l == x), "the 40 KiB line is joined");
    assert_eq!(all.lines().filter(|l| l.starts_with("out ")).count(), 300);
    let out = std::fs::read_to_string(view(&d, &simple.0).join("stdout")).unwrap();
    assert!(
        out.ends_with("\nno newline"),
        "the last piece, without a newline"
    );
}

#[test]
fn local_driver_views_match_docker_logs_across_rotations() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(&["--log-driver", "local"], &chatty(200, true));
    // Forced rotation: `local` compresses its rotations by default (`container.log.N.gz`).
    let rotated = run_ctr(
        &[
            "--log-driver",
            "local",
            "--log-opt",
            "max-size=16k",
            "--log-opt",
            "max-file=3",
        ],
        &chatty(600, false),
    );
    // Docker 20.10's `docker logs` drops the newline after a line it split at 16 KiB in a
    // `local` store (it prints none after a piece marked partial, and the last piece is marked
    // too, with `last` in its metadata): the 40 KiB line runs into "no newline". The container
    // wrote the newline and the view keeps it, as json-file's view does.
    let x = "x".repeat(40960);
    let newline_after_long = |w: Vec<u8>| {
        String::from_utf8(w)
            .unwrap()
            .replace(&x, &format!("{x}\n"))
            .into_bytes()
    };
    for (c, long) in [(&c, true), (&rotated, false)] {
        wait_exited(&c.0);
        wait_shown_exited(&d, &c.0);
        if long {
            assert_views_match_with(&d, &c.0, newline_after_long);
        } else {
            assert_views_match(&d, &c.0);
        }
        let source = ctrfsd_xattr(&view(&d, &c.0), "log_source").unwrap();
        assert!(source.ends_with("/local-logs/container.log"), "{source}");
    }
    let all = std::fs::read_to_string(view(&d, &c.0).join("all")).unwrap();
    assert!(
        all.lines().any(|l| l == x),
        "the 40 KiB line is a line of its own"
    );
    assert!(
        all.ends_with("\nno newline"),
        "the last piece, without a newline"
    );
    let source = ctrfsd_xattr(&view(&d, &rotated.0), "log_source").unwrap();
    let dir = Path::new(&source).parent().unwrap();
    assert!(
        listing(dir).iter().any(|n| n.ends_with(".gz")),
        "the store rotated: {:?}",
        listing(dir)
    );
}

/// A driver that keeps no file of its own (`syslog`, to a loopback port nobody listens on):
/// Docker's dual-logging cache (`container-cached.log`) is what `docker logs` reads, and the
/// view reads the same.
#[test]
fn dual_logging_cache_views_match_docker_logs() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(
        &[
            "--log-driver",
            "syslog",
            "--log-opt",
            "syslog-address=udp://127.0.0.1:9",
        ],
        &chatty(100, false),
    );
    wait_exited(&c.0);
    wait_shown_exited(&d, &c.0);
    assert_views_match(&d, &c.0);
    let source = ctrfsd_xattr(&view(&d, &c.0), "log_source").unwrap();
    assert!(source.ends_with("/container-cached.log"), "{source}");
}

#[test]
fn a_store_that_is_not_kept_says_why() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(&["--log-driver", "none"], "echo hidden; sleep 100000");
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let dir = view(&d, &c.0);
    assert_eq!(listing(&dir), ["unavailable"]);
    let why = std::fs::read_to_string(dir.join("unavailable")).unwrap();
    assert!(why.contains("log driver \"none\""), "{why}");
    assert!(ctrfsd_xattr(&dir, "unavailable").is_some());
}

#[test]
fn tail_follows_a_running_container_within_a_second() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(
        &[],
        "echo started; while true; do if [ -e /tmp/go ]; then echo GO-LINE; rm /tmp/go; fi; \
         sleep 0.05; done",
    );
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let path = view(&d, &c.0).join("stdout");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&path)
            .is_ok_and(|s| s == "started\n"))
        .is_some()
    );
    let got = tail_follow(&path, || {
        docker_ok(&["exec", &c.0, "touch", "/tmp/go"]);
    })
    .expect("tail -f printed the new line");
    assert_eq!(got, "GO-LINE\n");
}

#[test]
fn corrupt_json_store_is_served_around_the_damage() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(&[], "echo before; echo also-before >&2");
    wait_exited(&c.0);
    let p = docker_ok(&["inspect", "-f", "{{.LogPath}}", &c.0]);
    // What a crash leaves: a run of NULs, an invalid byte, a cut-short last record.
    let mut raw = std::fs::read(&p).unwrap();
    raw.extend_from_slice(&[0; 4096]);
    raw.extend_from_slice(b"{\"log\":\"after \xff crash\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-30T00:00:00Z\"}\n");
    raw.extend_from_slice(b"{\"log\":\"cut sh");
    std::fs::write(&p, raw).unwrap();
    wait_shown_exited(&d, &c.0);
    let out = std::fs::read(view(&d, &c.0).join("stdout")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "before\nafter \u{fffd} crash\n"
    );
    // (The two first lines came through two pipes: the store has them in either order.)
    let all = std::fs::read_to_string(view(&d, &c.0).join("all")).unwrap();
    let mut first: Vec<&str> = all.lines().take(2).collect();
    first.sort();
    assert_eq!(first, ["also-before", "before"], "{all}");
    assert!(
        all.ends_with("\nafter \u{fffd} crash\n") && all.lines().count() == 3,
        "{all}"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("skipped a run of NUL bytes").count(),
        1,
        "one warning per file: {log}"
    );
}

/// An image in the official nginx layout (`access.log -> /dev/stdout`, `error.log ->
/// /dev/stderr`), plus a chain, a `/proc/self/fd/1` link, relative links, and a real file.
fn nginx_layout_image() -> String {
    let tag = format!("ctrfsd-logs-nginx:{}", token());
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    busybox_rootfs(
        r,
        &["tmp", "var/log/nginx", "var/log/app", "dev", "proc"],
        &["sh", "echo", "sleep"],
    );
    let l = |t: &str, at: &str| std::os::unix::fs::symlink(t, r.join(at)).unwrap();
    l("/dev/stdout", "var/log/nginx/access.log");
    l("/dev/stderr", "var/log/nginx/error.log");
    l("/var/log/nginx/error.log", "var/log/app/chain.log");
    l("/proc/self/fd/1", "var/log/app/fd1.log");
    l("/etc/passwd", "var/log/app/other-link");
    // Relative texts, from their link's directory, first hop or later.
    l("../../../dev/stdout", "var/log/app/rel.log");
    l("../../dev/stderr", "var/log/relerr.log");
    l("../nginx/error.log", "var/log/app/relchain.log");
    l("../../../etc/passwd", "var/log/app/rel-other");
    std::fs::write(r.join("var/log/app/real.log"), "a real file\n").unwrap();
    docker_import(r, &tag);
    tag
}

#[test]
fn links_to_stdout_and_stderr_read_as_the_containers_log() {
    let d = Daemon::start(&["--runtime", "docker"]);
    struct RmImage(String);
    impl Drop for RmImage {
        fn drop(&mut self) {
            let _ = docker(&["rmi", "-f", &self.0]);
        }
    }
    let image = nginx_layout_image();
    let _rmi = RmImage(image.clone());
    let name = format!("ctrfsd-logs-{}", token());
    let c = docker_run_with(
        &name,
        &[],
        &image,
        &[
            "sh",
            "-c",
            "echo '127.0.0.1 - GET / 200'; \
             echo '2026/11/30 [error] 7#7: *1 directory index of \"/srv/\" is forbidden' >&2; \
             sleep 100000",
        ],
    );
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let log = d.path().join(&c.0).join("var/log");
    assert!(
        wait_until(Duration::from_secs(5), || !docker_logs(&c.0, "err")
            .is_empty())
        .is_some()
    );
    // grep -r does not follow links: it finds the error line only because the link is a file.
    // (Docker's json-file logger writes asynchronously: the line shows within the second
    // the README promises for growing logs.)
    let grep = || stdout(&sh(&format!("grep -r 'directory index' {}", log.display())));
    let mut found = grep();
    wait_until(WITHIN, || {
        found = grep();
        [
            "nginx/error.log:",
            "app/chain.log:",
            "app/relchain.log:",
            "log/relerr.log:",
        ]
        .iter()
        .all(|f| found.contains(f))
    });
    assert!(
        found.contains("nginx/error.log:2026/11/30 [error]"),
        "{found}"
    );
    for f in ["app/chain.log:", "app/relchain.log:", "log/relerr.log:"] {
        assert!(found.contains(f), "{f} not in {found}");
    }
    assert!(!found.contains("access.log"), "{found}");
    let err = std::fs::read(log.join("nginx/error.log")).unwrap();
    assert_eq!(err, docker_logs(&c.0, "err"));
    let out = std::fs::read(log.join("nginx/access.log")).unwrap();
    assert_eq!(out, docker_logs(&c.0, "out"));
    assert_eq!(std::fs::read(log.join("app/fd1.log")).unwrap(), out);
    assert_eq!(std::fs::read(log.join("app/rel.log")).unwrap(), out);
    assert_eq!(std::fs::read(log.join("relerr.log")).unwrap(), err);
    assert_eq!(
        ctrfsd_xattr(&log.join("app/rel.log"), "link").as_deref(),
        Some("../../../dev/stdout")
    );
    let md = std::fs::symlink_metadata(log.join("nginx/access.log")).unwrap();
    assert!(md.is_file() && md.len() == out.len() as u64 && md.permissions().readonly());
    assert_eq!(
        ctrfsd_xattr(&log.join("nginx/error.log"), "link").as_deref(),
        Some("/dev/stderr")
    );
    // Other links stay links; a real file is the file.
    for l in ["app/other-link", "app/rel-other"] {
        assert!(
            std::fs::symlink_metadata(log.join(l)).unwrap().is_symlink(),
            "{l}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(log.join("app/real.log")).unwrap(),
        "a real file\n"
    );
    // The differential check accepts exactly this exception.
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &c.0]);
    let diff = sh(&format!(
        "{}/scripts/ctrfsd-diff {} {pid}",
        env!("CARGO_MANIFEST_DIR"),
        d.path().join(&c.0).display()
    ));
    let report = stdout(&diff);
    let last = report.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("; 0 differences") && !last.contains(" 0 stdio links"),
        "{report}"
    );
    drop(c);
}

#[test]
fn a_crashed_container_keeps_its_last_words() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(
        &[],
        "echo working; echo 'fatal: out of cheese' >&2; exit 42",
    );
    wait_exited(&c.0);
    wait_shown_exited(&d, &c.0);
    let dir = d.path().join(&c.0);
    assert!(
        wait_until(Duration::from_secs(5), || ctrfsd_xattr(&dir, "exit_code")
            .as_deref()
            == Some("42"))
        .is_some(),
        "shown as exited with 42: {:?}",
        ctrfsd_xattr(&dir, "state")
    );
    let err = std::fs::read_to_string(view(&d, &c.0).join("stderr")).unwrap();
    assert_eq!(err, "fatal: out of cheese\n");
    assert_views_match(&d, &c.0);
}

/// A view looked at before the runtime rotates its file away (the kernel keeps what it looked
/// up, so ctrfsd keeps the deleted file) stays in order: the files the runtime writes after come
/// after what was read. They were put first, so a reader got the newest lines and then older
/// ones, and a follower's offsets moved (`tail -f` repeated a stretch at every rotation).
#[test]
fn files_rotated_in_after_a_look_come_after_what_was_read() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(
        &["--log-opt", "max-size=16k", "--log-opt", "max-file=2"],
        "i=0; while [ $i -lt 100 ]; do echo \"line $i\"; i=$((i+1)); done; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done",
    );
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let path = view(&d, &c.0).join("stdout");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&path)
            .is_ok_and(|s| s.ends_with("line 99\n")))
        .is_some(),
        "the first 100 lines are served"
    );
    docker_ok(&["exec", &c.0, "touch", "/tmp/go"]);
    wait_exited(&c.0);
    let mut text = String::new();
    let served = wait_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(&path).unwrap();
        text.contains("\nline 2999\n")
    });
    assert!(served.is_some(), "the last line is served: {text:?}");
    // ctrfsd's own lines say what the runtime deleted before ctrfsd could open it (README,
    // "Limits of following"): this writer has no pause.
    let nums: Vec<u32> = text
        .lines()
        .filter(|l| !l.starts_with("ctrfsd: "))
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a line the container wrote: {l:?}"))
        })
        .collect();
    let back = nums.windows(2).find(|w| w[0] >= w[1]);
    assert!(back.is_none(), "out of order: {back:?} in {nums:?}");
    assert_eq!(nums.first(), Some(&0), "what was read stays first");
    assert_eq!(nums.last(), Some(&2999), "the newest line is last");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), text.len() as u64);
}

/// `SEEK_DATA`/`SEEK_HOLE` on a log view answer as on a file without holes (grep and `cp`
/// ask): data from 0, the one hole at the end, ENXIO at or past the end.
#[test]
fn a_log_view_seeks_like_a_file_without_holes() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(&[], &chatty(20, false));
    wait_exited(&c.0);
    wait_shown_exited(&d, &c.0);
    let path = view(&d, &c.0).join("all");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 0, "{} is empty", path.display());
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = int(sys.argv[2])
out = []
for off in (0, size // 2, size - 1, size, size + 1):
    for w in (os.SEEK_DATA, os.SEEK_HOLE):
        try:
            out.append(str(os.lseek(fd, off, w)))
        except OSError as e:
            out.append(os.strerror(e.errno))
print(" ".join(out))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .arg(size.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "python3: {o:?}");
    let (h, l) = (size / 2, size - 1);
    let nx = "No such device or address";
    let want = format!("0 {size} {h} {size} {l} {size} {nx} {nx} {nx} {nx}");
    assert_eq!(stdout(&o).trim_end(), want);
}
