//! Logs behind links to stdout/stderr in real programs' images (issue #14's "Tests"): Debian's
//! own nginx binary in the official nginx image's layout, made to log an `[error]`, and a
//! distroless program (one static binary, no shell) that logs only to stdout and stderr. Each
//! image is assembled from local files and `docker import`ed (no registry), tagged by the hash
//! of its content so that it is built once and rebuilt when its inputs change.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// Debian's nginx binary (scripts/setup.sh installs the `nginx` package; it is never started on
/// the host).
const NGINX: &str = "/usr/sbin/nginx";

/// The official image's configuration, cut down: its log paths and levels, Debian's user.
const NGINX_CONF: &str = "user www-data;
worker_processes 1;
error_log /var/log/nginx/error.log notice;
pid /run/nginx.pid;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] \"$request\" '
                    '$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"';
    access_log /var/log/nginx/access.log main;
    server {
        listen 127.0.0.1:80;
        root /usr/share/nginx/html;
    }
}
";

/// `docker import`s the tree at `root` as `<repo>:<hash of its content>` unless that image is
/// already there; returns the tag. The tar is made reproducible (sorted, owner and times fixed),
/// so the same inputs give the same tag.
fn import_by_content(root: &Path, repo: &str, cmd: &str) -> String {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let tar = root.with_extension("tar");
    let out = sh(&format!(
        "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C {} -cf {} . && \
         sha256sum {}",
        root.display(),
        tar.display(),
        tar.display()
    ));
    assert!(out.status.success(), "tar of {}: {out:?}", root.display());
    let tag = format!("{repo}:{}", &stdout(&out)[..16]);
    if !docker(&["image", "inspect", &tag]).status.success() {
        let out = sh(&format!("docker import -c '{cmd}' {} {tag}", tar.display()));
        assert!(out.status.success(), "docker import {tag}: {out:?}");
    }
    tag
}

/// Copies `bin` into `root` at the same path, with every library `ldd` names for it.
fn copy_with_libraries(bin: &str, root: &Path) {
    let out = sh(&format!("ldd {bin}"));
    assert!(out.status.success(), "ldd {bin}: {out:?}");
    let libs = stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    for path in libs.iter().map(String::as_str).chain([bin]) {
        let to = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(path, &to).unwrap_or_else(|e| panic!("copy {path}: {e}"));
    }
}

/// An image of Debian's nginx in the official image's layout: `/var/log/nginx/access.log ->
/// /dev/stdout`, `error.log -> /dev/stderr`; `/files/` is a directory without an index (a
/// request for it logs `[error] ... directory index of ... is forbidden`); busybox is there
/// as the client (`wget`), run with `docker exec` inside the container's own network.
fn nginx_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_docker();
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install nginx (scripts/setup.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("root");
        busybox_rootfs(
            &r,
            &[
                "etc/nginx",
                "var/log/nginx",
                "var/lib/nginx",
                "run",
                "tmp",
                "usr/share/nginx/html/files",
            ],
            &[],
        );
        copy_with_libraries(NGINX, &r);
        fs::write(r.join("etc/nginx/nginx.conf"), NGINX_CONF).unwrap();
        fs::copy("/etc/nginx/mime.types", r.join("etc/nginx/mime.types")).unwrap();
        fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        fs::write(r.join("etc/group"), "root:x:0:\nwww-data:x:33:\n").unwrap();
        fs::write(r.join("usr/share/nginx/html/index.html"), "welcome\n").unwrap();
        fs::write(r.join("usr/share/nginx/html/files/a.txt"), "a\n").unwrap();
        symlink("/dev/stdout", r.join("var/log/nginx/access.log")).unwrap();
        symlink("/dev/stderr", r.join("var/log/nginx/error.log")).unwrap();
        import_by_content(
            &r,
            "ctrfsd-logs-nginx",
            r#"CMD ["/usr/sbin/nginx", "-g", "daemon off;"]"#,
        )
    })
}

/// `wget` of `path` from nginx over the container's loopback (its network is `none`); whether
/// nginx answered 2xx.
fn request(c: &DockerCtr, path: &str) -> bool {
    docker(&[
        "exec",
        &c.0,
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &format!("http://127.0.0.1{path}"),
    ])
    .status
    .success()
}

/// Fails unless `got` and `want` hold the same lines, naming the first that differs.
fn assert_same_lines(got: &[u8], want: &[u8], what: &str) {
    let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    if g != w {
        let first = g.lines().zip(w.lines()).position(|(a, b)| a != b);
        panic!(
            "{what} differs from docker logs: {} vs {} lines, first difference at line \
             {first:?}\n--- view:\n{g}\n--- docker logs:\n{w}",
            g.lines().count(),
            w.lines().count()
        );
    }
}

/// Each stream file under `view_dir` (`stdout`, `stderr`, `all`) and the given links equal
/// `docker logs` of `name`, once Docker's asynchronous writer has caught up.
fn assert_match_docker_logs(d: &Daemon, name: &str, links: &[(PathBuf, &str)]) {
    let view_dir = d.path().join(".logs").join(name);
    let mut files: Vec<(PathBuf, &str)> = ["stdout", "stderr", "all"]
        .iter()
        .zip(["out", "err", "all"])
        .map(|(f, w)| (view_dir.join(f), w))
        .collect();
    files.extend(links.iter().cloned());
    for (path, which) in files {
        let want = docker_logs(name, which);
        let mut got = Vec::new();
        wait_until(Duration::from_secs(2), || {
            got = fs::read(&path).unwrap_or_default();
            got == want
        });
        assert_same_lines(&got, &want, &path.display().to_string());
        assert_eq!(fs::metadata(&path).unwrap().len(), got.len() as u64);
    }
}

