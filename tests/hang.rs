//! One container must not stop `/ctr` for everyone (issue 13, "never hang"): real Docker
//! containers run a FUSE server that stops answering (tests/hang/fusehang.c) and a fanotify
//! permission listener that never answers (tests/hang/fanblock.c). Host readers through `/ctr`
//! must get an answer, and another container must keep answering within a second.
//!
//! Containers: `--cap-add SYS_ADMIN` (mount, fanotify_init) and `--device /dev/fuse`; Docker's
//! default seccomp profile allows both syscalls once the capability is granted. On a host with
//! AppArmor, Docker's default profile also denies `mount`: add
//! `--security-opt apparmor=unconfined` there (this machine runs without AppArmor).
//!
//! A reader stuck in a FUSE request cannot be killed, so every reader is waited for only after
//! the blocking container is removed (its FUSE connection aborts, its fanotify group goes),
//! which is what [`Readers`]' drop order arranges.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const IMAGE: &str = "ctrfsd-hang:4";

/// The longest a request for a blocked file may wait before ctrfsd answers it (its deadline,
/// plus room for a loaded machine).
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// How long another container may take to answer.
const OTHERS_LIMIT: Duration = Duration::from_secs(1);

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        busybox_rootfs(
            r,
            &[
                "etc", "data", "blocked", "blockdir", "walk", "mnt", "proc", "dev",
            ],
            &["sh", "cat", "sleep", "ls", "kill", "touch", "test"],
        );
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hang");
        for prog in ["fusehang", "fanblock"] {
            let out = sh(&format!(
                "gcc -static -O2 -o {}/bin/{prog} {}/{prog}.c",
                r.display(),
                src.display()
            ));
            assert!(out.status.success(), "gcc -static {prog}: {out:?}");
        }
        fs::write(r.join("etc/os-release"), "NAME=hang\n").unwrap();
        fs::write(r.join("data/file"), "data\n").unwrap();
        // A second link makes ctrfsd give /data/file a 1 s attribute TTL whatever watches
        // say (a watch cannot see a change made through another link).
        fs::hard_link(r.join("data/file"), r.join("etc/file-link")).unwrap();
        fs::write(r.join("blocked/a"), "a\n").unwrap();
        fs::write(r.join("blocked/b"), "b\n").unwrap();
        fs::write(r.join("blockdir/c"), "c\n").unwrap();
        for i in 0..8 {
            fs::write(r.join(format!("walk/w{i}")), format!("w{i}\n")).unwrap();
        }
        erofs_image(&r.join("img.erofs"));
    })
}

/// An erofs image at `to` for `fusehang erofs`: `/d` holds 200 symlinks with long names, so
/// its inodes fill several blocks and a listing's attributes need blocks its names did not.
fn erofs_image(to: &Path) {
    let src = tempfile::tempdir().unwrap();
    let d = src.path().join("d");
    fs::create_dir(&d).unwrap();
    for i in 0..200 {
        std::os::unix::fs::symlink(
            format!("target-{i}-{}", "t".repeat(100)),
            d.join(format!("link-{i:03}-{}", "n".repeat(60))),
        )
        .unwrap();
    }
    fs::write(src.path().join("file"), "erofs\n").unwrap();
    let out = sh(&format!(
        "mkfs.erofs --quiet {} {}",
        to.display(),
        src.path().display()
    ));
    assert!(out.status.success(), "mkfs.erofs (erofs-utils): {out:?}");
}

/// Host processes reading through `/ctr`; dropping waits for each (declare it before the
/// containers that may block them, so those are removed first).
#[derive(Default)]
struct Readers(Vec<Child>);

impl Readers {
    /// Starts `cmd args...` (output kept).
    fn spawn(&mut self, cmd: &str, args: &[&Path]) -> usize {
        let child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reader");
        self.0.push(child);
        self.0.len() - 1
    }

