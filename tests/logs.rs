//! `/ctr/.logs`: each container's output as files, compared line for line with what the
//! runtime's own CLI prints, through real Docker containers and their real log stores.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// A busybox image made from the host's busybox (no registry), once per test run.
fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_docker();
        let tag = format!("ctrfsd-logs:{}", token());
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

/// `docker logs NAME` with its stdout and stderr as `which` says: "out", "err" or "all".
fn docker_logs(name: &str, which: &str) -> Vec<u8> {
    let redirect = match which {
        "out" => "2>/dev/null",
        "err" => "2>&1 >/dev/null",
        _ => "2>&1",
    };
    sh(&format!("docker logs {name} {redirect}")).stdout
}

fn wait_exited(name: &str) {
    let done = wait_until(Duration::from_secs(60), || {
        docker_ok(&["inspect", "-f", "{{.State.Status}}", name]) == "exited"
    });
    assert!(done.is_some(), "{name} did not exit");
}

fn view(d: &Daemon, name: &str) -> PathBuf {
    d.path().join(".logs").join(name)
}

/// Every view of `name` equals `docker logs` (stdout, stderr, both), and `stat` sizes equal
/// what `read` returns.
fn assert_views_match(d: &Daemon, name: &str) {
    let dir = view(d, name);
    for (file, which) in [("stdout", "out"), ("stderr", "err"), ("all", "all")] {
        let path = dir.join(file);
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want = docker_logs(name, which);
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
fn chatty(n: u32, long: bool) -> String {
    let long = if long {
        "head -c 40960 /dev/zero | tr '\\0' x; echo;"
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
        assert!(
            wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some(),
            "{} not listed",
            c.0
        );
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
    assert!(all.ends_with("\nno newline"));
}

#[test]
fn local_driver_views_match_docker_logs() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(&["--log-driver", "local"], &chatty(200, true));
    wait_exited(&c.0);
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    assert_views_match(&d, &c.0);
    let source = ctrfsd_xattr(&view(&d, &c.0), "log_source").unwrap();
    assert!(source.ends_with("/local-logs/container.log"), "{source}");
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
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let out = std::fs::read(view(&d, &c.0).join("stdout")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "before\nafter \u{fffd} crash\n"
    );
    let all = std::fs::read_to_string(view(&d, &c.0).join("all")).unwrap();
    assert_eq!(all, "before\nalso-before\nafter \u{fffd} crash\n");
    let log = d.log_text();
    assert_eq!(
        log.matches("skipped a run of NUL bytes").count(),
        1,
        "one warning per file: {log}"
    );
}

/// An image in the official nginx layout (`access.log -> /dev/stdout`, `error.log ->
/// /dev/stderr`), plus a chain and a `/proc/self/fd/1` link, and a real file beside them.
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
    std::fs::write(r.join("var/log/app/real.log"), "a real file\n").unwrap();
    docker_import(r, &tag);
    tag
}

#[test]
fn links_to_stdout_and_stderr_read_as_the_containers_log() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let image = nginx_layout_image();
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
    let grep = sh(&format!("grep -r 'directory index' {}", log.display()));
    let found = stdout(&grep);
    assert!(
        found.contains("nginx/error.log:2026/11/30 [error]"),
        "{found}"
    );
    assert!(found.contains("app/chain.log:"), "{found}");
    assert!(!found.contains("access.log"), "{found}");
    let err = std::fs::read(log.join("nginx/error.log")).unwrap();
    assert_eq!(err, docker_logs(&c.0, "err"));
    let out = std::fs::read(log.join("nginx/access.log")).unwrap();
    assert_eq!(out, docker_logs(&c.0, "out"));
    assert_eq!(std::fs::read(log.join("app/fd1.log")).unwrap(), out);
    let md = std::fs::symlink_metadata(log.join("nginx/access.log")).unwrap();
    assert!(md.is_file() && md.len() == out.len() as u64 && md.permissions().readonly());
    assert_eq!(
        ctrfsd_xattr(&log.join("nginx/error.log"), "link").as_deref(),
        Some("/dev/stderr")
    );
    // Other links stay links; a real file is the file.
    assert!(
        std::fs::symlink_metadata(log.join("app/other-link"))
            .unwrap()
            .is_symlink()
    );
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
    let _ = docker(&["rmi", &image]);
}

