//! Shared test helpers: a real "container" (a process in its own mount namespace, chrooted
//! into a temporary root), and a real ctrfsd daemon mounted on a temporary directory.
//!
//! Nothing here skips: a missing prerequisite (root, /dev/fuse, busybox) fails the test with
//! a message saying what to install; `scripts/test.sh` installs everything.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";

pub fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "these tests mount FUSE and enter namespaces: run them as root (scripts/test.sh)"
    );
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static (scripts/test.sh does)"
    );
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns the time it took.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a shell command line, returning its output (never panics on a non-zero exit).
pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A unique, short token for names.
pub fn token() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A process with its own mount namespace and a temporary root: what the kernel (and
/// `/proc/<pid>/root`) treats as a container.
pub struct FakeContainer {
    pub dir: tempfile::TempDir,
    pub child: Child,
}

impl FakeContainer {
    /// `setup` fills the root; `mounts` is shell run inside the new mount namespace before
    /// chroot (paths relative to the root as `$R/...`).
    pub fn start(setup: impl FnOnce(&Path), mounts: &str) -> FakeContainer {
        Self::start_in(Self::prepare(setup), mounts)
    }

    /// A root with busybox in it, filled by `setup`, ready for [`Self::start_in`].
    pub fn prepare(setup: impl FnOnce(&Path)) -> tempfile::TempDir {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::copy(BUSYBOX, dir.path().join("bin/busybox")).unwrap();
        setup(dir.path());
        dir
    }

    /// Starts the process in a prepared root: nothing slow happens before the fork.
    pub fn start_in(dir: tempfile::TempDir, mounts: &str) -> FakeContainer {
        let root = dir.path();
        let script = format!(
            "R={}; {mounts}\nexec chroot \"$R\" /bin/busybox sleep 1000000",
            root.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let c = FakeContainer { dir, child };
        // Ready once the process runs chrooted (its root differs from ours).
        let pid = c.pid();
        wait_until(Duration::from_secs(10), || {
            fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p.ends_with("busybox"))
                .unwrap_or(false)
        })
        .expect("fake container did not start");
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The kernel's own view, the reference for every comparison.
    pub fn proc_root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
    }

    /// Stops the process and hands its root back, to start another process in it.
    pub fn into_root(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running ctrfsd mounted on a fresh temporary directory.
pub struct Daemon {
    pub mnt: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctrfsd")
}

pub fn is_mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4) == Some(&path.to_str().unwrap_or("")) && l.contains(" - fuse.ctrfsd ")
        })
}

