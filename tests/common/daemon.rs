//! A real ctrfsd mounted on a fresh temporary directory, and what it reports: its listing,
//! its `user.ctrfsd.*` attributes, its request counters, its log.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{listing, require_root, token, wait_until};

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
        let exited = wait_until(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_some()
        });
        if exited.is_none() {
            let _ = child.kill();
            panic!(
                "ctrfsd did not exit within 10 s of SIGTERM; log:\n{}",
                self.log_text()
            );
        }
        child.wait().unwrap()
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

/// Runs real `tail -n 0 -f path`, calls `append` once tail is following (it holds `path` open
/// at its end), and returns the first output tail prints within 2.5 s (an error if it prints
/// nothing in time).
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
    let following = wait_until(Duration::from_secs(10), || open_at_end(tail.id(), path));
    if following.is_none() {
        let _ = tail.kill();
        let _ = tail.wait();
        panic!("tail -f never held {} open at its end", path.display());
    }
    append();
    let mut out = tail.stdout.take().expect("tail stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = out.read(&mut buf).unwrap_or(0);
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    let got = rx.recv_timeout(Duration::from_millis(2500));
    let _ = tail.kill();
    let _ = tail.wait();
    got
}

/// Whether process `pid` has `path` open (the same inode) with its offset at the file's end:
/// what `tail -n 0 -f` does once it has skipped what was there and started following.
fn open_at_end(pid: u32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = fs::metadata(path) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let same =
            fs::metadata(fd.path()).is_ok_and(|m| (m.dev(), m.ino()) == (want.dev(), want.ino()));
        let pos = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .ok()
        .and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("pos:")?.trim().parse::<u64>().ok())
        });
        same && pos == Some(want.len())
    })
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

/// `user.ctrfsd.<name>` of a container directory, failing the test if it has none.
pub fn xattr(path: &Path, name: &str) -> String {
    ctrfsd_xattr(path, name)
        .unwrap_or_else(|| panic!("no user.ctrfsd.{name} on {}", path.display()))
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