#[test]
fn a_crashed_container_keeps_its_last_words() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let c = run_ctr(
        &[],
        "echo working; echo 'fatal: out of cheese' >&2; exit 42",
    );
    wait_exited(&c.0);
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let dir = d.path().join(&c.0);
    assert!(
        wait_until(Duration::from_secs(5), || ctrfsd_xattr(&dir, "exit_code")
            .as_deref()
            == Some("42"))
        .is_some(),
        "shown as exited with 42: {:?}",
        ctrfsd_xattr(&dir, "state")
    );
    let all = std::fs::read_to_string(view(&d, &c.0).join("all")).unwrap();
    assert_eq!(all.lines().last(), Some("fatal: out of cheese"));
    assert_views_match(&d, &c.0);
}

/// `podman logs NAME` with stdout and stderr as `which` says ("out", "err", "all").
fn podman_logs(name: &str, which: &str) -> Vec<u8> {
    let redirect = match which {
        "out" => "2>/dev/null",
        "err" => "2>&1 >/dev/null",
        _ => "2>&1",
    };
    sh(&format!("podman logs {name} {redirect}")).stdout
}

#[test]
fn podman_k8s_file_views_match_podman_logs() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(
        dir.path(),
        &["tmp", "proc", "dev"],
        &["sh", "echo", "printf", "sleep"],
    );
    let tag = format!("localhost/ctrfsd-logs-pm:{}", token());
    let tar = dir.path().with_extension("tar");
    let out = sh(&format!(
        "tar -C {} -cf {} . && podman import -q {} {tag}",
        dir.path().display(),
        tar.display(),
        tar.display()
    ));
    assert!(out.status.success(), "podman import: {out:?}");
    let name = format!("ctrfsd-logs-pm-{}", token());
    struct Rm(String, String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = sh(&format!(
                "podman rm -f -t 0 {0}; podman rmi -f {1}",
                self.0, self.1
            ));
        }
    }
    let _rm = Rm(name.clone(), tag.clone());
    let run = sh(&format!(
        "podman --runtime runc run -d --network none --log-driver k8s-file \
         --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --name {name} {tag} /bin/sh -c \
         'i=0; while [ $i -lt 100 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done; \
          printf partial; exit 1'"
    ));
    assert!(run.status.success(), "podman run: {run:?}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            stdout(&sh(&format!(
                "podman inspect -f '{{{{.State.Status}}}}' {name}"
            )))
            .trim()
                == "exited"
        })
        .is_some()
    );
    assert!(wait_until(Duration::from_secs(5), || d.has(&name)).is_some());
    let view = view(&d, &name);
    for (file, which) in [("stdout", "out"), ("stderr", "err"), ("all", "all")] {
        let got = std::fs::read(view.join(file)).unwrap();
        let want = podman_logs(&name, which);
        assert!(!want.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{file} of {name} equals podman logs"
        );
    }
}

#[test]
fn cri_log_at_the_path_a_kubernetes_containers_labels_name() {
    require_root();
    let d = Daemon::start(&["--runtime", "containerd", "--resync", "3600"]);
    let t = token();
    let (ns, pod, uid) = (
        format!("logs{}", t.replace('x', "")),
        format!("web-{t}"),
        format!("uid-{t}"),
    );
    // The kubelet's layout, written as a CRI runtime writes it: a line split in two pieces,
    // both streams, and one older rotation kept beside it.
    let dir = PathBuf::from(format!("/var/log/pods/{ns}_{pod}_{uid}/nginx"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }
    let _rm = Rm(dir.clone());
    std::fs::write(
        dir.join("0.log.20261130-220000"),
        "2026-11-30T21:59:59.000000001Z stdout F from the rotation\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0.log"),
        "2026-11-30T22:00:00.000000001Z stdout P upstream timed out \n\
         2026-11-30T22:00:00.000000002Z stderr F [error] upstream timed out (110)\n\
         2026-11-30T22:00:00.000000003Z stdout F while reading response\n",
    )
    .unwrap();
    // Any image of the namespace will do; the one the runtime tests import is used if there.
    let image = stdout(&sh(
        "ctr -n k8s.io images ls -q | grep -v '^sha256' | head -1",
    ));
    let image = image.trim();
    assert!(
        !image.is_empty(),
        "no image in containerd's k8s.io namespace: run tests/runtimes.rs first or scripts/setup.sh"
    );
    let id = format!("logs-app-{t}");
    let labels = format!(
        "--label io.kubernetes.pod.namespace={ns} --label io.kubernetes.pod.name={pod} \
         --label io.kubernetes.pod.uid={uid} --label io.cri-containerd.kind=container \
         --label io.kubernetes.container.name=nginx"
    );
    let run = sh(&format!(
        "ctr -n k8s.io run -d {labels} {image} {id} /bin/busybox sleep 100000 >/dev/null"
    ));
    assert!(run.status.success(), "ctr run: {run:?}");
    struct Ctr(String);
    impl Drop for Ctr {
        fn drop(&mut self) {
            let id = &self.0;
            let _ = sh(&format!(
                "ctr -n k8s.io task kill -s KILL {id}; sleep 0.2; ctr -n k8s.io task delete -f {id}; \
                 ctr -n k8s.io containers delete {id}"
            ));
        }
    }
    let _c = Ctr(id.clone());
    let rel = format!("k8s/{ns}/{pod}/nginx");
    assert!(wait_until(Duration::from_secs(10), || d.path().join(&rel).exists()).is_some());
    let v = d.path().join(".logs").join(&rel);
    assert_eq!(
        std::fs::read_to_string(v.join("stdout")).unwrap(),
        "from the rotation\nupstream timed out while reading response\n"
    );
    assert_eq!(
        std::fs::read_to_string(v.join("stderr")).unwrap(),
        "[error] upstream timed out (110)\n"
    );
    let grep = stdout(&sh(&format!(
        "grep -r 'upstream timed out' {}",
        d.path().join(".logs").display()
    )));
    assert!(grep.contains(&format!("{rel}/stderr:[error]")), "{grep}");
}