    /// The exit status and stderr of reader `i` if it ends within `limit`.
    fn finish(&mut self, i: usize, limit: Duration) -> Option<(bool, String)> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.0[i].try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.0[i].stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Some((st.success(), err));
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether reader `i` sits in an uninterruptible wait (a request ctrfsd has not answered).
    fn waiting(&self, i: usize) -> bool {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.0[i].id())).unwrap_or_default();
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('D'))
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd args...` and asserts it succeeds within `limit`.
fn answers_within(cmd: &str, args: &[&Path], limit: Duration) {
    let mut r = Readers::default();
    let i = r.spawn(cmd, args);
    let t = Instant::now();
    match r.finish(i, limit) {
        Some((true, _)) => {}
        Some((false, err)) => panic!("{cmd} {args:?} failed: {err}"),
        None => panic!("{cmd} {args:?} did not answer within {limit:?}"),
    }
    eprintln!("{cmd} {args:?}: {:?}", t.elapsed());
}

fn in_container(name: &str, cmd: &[&str]) -> bool {
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    docker(&args).status.success()
}

fn run(name: &str, opts: &[&str], cmd: &[&str]) -> DockerCtr {
    docker_run_with(name, opts, image(), cmd)
}

const FUSE_OPTS: &[&str] = &["--cap-add", "SYS_ADMIN", "--device", "/dev/fuse"];

/// The other container's checks: `ls -la` of its root and `/etc`, a read.
fn other_answers(v: &Path) {
    answers_within("ls", &[Path::new("-la"), v], OTHERS_LIMIT);
    answers_within("ls", &[Path::new("-la"), &v.join("etc")], OTHERS_LIMIT);
    answers_within("cat", &[&v.join("etc/os-release")], OTHERS_LIMIT);
}

#[test]
fn an_overlay_on_a_hung_fuse_mount_never_blocks_ctr() {
    overlay_on_a_hung_fuse_mount("overlay");
}

/// The layer named through a symlink: mountinfo's `lowerdir` names no FUSE mount.
#[test]
fn an_overlay_naming_its_fuse_layer_through_a_link_never_blocks_ctr() {
    overlay_on_a_hung_fuse_mount("overlay-link");
}

/// The FUSE mount detached lazily after the overlay took it as a layer: mountinfo no longer
/// shows it at all.
#[test]
fn an_overlay_on_a_detached_fuse_mount_never_blocks_ctr() {
    overlay_on_a_hung_fuse_mount("overlay-detach");
}

/// A container stacks an overlay on a FUSE mount it serves, then stops answering (`mode`:
/// how it hides the FUSE layer from its mountinfo, see tests/hang/fusehang.c).
fn overlay_on_a_hung_fuse_mount(mode: &str) {
    let d = Daemon::start(&["--runtime", "docker"]);
    let mut readers = Readers::default();
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(10), || {
        other_v.join("etc/os-release").exists()
    })
    .expect("other container not served");
    let c = run(
        &format!("ctrfsd-hang-fuse-{mode}-{t}"),
        FUSE_OPTS,
        &["/bin/fusehang", mode],
    );
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .expect("the FUSE server and overlay were not set up");
    let v: PathBuf = d.path().join(&c.0);
    wait_until(Duration::from_secs(10), || d.has(&c.0)).expect("container not listed");
    let ls_root = readers.spawn("ls", &[Path::new("-la"), &v]);
    let ls_ovl = readers.spawn("ls", &[Path::new("-la"), &v.join("ovl")]);
    let ls_fuse = readers.spawn("ls", &[Path::new("-la"), &v.join("mnt/f")]);
    let stat_ovl = readers.spawn("stat", &[&v.join("ovl/x")]);
    for (i, what) in [
        (ls_root, "ls -la /"),
        (ls_ovl, "ls -la /ovl"),
        (ls_fuse, "ls -la /mnt/f"),
    ] {
        let (ok, err) = readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("{what} in the container hangs"));
        assert!(ok, "{what}: {err}");
    }
    readers
        .finish(stat_ovl, ANSWER_LIMIT)
        .expect("a lookup below the overlay hangs");
    other_answers(&other_v);
    // The overlay and the FUSE mount show as empty directories.
    assert!(listing(&v.join("ovl")).is_empty());
    assert!(listing(&v.join("mnt/f")).is_empty());
    drop(c);
}

/// The daemon, a bystander container and one named after `tag` running `cmd` with `opts`.
fn bystander_and(tag: &str, opts: &[&str], cmd: &[&str]) -> (Daemon, DockerCtr, DockerCtr) {
    let d = Daemon::start(&["--runtime", "docker"]);
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other-{tag}-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let c = run(&format!("ctrfsd-hang-{tag}-{t}"), opts, cmd);
    (d, other, c)
}

/// The daemon, a bystander container and one running `fusehang <mode>` (a mode that waits
/// for `/go`), once ctrfsd serves the latter's `/data/file`; and its path under the mount.
fn with_trap(mode: &str) -> (Daemon, DockerCtr, DockerCtr, PathBuf) {
    let (d, other, c) = bystander_and(mode, FUSE_OPTS, &["/bin/fusehang", mode]);
    let v = d.path().join(&c.0);
    // Running, not the view of its layers ctrfsd shows while Docker reports it `created`:
    // that view's nodes answer ESTALE once the running container replaces it.
    wait_until(Duration::from_secs(10), || {
        ctrfsd_xattr(&v, "state").as_deref() == Some("running") && v.join("data/file").exists()
    })
    .expect("not served");
    (d, other, c, v)
}

/// Sets `c`'s trap (`/go`) and waits until it is set (`/ready`).
fn spring(c: &DockerCtr, what: &str) {
    assert!(in_container(&c.0, &["touch", "/go"]));
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .unwrap_or_else(|| panic!("{what} was not set up"));
}

#[test]
fn a_fuse_mount_made_after_the_host_looked_never_blocks_ctr() {
    let mut readers = Readers::default();
    let (d, other, c, v) = with_trap("late");
    // The host lists the directory first, then the container mounts over it at once (well
    // within the time a mount table read is reused).
    assert_eq!(listing(&v.join("data")), ["file"]);
    spring(&c, "the late FUSE mount");
    let stat = readers.spawn("stat", &[&v.join("data")]);
    let ls = readers.spawn("ls", &[Path::new("-la"), &v.join("data")]);
    let cat = readers.spawn("cat", &[&v.join("data/file")]);
    let ls_root = readers.spawn("ls", &[Path::new("-la"), &v]);
    for (i, what) in [
        (stat, "stat /data"),
        (ls, "ls -la /data"),
        (cat, "cat /data/file"),
        (ls_root, "ls -la /"),
    ] {
        readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("{what} hangs on a FUSE mount made after the host looked"));
    }
    other_answers(&d.path().join(&other.0));
    drop(c);
}

/// A mount id is reused once its mount is gone: the container unmounts a tmpfs ctrfsd has just
/// classified (its table at most 2 s old) and mounts FUSE elsewhere, which gets the tmpfs's id
/// (fusehang takes every lower free id first). The crossing into the FUSE mount must not trust
/// the table read before that change (it made `stat` hang in `statx`, beyond SIGKILL).
#[test]
fn a_fuse_mount_that_reuses_a_classified_mount_id_never_blocks_ctr() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let mut readers = Readers::default();
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other4-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let c = run(
        &format!("ctrfsd-hang-reuse-{t}"),
        FUSE_OPTS,
        &["/bin/fusehang", "reuse"],
    );
    let v = d.path().join(&c.0);
    wait_until(Duration::from_secs(10), || d.has(&c.0)).expect("container not listed");
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/armed"])
    })
    .expect("the tmpfs mounts were not made");
    let pid = String::from_utf8(docker(&["inspect", "-f", "{{.State.Pid}}", &c.0]).stdout).unwrap();
    let croot = PathBuf::from(format!("/proc/{}/root", pid.trim()));
    // A crossing into /c, mounted after ctrfsd first read the table, makes it read the table
    // again now: /a's id is in it as a served tmpfs. Then, well within 2 s, the swap.
    assert!(v.join("c").is_dir());
    fs::write(croot.join("go"), "").unwrap();
    wait_until(Duration::from_secs(20), || croot.join("ready").exists())
        .expect("the FUSE mount at /b was not made");
    let stat = readers.spawn("stat", &[&v.join("b")]);
    let ls = readers.spawn("ls", &[Path::new("-la"), &v]);
    for (i, what) in [(stat, "stat /b"), (ls, "ls -la /")] {
        readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("{what} hangs on a FUSE mount with a reused mount id"));
    }
    assert!(listing(&v.join("b")).is_empty());
    other_answers(&d.path().join(&other.0));
    drop(c);
}

#[test]
fn a_fanotify_block_is_answered_and_others_keep_answering() {
    let mut readers = Readers::default();
    let (d, other, c) = bystander_and(
        "fan",
        &["--cap-add", "SYS_ADMIN"],
        &["/bin/sleep", "1000000"],
    );
    let v = d.path().join(&c.0);
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(10), || {
        v.join("blocked/a").exists() && other_v.join("etc/os-release").exists()
    })
    .expect("not served");
    docker_ok(&[
        "exec",
        "-d",
        &c.0,
        "/bin/fanblock",
        "/blocked/a",
        "/blocked/b",
    ]);
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-s", "/fanblock.pid"])
    })
    .expect("the fanotify listener did not start");
    // Two readers, as many as the default worker count on a 2-CPU machine.
    let a = readers.spawn("cat", &[&v.join("blocked/a")]);
    let b = readers.spawn("cat", &[&v.join("blocked/b")]);
    wait_until(Duration::from_secs(5), || {
        readers.waiting(a) && readers.waiting(b)
    })
    .expect("the readers never waited on ctrfsd");
    other_answers(&other_v);
    // A permission mark raises no event for `O_PATH` opens and `statx`: the blocked files'
    // lookups and attributes still answer, on the FUSE workers, without a deadline.
    answers_within(
        "stat",
        &[&v.join("blocked/a"), &v.join("blocked/b")],
        OTHERS_LIMIT,
    );
    answers_within("ls", &[Path::new("-la"), &v.join("blocked")], OTHERS_LIMIT);
    for (i, what) in [(a, "a"), (b, "b")] {
        let (ok, err) = readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("reading {what} is never answered"));
        assert!(!ok, "{what} read while blocked");
        assert!(
            err.contains("Input/output error") || err.contains("Resource temporarily unavailable"),
            "{what}: {err}"
        );
    }
    other_answers(&other_v);
    // The block ends: ctrfsd answers that container again.
    assert!(in_container(
        &c.0,
        &["sh", "-c", "kill $(cat /fanblock.pid)"]
    ));
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(v.join("blocked/a")).is_ok_and(|s| s == "a\n")
    })
    .expect("ctrfsd did not answer again once the listener was gone");
    assert_eq!(fs::read_to_string(v.join("blocked/b")).unwrap(), "b\n");
    assert_eq!(listing(&v.join("blockdir")), ["c"]);
    answers_within("ls", &[Path::new("-la"), &v.join("blocked")], OTHERS_LIMIT);
}

/// Two containers share a volume; the one with `CAP_SYS_ADMIN` marks six of its files with a
/// fanotify permission mark and never answers, and the host reads them through the *other*
/// container's path. The stuck calls count against that volume's mount in the reader's
/// container: its own image files and its root listing keep answering (before, they got
/// `EAGAIN` until the listener went), and so does the blocking container.
#[test]
fn a_block_on_a_shared_volume_costs_the_volume_not_the_readers_own_files() {
    let mut readers = Readers::default();
    let shared = tempfile::tempdir().unwrap();
    let names: Vec<String> = (1..=6).map(|i| format!("f{i}")).collect();
    for n in &names {
        fs::write(shared.path().join(n), format!("{n}\n")).unwrap();
    }
    let vol = format!("{}:/s", shared.path().display());
    let d = Daemon::start(&["--runtime", "docker"]);
    let t = token();
    let marker = run(
        &format!("ctrfsd-hang-shm-{t}"),
        &["--cap-add", "SYS_ADMIN", "-v", &vol],
        &["/bin/sleep", "1000000"],
    );
    let reader = run(
        &format!("ctrfsd-hang-shr-{t}"),
        &["-v", &vol],
        &["/bin/sleep", "1000000"],
    );
    let (mv, rv) = (d.path().join(&marker.0), d.path().join(&reader.0));
    wait_until(Duration::from_secs(10), || {
        rv.join("s/f6").exists() && mv.join("etc/os-release").exists()
    })
    .expect("not served");
    let mut args = vec!["exec", "-d", &marker.0, "/bin/fanblock"];
    let blocked: Vec<String> = names.iter().map(|n| format!("/s/{n}")).collect();
    args.extend(blocked.iter().map(String::as_str));
    docker_ok(&args);
    wait_until(Duration::from_secs(20), || {
        in_container(&marker.0, &["test", "-s", "/fanblock.pid"])
    })
    .expect("the fanotify listener did not start");
    let cats: Vec<_> = names
        .iter()
        .map(|n| readers.spawn("cat", &[&rv.join("s").join(n)]))
        .collect();
    for (i, n) in cats.into_iter().zip(&names) {
        let (ok, err) = readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("reading s/{n} is never answered"));
        assert!(!ok, "s/{n} read while blocked");
        assert!(
            err.contains("Input/output error") || err.contains("Resource temporarily unavailable"),
            "s/{n}: {err}"
        );
    }
    // The reader's own files, while its volume's calls are stuck.
    other_answers(&rv);
    other_answers(&mv);
    assert!(in_container(
        &marker.0,
        &["sh", "-c", "kill $(cat /fanblock.pid)"]
    ));
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(rv.join("s/f1")).is_ok_and(|s| s == "f1\n")
    })
    .expect("the volume did not answer again once the listener was gone");
}

/// A walk reading `walk/` file by file starts a prefetch job (src/fs/prefetch.rs) that meets
/// files a fanotify listener blocks: the job waits on a helper thread, never on a FUSE worker,
/// and the files read right once the listener is gone.
#[test]
fn a_fanotify_block_met_by_prefetch_holds_no_fuse_worker() {
    let (d, other, c) = bystander_and(
        "pf",
        &["--cap-add", "SYS_ADMIN"],
        &["/bin/sleep", "1000000"],
    );
    let v = d.path().join(&c.0);
    let other_v = d.path().join(&other.0);
    let walk = v.join("walk");
    wait_until(Duration::from_secs(10), || {
        walk.join("w7").exists() && other_v.join("etc/os-release").exists()
    })
    .expect("not served");
    // Only files unchanged for a few seconds are prefetched.
    let newest = || {
        (0..8)
            .filter_map(|i| fs::metadata(walk.join(format!("w{i}"))).ok())
            .map(|m| std::os::unix::fs::MetadataExt::ctime(&m))
            .max()
            .unwrap_or(i64::MAX)
    };
    wait_until(Duration::from_secs(10), || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - newest() >= 4
    })
    .expect("files settled");
    let ls = sh(&format!("ls -f {}", walk.display()));
    let listed = stdout(&ls);
    let names: Vec<&str> = listed.lines().filter(|n| n.starts_with('w')).collect();
    assert_eq!(
        names.len(),
        8,
        "ls -f {}: {:?}, printed {listed:?}, said {:?}",
        walk.display(),
        ls.status,
        String::from_utf8_lossy(&ls.stderr)
    );
    let mut args = vec!["exec", "-d", &c.0, "/bin/fanblock"];
    let blocked: Vec<String> = names[2..].iter().map(|n| format!("/walk/{n}")).collect();
    args.extend(blocked.iter().map(String::as_str));
    docker_ok(&args);
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-s", "/fanblock.pid"])
    })
    .expect("the fanotify listener did not start");
    // Two whole files read in listing order: the job starts, and waits on the third.
    for n in &names[..2] {
        assert_eq!(fs::read_to_string(walk.join(n)).unwrap(), format!("{n}\n"));
    }
    wait_until(ANSWER_LIMIT, || d.log_text().contains("passed its"))
        .expect("the prefetch job never met the block (or was not started)");
    other_answers(&other_v);
    answers_within("ls", &[Path::new("-la"), &walk], OTHERS_LIMIT);
    assert!(in_container(
        &c.0,
        &["sh", "-c", "kill $(cat /fanblock.pid)"]
    ));
    for n in &names[2..] {
        let f = walk.join(n);
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&f).is_ok_and(|s| s == format!("{n}\n"))
        })
        .unwrap_or_else(|| panic!("{n} did not read right once the listener was gone"));
    }
    other_answers(&other_v);
}

/// A container process can hold one of its directories' inode lock for good: `getdents64`
/// into memory mapped from its own FUSE file whose reads it never answers holds the lock while
/// the copy faults, and a `creat` queued behind it makes every later lookup of a name not yet
/// cached in that directory wait too (the lock favours the waiting writer). Lookups through
/// `/ctr` of such names must be answered (EIO after the deadline) and never take the FUSE
/// workers: the other container answers within a second meanwhile, and this one again once
/// the block ends.
#[test]
fn a_directory_lock_held_in_the_container_never_blocks_ctr() {
    let mut readers = Readers::default();
    let (d, other, c, v) = with_trap("dirlock");
    spring(&c, "the directory lock");
    // More lookups than FUSE workers, each of a name the kernel has not cached.
    let stats: Vec<usize> = (0..4)
        .map(|i| readers.spawn("stat", &[&v.join(format!("data/nope-{i}"))]))
        .collect();
    other_answers(&d.path().join(&other.0));
    for i in stats {
        let (ok, err) = readers
            .finish(i, ANSWER_LIMIT)
            .expect("a lookup in a directory locked by the container hangs");
        assert!(!ok, "stat of a name in a locked directory succeeded");
        assert!(
            err.contains("Input/output error") || err.contains("temporarily unavailable"),
            "stat: {err}"
        );
    }
    other_answers(&d.path().join(&other.0));
    // The block ends with the container: ctrfsd still serves.
    drop(c);
    other_answers(&d.path().join(&other.0));
}

/// A container's main process can make its root a FUSE mount it serves (mount, chroot) and then
/// stop answering: ctrfsd must ask that root nothing (not even a `statx` when it first opens it),
/// leave the container out with the reason, and serve the others.
#[test]
fn a_main_process_rooted_in_a_hung_fuse_mount_never_blocks_ctr() {
    hung_fuse_root_is_left_out("root", "never read");
}

/// The same with the process chrooted into a directory *below* its hung FUSE mount's root
/// (`fusehang subroot`): its mountinfo then lists no mount holding its root, so the mount is
/// classified from the kernel's mount structures (statx's unique mount id, statmount) without
/// asking the FUSE server anything.
#[test]
fn a_main_process_chrooted_below_a_hung_fuse_mount_never_blocks_ctr() {
    hung_fuse_root_is_left_out("subroot", "a fuse mount its mount table does not show");
}

/// Runs `fusehang MODE` (its root on a FUSE mount that stops answering) beside a plain
/// container: `ls -la /ctr` and `ls -la` of the container answer, the other container keeps
/// answering, and the container is left out with `reason` in the log.
fn hung_fuse_root_is_left_out(mode: &str, reason: &str) {
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other-{mode}-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let c = run(
        &format!("ctrfsd-hang-{mode}-{t}"),
        FUSE_OPTS,
        &["/bin/fusehang", mode],
    );
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .expect("the FUSE root was not set up");
    let d = Daemon::start(&["--runtime", "docker"]);
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(10), || {
        other_v.join("etc/os-release").exists()
    })
    .expect("the other container is not served");
    answers_within("ls", &[Path::new("-la"), d.path()], OTHERS_LIMIT);
    other_answers(&other_v);
    let mut readers = Readers::default();
    let probe = readers.spawn("ls", &[Path::new("-la"), &d.path().join(&c.0)]);
    readers
        .finish(probe, ANSWER_LIMIT)
        .expect("ls of the container on a hung FUSE root hangs");
    other_answers(&other_v);
    assert!(
        !listing(d.path()).iter().any(|n| n == &c.0),
        "a container on a hung FUSE root ({mode}) is listed"
    );
    let log = d.log_text();
    assert!(
        log.contains(&c.0) && log.contains(reason),
        "no reason logged: {log}"
    );
    drop(c);
    drop(readers);
    other_answers(&other_v);
}

/// The kernel may evict the container filesystem's dentry of a file ctrfsd served (memory
/// pressure; here `drop_caches`) while the host keeps the file open through `/ctr`. An
/// `fstat` of it (what `tail -f` does every second) then makes ctrfsd walk the name again,
/// which takes the directory's inode lock; with a container holding that lock (as in
/// `dirlock`), the walk must not hold a FUSE worker: it is answered EIO at the deadline and the
/// other container answers within a second.
#[test]
fn an_fstat_after_the_containers_dentry_was_evicted_never_blocks_ctr() {
    use std::os::fd::AsRawFd;
    let mut readers = Readers::default();
    let (d, other, c, v) = with_trap("dirlock");
    // Open through `/ctr`: the FUSE dentry and inode stay while it is open.
    let held = fs::File::open(v.join("data/file")).unwrap();
    let via = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        held.as_raw_fd()
    ));
    spring(&c, "the directory lock");
    // Evict the container filesystem's own dentries (unused: ctrfsd holds no fd on the file;
    // eviction takes no directory lock). Once the kernel's 1 s attribute cache of the file has
    // expired too, an `fstat` (`stat -L` of the fd's magic link) reaches ctrfsd, whose walk of
    // the name then waits on the lock: it no longer answers at once. A dentry used since the
    // last pass may survive one `drop_caches` (the kernel rotates a referenced dentry once
    // before it frees it), so caches are dropped twice in a row, once a second (each drop
    // slows every walk on the machine), until then.
    let mut stats = Vec::new();
    let mut tries = 0;
    wait_until(Duration::from_secs(30), || {
        if tries % 5 == 0 {
            for _ in 0..2 {
                fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
            }
        }
        tries += 1;
        let i = readers.spawn("stat", &[Path::new("-L"), &via]);
        stats.push(i);
        readers.finish(i, Duration::from_millis(200)).is_none()
    })
    .unwrap_or_else(|| {
        // What ctrfsd answered meanwhile (its request and error counters), for the report.
        let counters = sh(&format!(
            "getfattr --only-values -n user.ctrfsd.requests {}",
            d.path().display()
        ));
        panic!(
            "the file's attributes and dentry never left the kernel's caches: {}",
            String::from_utf8_lossy(&counters.stdout)
        )
    });
    // More than there are FUSE workers.
    for _ in 0..3 {
        stats.push(readers.spawn("stat", &[Path::new("-L"), &via]));
    }
    other_answers(&d.path().join(&other.0));
    let waiting: Vec<usize> = stats.split_off(stats.len() - 4);
    for i in waiting {
        let (ok, err) = readers
            .finish(i, ANSWER_LIMIT)
            .expect("an fstat of a file in a directory locked by the container hangs");
        assert!(!ok, "stat of a file in a locked directory succeeded");
        assert!(
            err.contains("Input/output error") || err.contains("temporarily unavailable"),
            "stat: {err}"
        );
    }
    other_answers(&d.path().join(&other.0));
    drop(held);
    drop(c);
    other_answers(&d.path().join(&other.0));
}

/// A container's main process mounts its FUSE server at /mnt/f, an overlay with /mnt/f as a
/// lower layer, chroots into that overlay, and stops answering (`fusehang ovlroot`). Its mount
/// table then shows only an overlay at `/`, as a runtime's root looks: ctrfsd must not take it
/// for the runtime's overlay (a `statx` of it waits on the FUSE server), must leave the
/// container out with the reason, and must keep serving the others.
#[test]
fn a_root_overlay_the_container_made_on_its_fuse_mount_never_blocks_ctr() {
    hung_fuse_root_is_left_out("ovlroot", "an overlay its runtime did not make");
}

/// The same with ctrfsd running before the container starts: `ls -la /ctr` (readdirplus of
/// the mount root) and `ls -la` of the container must answer, while and after it sets the trap.
#[test]
fn a_root_overlay_made_after_ctrfsd_started_never_blocks_ctr() {
    let d = Daemon::start(&["--runtime", "docker"]);
    let mut readers = Readers::default();
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other-ovlroot2-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(10), || {
        other_v.join("etc/os-release").exists()
    })
    .expect("the other container is not served");
    let c = run(
        &format!("ctrfsd-hang-ovlroot2-{t}"),
        FUSE_OPTS,
        &["/bin/fusehang", "ovlroot"],
    );
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .expect("the overlay root was not set up");
    // Several times over, while the registry may be acquiring the container.
    for _ in 0..3 {
        let ls = readers.spawn("ls", &[Path::new("-la"), d.path()]);
        let ls_c = readers.spawn("ls", &[Path::new("-la"), &d.path().join(&c.0)]);
        for (i, what) in [(ls, "ls -la /ctr"), (ls_c, "ls -la /ctr/<it>")] {
            readers
                .finish(i, ANSWER_LIMIT)
                .unwrap_or_else(|| panic!("{what} hangs on a root overlay on a hung FUSE mount"));
        }
        other_answers(&other_v);
    }
    // Acquired before it chrooted, it may be listed: then from the root fd ctrfsd opened at
    // acquisition (the runtime's overlay), which answered above.
    drop(c);
    drop(readers);
    other_answers(&other_v);
}

/// The daemon, a bystander container and one running `fusehang erofs` (named after `label`)
/// once its erofs is mounted and the container is served: with the container's and the
/// bystander's paths under the mount.
fn hung_erofs(label: &str) -> (Daemon, DockerCtr, DockerCtr, PathBuf, PathBuf) {
    let (d, other, c) = bystander_and(label, FUSE_OPTS, &["/bin/fusehang", "erofs"]);
    let v = d.path().join(&c.0);
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .expect("the file-backed erofs was not mounted");
    wait_until(Duration::from_secs(10), || {
        v.join("etc/os-release").exists()
    })
    .expect("not served");
    (d, other, c, v, other_v)
}

/// A container mounts an erofs image that is a file on its own FUSE mount (file-backed erofs,
/// Linux 6.12+) and stops answering (`fusehang erofs`): every read of the erofs's metadata
/// then waits on the FUSE server. `/x` must show as an empty placeholder, never be read
/// (listing, lookups, `readlink`s), and the other container must keep answering.
#[test]
fn an_erofs_backed_by_a_file_on_a_hung_fuse_mount_never_blocks_ctr() {
    let mut readers = Readers::default();
    let (_d, _other, c, v, other_v) = hung_erofs("erofs");
    let names: Vec<String> = (0..2)
        .map(|i| format!("x/d/link-{i:03}-{}", "n".repeat(60)))
        .collect();
    let l0 = readers.spawn("readlink", &[&v.join(&names[0])]);
    let l1 = readers.spawn("readlink", &[&v.join(&names[1])]);
    let ls = readers.spawn("ls", &[Path::new("-la"), &v.join("x/d")]);
    let ls_x = readers.spawn("ls", &[Path::new("-la"), &v.join("x")]);
    for (i, what) in [
        (l0, "readlink x/d/link-000"),
        (l1, "readlink x/d/link-001"),
        (ls, "ls -la x/d"),
        (ls_x, "ls -la x"),
    ] {
        readers
            .finish(i, ANSWER_LIMIT)
            .unwrap_or_else(|| panic!("{what} hangs on an erofs backed by a hung FUSE file"));
    }
    other_answers(&other_v);
    assert!(listing(&v.join("x")).is_empty(), "the erofs was read");
    drop(c);
    drop(readers);
    other_answers(&other_v);
}

/// Listings whose entries block: `ls -la` of a directory on the hung erofs of
/// `fusehang erofs`, 10 at once. Each must be answered (EIO at the deadline, EAGAIN once the
/// container holds its share of helpers, or an empty placeholder) within the deadline and a
/// second, ctrfsd's threads must stay bounded, and another container must answer within a
/// second meanwhile.
#[test]
fn listings_that_block_are_answered_and_hold_bounded_threads() {
    let mut readers = Readers::default();
    let (d, _other, c, v, other_v) = hung_erofs("erofs-ls");
    let threads = || {
        fs::read_dir(format!("/proc/{}/task", d.pid()))
            .map(|t| t.count())
            .unwrap_or(0)
    };
    let before = threads();
    let limit = Duration::from_secs(ctrfsd_deadline_secs() + 1);
    let mut most = before;
    for round in 0..10 {
        let t = Instant::now();
        let i = readers.spawn("ls", &[Path::new("-la"), &v.join("x/d")]);
        readers
            .finish(i, limit + Duration::from_secs(2))
            .unwrap_or_else(|| panic!("listing {round} is never answered"));
        assert!(
            t.elapsed() <= limit + Duration::from_secs(1),
            "listing {round} took {:?}",
            t.elapsed()
        );
        most = most.max(threads());
        answers_within("ls", &[Path::new("-la"), &other_v], OTHERS_LIMIT);
    }
    // The FUSE workers, the runtime and deadline threads, and at most the container's share
    // of stuck helpers (4) and a few idle ones.
    assert!(
        most <= before + 8,
        "ctrfsd's threads grew from {before} to {most} over 10 blocked listings"
    );
    other_answers(&other_v);
    drop(c);
    drop(readers);
    other_answers(&other_v);
}

/// A host directory on a tmpfs of its own with shared propagation; unmounted on drop, with
/// whatever propagated into it.
struct SharedDir(tempfile::TempDir);

impl SharedDir {
    fn new() -> SharedDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().display();
        let o = sh(&format!(
            "mount -t tmpfs ctrfsd-hang-shared {p} && mount --make-shared {p}"
        ));
        assert!(o.status.success(), "a shared tmpfs at {p}: {o:?}");
        SharedDir(d)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -R -l {}", self.0.path().display()));
    }
}

/// A container with `CAP_SYS_ADMIN` and an `rshared` volume (Docker needs no `--privileged`
/// for it) mounts its root overlay on its own FUSE mount inside that volume and chroots into
/// it (`fusehang ovlshared`): the overlay propagates to the host's mount namespace, and ctrfsd
/// takes it for a runtime's and serves it (README, Known holes). `statfs` of an overlay asks
/// its first layer's filesystem, here the hung FUSE server: `stat -f` of the container must be
/// answered and must not hold a FUSE worker (three of them held both, and no container
/// answered).
#[test]
fn statfs_of_a_served_overlay_on_a_hung_fuse_mount_never_blocks_ctr() {
    let shared = SharedDir::new();
    let mut readers = Readers::default();
    // Declared before the containers, so that a failing run drops (kills) the FUSE server
    // before the daemon, whose workers it holds.
    let d: Daemon;
    let t = token();
    let other = run(
        &format!("ctrfsd-hang-other-ovlshared-{t}"),
        &[],
        &["/bin/sleep", "1000000"],
    );
    let vol = format!("{}:/hv:rshared", shared.0.path().display());
    let mut opts = FUSE_OPTS.to_vec();
    opts.extend(["-v", vol.as_str()]);
    let c = run(
        &format!("ctrfsd-hang-ovlshared-{t}"),
        &opts,
        &["/bin/fusehang", "ovlshared"],
    );
    wait_until(Duration::from_secs(20), || {
        in_container(&c.0, &["test", "-e", "/ready"])
    })
    .expect("the overlay root in the shared volume was not set up");
    d = Daemon::start(&["--runtime", "docker"]);
    let other_v = d.path().join(&other.0);
    wait_until(Duration::from_secs(10), || {
        other_v.join("etc/os-release").exists()
    })
    .expect("the other container is not served");
    let v = d.path().join(&c.0);
    wait_until(Duration::from_secs(10), || d.has(&c.0))
        .expect("the container is not listed (the known hole closed? then this test is moot)");
    let stats: Vec<usize> = (0..3)
        .map(|_| readers.spawn("stat", &[Path::new("-f"), &v]))
        .collect();
    other_answers(&other_v);
    for i in stats {
        readers
            .finish(i, ANSWER_LIMIT)
            .expect("stat -f of a served overlay on a hung FUSE mount hangs");
    }
    other_answers(&other_v);
    drop(c);
    drop(d);
    drop(readers);
    drop(shared);
}

/// ctrfsd's deadline for a blockable call, in seconds (README, "Never hang").
fn ctrfsd_deadline_secs() -> u64 {
    3
}
