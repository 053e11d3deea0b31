//! A fake container: a real process in its own mount namespace, chrooted into a temporary
//! root, which the kernel (and `/proc/<pid>/root`) treats as a container; the small tree most
//! tests put in it; and a daemon serving it with `--container NAME=PID`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{BUSYBOX, Daemon, require_root, wait_until};

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
        // The busybox copy may be "text file busy" for a moment: a process another test thread
        // forked while the copy was open for writing holds that fd until it execs. Retried
        // until it runs (bounded by the wait below).
        let script = format!(
            "R={}; {mounts}\nuntil chroot \"$R\" /bin/busybox true 2>/dev/null; do sleep 0.01; \
             done\nexec chroot \"$R\" /bin/busybox sleep 1000000",
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

/// A small tree with the file kinds a container holds: directories, a file owned by
/// 1234:5678 mode 0640 with a second hard link (`a/hardlink`), absolute and relative links to
/// `usr/share/zoneinfo/UTC`, a log with one `ERROR` line, a 200,000-byte file three levels
/// down, and empty `proc` and `data` to mount on.
pub fn basic_tree(root: &Path) {
    for d in [
        "etc",
        "usr/share/zoneinfo",
        "usr/lib",
        "var/log/app",
        "proc",
        "data",
        "a/b/c",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
    symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    symlink("../share/zoneinfo/UTC", root.join("usr/lib/zone")).unwrap();
    symlink("zoneinfo/UTC", root.join("usr/share/tz")).unwrap();
    fs::write(root.join("var/log/app/app.log"), "start\nan ERROR here\n").unwrap();
    fs::write(root.join("etc/app.conf"), "key=value\n").unwrap();
    fs::set_permissions(root.join("etc/app.conf"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(root.join("etc/app.conf"), Some(1234), Some(5678)).unwrap();
    fs::hard_link(root.join("etc/app.conf"), root.join("a/hardlink")).unwrap();
    fs::write(root.join("a/b/c/deep"), vec![b'x'; 200_000]).unwrap();
}

/// ctrfsd serving only `c`, as `name` (`--runtime none --container NAME=PID`).
pub fn serve(c: &FakeContainer, name: &str) -> Daemon {
    serve_with(c, name, &[])
}

/// [`serve`] with more ctrfsd options (`--cache-ttl 1`, ...).
pub fn serve_with(c: &FakeContainer, name: &str, extra: &[&str]) -> Daemon {
    let pid = format!("{name}={}", c.pid());
    let mut args = vec!["--runtime", "none", "--container", &pid];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}