const USER: &str = "ctrfsd-test";

/// `cmd` run as the rootless test user, in its own environment.
fn as_user(cmd: &str) -> String {
    let uid = stdout(&sh(&format!("id -u {USER}"))).trim().to_string();
    format!(
        "cd /home/{USER} && setpriv --reuid={uid} --regid={uid} --init-groups env -i \
         HOME=/home/{USER} USER={USER} XDG_RUNTIME_DIR=/run/user/{uid} PATH=/usr/bin:/bin {cmd}"
    )
}

#[test]
fn a_rootless_users_symlinked_log_is_refused() {
    require_root();
    let d = Daemon::start(&["--runtime", "podman"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    busybox_rootfs(&root, &["tmp", "proc", "dev"], &["sh", "echo", "sleep"]);
    let tar = dir.path().join("root.tar");
    assert!(
        sh(&format!(
            "tar -C {} -cf {} .",
            root.display(),
            tar.display()
        ))
        .status
        .success()
    );
    sh(&format!(
        "chmod 755 {}; chmod 644 {}",
        dir.path().display(),
        tar.display()
    ));
    let tag = format!("localhost/ctrfsd-logs-rl:{}", token());
    let out = sh(&as_user(&format!(
        "podman import -q {} {tag}",
        tar.display()
    )));
    assert!(out.status.success(), "podman import as {USER}: {out:?}");
    let name = format!("ctrfsd-logs-rl-{}", token());
    struct Rm(String, String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = sh(&as_user(&format!("podman rm -f -t 0 {}", self.0)));
            let _ = sh(&as_user(&format!("podman rmi -f {}", self.1)));
        }
    }
    let _rm = Rm(name.clone(), tag.clone());
    let run = sh(&as_user(&format!(
        "podman --runtime runc run -d --network none --log-driver k8s-file --name {name} {tag} \
         /bin/sh -c 'echo rootless-line; sleep 100000'"
    )));
    assert!(run.status.success(), "podman run as {USER}: {run:?}");
    let view = d.path().join(".logs").join(format!("{name}@{USER}"));
    // The user's own files, owned by the user: served.
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            view.join("stdout")
        )
        .is_ok_and(|s| s == "rootless-line\n"))
        .is_some(),
        "{:?}",
        listing(&view)
    );
    // The user plants a link to a host file where the runtime keeps the log.
    let path = stdout(&sh(&as_user(&format!(
        "podman inspect -f '{{{{.HostConfig.LogConfig.Path}}}}' {name}"
    ))));
    let path = path.trim();
    assert!(path.ends_with("ctr.log"), "{path}");
    let plant = sh(&as_user(&format!(
        "mv {path} {path}.keep && ln -s /etc/shadow {path}"
    )));
    assert!(plant.status.success(), "{plant:?}");
    assert!(
        wait_until(Duration::from_secs(5), || listing(&view) == ["unavailable"]).is_some(),
        "{:?}",
        listing(&view)
    );
    let why = std::fs::read_to_string(view.join("unavailable")).unwrap();
    assert!(
        why.contains("refused") && why.contains("symbolic link"),
        "{why}"
    );
    assert!(std::fs::read(view.join("stdout")).is_err());
    let grep = sh(&format!("grep -r 'root:' {}", view.display()));
    assert!(stdout(&grep).is_empty(), "{}", stdout(&grep));
    assert!(d.log_text().contains("refused"));
}