impl Daemon {
    /// Starts ctrfsd with `args` (the mountpoint is appended) and waits until it is mounted.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, |_| {})
    }

    pub fn start_with(args: &[&str], tweak: impl FnOnce(&mut Command)) -> Daemon {
        require_root();
        let mnt = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(mnt.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let log = std::env::temp_dir().join(format!("ctrfsd-test-{}.log", token()));
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .arg(mnt.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        tweak(&mut cmd);
        let child = cmd.spawn().expect("spawn ctrfsd");
        let mut d = Daemon {
            mnt,
            child: Some(child),
            log,
        };
        let path = d.path().to_path_buf();
        if wait_until(Duration::from_secs(20), || is_mounted(&path)).is_none() {
            let status = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "ctrfsd did not mount (exit: {status:?}); log:\n{}",
                d.log_text()
            );
        }
        d
    }

    pub fn path(&self) -> &Path {
        self.mnt.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Names listed at the mount root.
    pub fn names(&self) -> Vec<String> {
        listing(self.path())
    }

    pub fn has(&self, name: &str) -> bool {
        self.names().iter().any(|n| n == name)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "ctrfsd did not exit within 10 s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&c),
                rustix::process::Signal::TERM,
            );
            let _ = wait_until(Duration::from_secs(5), || {
                c.try_wait().ok().flatten().is_some()
            });
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(self.mnt.path()) {
            let _ = rustix::mount::unmount(self.mnt.path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Applies `ulimit -n soft:hard` to a command before exec.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    // SAFETY: the closure runs between fork and exec; it makes one setrlimit syscall through
    // rustix, which neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(n),
                    maximum: Some(n),
                },
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// Runs real `tail -n 0 -f path`, calls `append` once tail is following, and returns the first
/// output tail prints within 2.5 s (an error if it prints nothing in time).
pub fn tail_follow(
    path: &Path,
    append: impl FnOnce(),
) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
    use std::io::Read;
    let mut tail = Command::new("tail")
        .args(["-n", "0", "-f"])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tail");
    std::thread::sleep(Duration::from_millis(300));
    append();
    let mut out = tail.stdout.take().expect("tail stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let n = out.read(&mut buf).unwrap_or(0);
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    let got = rx.recv_timeout(Duration::from_millis(2500));
    let _ = tail.kill();
    let _ = tail.wait();
    got
}

/// `user.ctrfsd.<name>` of a container directory, as `getfattr` reads it; `None` if it has none
/// (or the directory is gone).
pub fn ctrfsd_xattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", &format!("user.ctrfsd.{name}")])
        .arg(path)
        .output()
        .expect("run getfattr");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names in directory `dir`, sorted (none if it cannot be read).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The request counters of a ctrfsd mount (`user.ctrfsd.requests` on its root), by name
/// (`"lookup"`, `"error ENOENT"`, `"watched-dirs"`, ...).
pub fn request_counts(mnt: &Path) -> std::collections::HashMap<String, u64> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "user.ctrfsd.requests"])
        .arg(mnt)
        .output()
        .expect("run getfattr");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, n) = l.trim_matches('\0').rsplit_once(' ')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

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

/// Fails the test unless it runs as root with a Docker engine answering.
pub fn require_docker() {
    require_root();
    assert!(
        docker(&["info"]).status.success(),
        "no Docker engine answers: run scripts/test.sh, which installs and starts one"
    );
}

/// Lays out a test image's root in `root`: the directories `dirs`, busybox at
/// `/bin/busybox` and each of `applets` as a link to it.
pub fn busybox_rootfs(root: &Path, dirs: &[&str], applets: &[&str]) {
    for d in dirs.iter().chain(&["bin"]) {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

/// `docker import` of the tree at `root` as image `tag` (no registry involved).
pub fn docker_import(root: &Path, tag: &str) {
    let out = sh(&format!(
        "tar -C {} -cf - . | docker import - {tag}",
        root.display()
    ));
    assert!(out.status.success(), "docker import {tag}: {out:?}");
}

/// Plants, under `root`, the links a hostile image uses to reach the host file `/etc/<marker>`:
/// absolute, `..` from below, `..` after a real component, `/proc/self/root` and `/proc/1/root`
/// magic links, a chain, a directory replaced by a link to `/etc`, links to `/` and above the
/// root, and a loop. `a/b/c` and `var/log` must exist.
pub fn plant_escape_links(root: &Path, marker: &str) {
    let l = |t: &str, at: &str| std::os::unix::fs::symlink(t, root.join(at)).unwrap();
    l(&format!("/etc/{marker}"), "evil-abs");
    l(&format!("../../../../../../etc/{marker}"), "a/b/evil-rel");
    l(&format!("a/../../../../etc/{marker}"), "evil-dotdot");
    l(&format!("/proc/self/root/etc/{marker}"), "evil-magic");
    l(&format!("/proc/1/root/etc/{marker}"), "evil-pid1");
    l("/evil-abs", "chain1");
    l("chain1", "chain2");
    l("/etc", "var/log/etc-dir");
    l("/", "rootlink");
    l("../../../..", "a/b/c/up");
    l("loop", "loop");
}

/// A Docker container, removed (with its writable layer) on drop.
pub struct DockerCtr(pub String);

impl Drop for DockerCtr {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
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