#[test]
fn real_nginx_error_lines_are_found_by_grep_under_var_log() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-logs-nginx-{}", token());
    let c = docker_run_with(&name, &[], nginx_image(), &[]);
    assert!(wait_until(Duration::from_secs(5), || d.has(&name)).is_some());
    assert!(
        wait_until(Duration::from_secs(10), || request(&c, "/")).is_some(),
        "nginx did not answer on the container's loopback; docker logs:\n{}",
        String::from_utf8_lossy(&docker_logs(&name, "all"))
    );
    assert!(!request(&c, "/files/"), "a directory without an index");
    let log = d.path().join(&name).join("var/log");
    // grep -r does not follow links: it finds nginx's line only because the link is a file.
    let grep = || stdout(&sh(&format!("grep -r error {}", log.display())));
    let mut found = String::new();
    within(WITHIN, "grep -r finds nginx's [error] line", || {
        found = grep();
        found.contains("directory index of")
    });
    let line = found
        .lines()
        .find(|l| l.contains("directory index of"))
        .unwrap();
    assert!(
        line.starts_with(&format!("{}/nginx/error.log:", log.display()))
            && line.contains(" [error] ")
            && line.contains("\"/usr/share/nginx/html/files/\" is forbidden"),
        "{found}"
    );
    // tail -f on the access log shows the next request: the file shows it within a second,
    // and GNU tail (which polls a FUSE file once a second) prints it at its next poll.
    let access = log.join("nginx/access.log");
    let seen = "\"GET /index.html?followed HTTP/1.1\" 200";
    let mut answered = None;
    let got = tail_follow(&access, || {
        assert!(request(&c, "/index.html?followed"));
        answered = Some(Instant::now());
        within(WITHIN, "the request in access.log", || {
            fs::read_to_string(&access).is_ok_and(|s| s.contains(seen))
        });
    })
    .expect("tail -f printed the request");
    let took = answered.unwrap().elapsed();
    assert!(got.contains(seen), "{got}");
    // Its poll interval, plus the time Docker's writer and one read may take on a loaded host.
    let poll = Duration::from_secs(1) + Duration::from_millis(250);
    assert!(took <= poll, "tail -f showed the request after {took:?}");
    assert_match_docker_logs(
        &d,
        &name,
        &[(access, "out"), (log.join("nginx/error.log"), "err")],
    );
}

/// A program that logs only to stdout and stderr (no files, no buffering: one `write` per
/// line), and on SIGTERM says its last words and exits 3.
const DISTROLESS_C: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void say(int fd, const char *s) { (void)!write(fd, s, strlen(s)); }
static void stop(int sig) {
    (void)sig;
    say(1, "draining\n");
    say(2, "ERROR fatal: stopped before the job finished\n");
    _exit(3);
}
int main(void) {
    signal(SIGTERM, stop);
    char line[64];
    for (int i = 0; i < 50; i++) {
        snprintf(line, sizeof line, "working on item %d\n", i);
        say(1, line);
    }
    say(2, "ERROR cannot reach the database\n");
    for (;;) pause();
}
"#;

/// A distroless image: the program above, linked statically, as `/app`, and nothing else but
/// its log links (`/var/log/app/app.log -> /proc/self/fd/1`, `error.log -> /dev/stderr`).
fn distroless_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_docker();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("root");
        fs::create_dir_all(r.join("var/log/app")).unwrap();
        fs::write(dir.path().join("app.c"), DISTROLESS_C).unwrap();
        let out = sh(&format!(
            "cd {} && gcc -static -O2 -o root/app app.c",
            dir.path().display()
        ));
        assert!(out.status.success(), "gcc -static: {out:?}");
        symlink("/proc/self/fd/1", r.join("var/log/app/app.log")).unwrap();
        symlink("/dev/stderr", r.join("var/log/app/error.log")).unwrap();
        import_by_content(&r, "ctrfsd-logs-distroless", r#"CMD ["/app"]"#)
    })
}

#[test]
fn a_distroless_programs_output_is_its_log_files_until_after_it_exits() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-logs-distroless-{}", token());
    let _c = docker_run_with(&name, &[], distroless_image(), &[]);
    assert!(wait_until(Duration::from_secs(5), || d.has(&name)).is_some());
    let log = d.path().join(&name).join("var/log");
    let grep = |what: &str| stdout(&sh(&format!("grep -r '{what}' {}", log.display())));
    within(WITHIN, "grep -r finds the program's error", || {
        grep("ERROR")
            == format!(
                "{}/app/error.log:ERROR cannot reach the database\n",
                log.display()
            )
    });
    assert_eq!(
        grep("item 49"),
        format!("{}/app/app.log:working on item 49\n", log.display())
    );
    let links = [
        (log.join("app/app.log"), "out"),
        (log.join("app/error.log"), "err"),
    ];
    assert_match_docker_logs(&d, &name, &links);
    // Stopped: it says its last words and exits 3; they are read where the image put them.
    docker_ok(&["stop", "-t", "10", &name]);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "3"
    );
    let shown = wait_until(Duration::from_secs(5), || {
        ctrfsd_xattr(&d.path().join(&name), "exit_code").as_deref() == Some("3")
    });
    assert!(shown.is_some(), "shown exited with 3:\n{}", d.log_text());
    assert!(
        grep("ERROR fatal").contains("/app/error.log:ERROR fatal: stopped before"),
        "{}",
        grep("ERROR")
    );
    assert_match_docker_logs(&d, &name, &links);
}
