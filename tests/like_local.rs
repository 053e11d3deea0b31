//! What everyday tools read besides file contents (a symlink's `st_size`, `lseek` holes, the
//! root of a container whose main thread exited), through a real mount of real Docker
//! containers, checked against the kernel's own view (`/proc/<pid>/root`).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-like-local:1";

/// A process whose main thread exits while a worker thread runs on.
const LONELY_C: &str = r#"
#include <pthread.h>
#include <unistd.h>
static void *worker(void *arg) { (void)arg; for (;;) pause(); return 0; }
int main(void) {
    pthread_t t;
    if (pthread_create(&t, 0, worker, 0) != 0) return 1;
    pthread_exit(0);
}
"#;

/// Builds the test image once per test binary (busybox and a few links, no registry).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        busybox_rootfs(
            r,
            &[
                "etc",
                "usr/share/zoneinfo",
                "var/log",
                "tmp",
                "proc",
                "sys",
                "dev",
            ],
            &[
                "sh", "sleep", "echo", "cat", "mv", "rm", "ln", "mkdir", "truncate", "dd",
            ],
        );
        fs::write(r.join("usr/share/zoneinfo/UTC"), "CONTAINER-ZONE\n").unwrap();
        symlink("/usr/share/zoneinfo/UTC", r.join("etc/localtime")).unwrap();
        symlink("../../usr/share/zoneinfo/UTC", r.join("var/log/zone-rel")).unwrap();
        symlink("zoneinfo/UTC", r.join("usr/share/tz")).unwrap();
        fs::write(r.join("etc/marker"), "IN-THE-CONTAINER\n").unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("lonely.c"), LONELY_C).unwrap();
        let out = sh(&format!(
            "gcc -static -O2 -pthread -o {}/bin/lonely {}/lonely.c",
            r.display(),
            src.path().display()
        ));
        assert!(out.status.success(), "gcc -static: {out:?}");
    })
}

/// A running container of [`image`] named `ctrfsd-ll-<what>-<token>`.
fn sleeper(what: &str) -> DockerCtr {
    let name = format!("ctrfsd-ll-{what}-{}", token());
    docker_run(&name, image(), &["/bin/sh", "-c", "exec sleep 100000"])
}

/// ctrfsd on a fresh mountpoint, with `c` listed.
fn serve(c: &DockerCtr) -> Daemon {
    let d = Daemon::start(&[]);
    within(Duration::from_secs(10), "container listed", || d.has(&c.0));
    d
}

#[test]
fn a_symlinks_size_is_the_length_of_its_answer() {
    let c = sleeper("lsize");
    let d = serve(&c);
    let view = d.path().join(&c.0);
    // Absolute, `..` (both rewritten to longer answers) and walking-down (unchanged) links, as
    // `lstat` (lookup, getattr) and a listing (readdirplus) report them.
    let links = ["etc/localtime", "var/log/zone-rel", "usr/share/tz"];
    let _ = fs::read_dir(view.join("etc")).unwrap().count();
    for l in links {
        let answer = fs::read_link(view.join(l)).unwrap();
        let size = fs::symlink_metadata(view.join(l)).unwrap().len();
        assert_eq!(
            size,
            answer.as_os_str().len() as u64,
            "{l}: st_size {size}, readlink {answer:?}"
        );
    }
    // The complaint itself: libarchive sizes its buffer from st_size.
    let o = sh(&format!(
        "bsdtar -cf - -C {} etc/localtime | bsdtar -tvf -",
        view.display()
    ));
    assert!(o.status.success(), "bsdtar: {o:?}");
    let want = format!("-> {}/usr/share/zoneinfo/UTC", view.display());
    assert!(
        stdout(&o).trim_end().ends_with(&want),
        "bsdtar stored {:?}, want the whole target {want:?}",
        stdout(&o)
    );
}

/// Every `SEEK_DATA`/`SEEK_HOLE` answer for `path` from `0` to its end, stepping 64 KiB at
/// a time through each hole and data run, as `offset -> (data, hole)` lines (errno names on
/// failure): what a sparse-aware tool sees.
fn seek_map(path: &Path) -> String {
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
out = []
for off in list(range(0, size, 64 << 20)) + [size - 1, size, size + 1]:
    r = []
    for w in (os.SEEK_DATA, os.SEEK_HOLE):
        try:
            r.append(str(os.lseek(fd, off, w)))
        except OSError as e:
            r.append(os.strerror(e.errno))
    out.append(f"{off} -> {r[0]} {r[1]}")
print("\n".join(out))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    stdout(&o)
}

#[test]
fn holes_are_where_the_kernel_says_and_cp_skips_them() {
    let c = sleeper("holes");
    // 1 GiB with data at 0, at 300 MiB and in the last 4 KiB: holes between.
    c.exec(
        "truncate -s 1G /sparse && echo head | dd of=/sparse conv=notrunc 2>/dev/null \
         && echo middle | dd of=/sparse bs=1M seek=300 conv=notrunc 2>/dev/null \
         && echo tail | dd of=/sparse bs=4096 seek=262143 conv=notrunc 2>/dev/null",
    );
    let d = serve(&c);
    let ours = d.path().join(&c.0).join("sparse");
    let kernel = Path::new(&format!("/proc/{}/root/sparse", c.pid())).to_path_buf();
    let want = seek_map(&kernel);
    assert!(
        want.contains("0 -> 0 4096"),
        "not sparse underneath:\n{want}"
    );
    assert_eq!(
        seek_map(&ours),
        want,
        "SEEK_DATA/SEEK_HOLE differ from the kernel's view"
    );

    // `cp` skips holes it is told about: far fewer reads than 1 GiB of 128 KiB reads (8192).
    let before = request_counts(d.path()).get("read").copied().unwrap_or(0);
    let dst = tempfile::tempdir().unwrap();
    let o = sh(&format!(
        "cp --sparse=always {} {}/s && cmp {} {}/s",
        ours.display(),
        dst.path().display(),
        kernel.display(),
        dst.path().display()
    ));
    assert!(o.status.success(), "cp: {o:?}");
    let reads = request_counts(d.path()).get("read").copied().unwrap_or(0) - before;
    assert!(reads < 256, "cp read the holes: {reads} reads");
}

#[test]
fn a_container_whose_main_thread_exited_is_served_through_a_live_thread() {
    image();
    let name = format!("ctrfsd-ll-lonely-{}", token());
    let c = docker_run(&name, IMAGE, &["/bin/lonely"]);
    let pid = c.pid();
    // The kernel's own view through the main thread is gone; a live thread's remains.
    within(Duration::from_secs(10), "main thread exited", || {
        fs::metadata(format!("/proc/{pid}/root/etc/marker")).is_err()
    });
    let tid = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|t| *t != pid.to_string())
        .expect("a worker thread");
    assert_eq!(
        fs::read_to_string(format!("/proc/{tid}/root/etc/marker")).unwrap(),
        "IN-THE-CONTAINER\n"
    );

    // ctrfsd started after that moment lists it, by name and by either number.
    let d = serve(&c);
    for view in [name.clone(), format!(".pid/{pid}"), format!(".pid/{tid}")] {
        let at = d.path().join(&view);
        assert_eq!(
            fs::read_to_string(at.join("etc/marker")).unwrap_or_else(|e| panic!("{view}: {e}")),
            "IN-THE-CONTAINER\n",
            "{view}"
        );
        // Its mount table was read too (through the thread): /proc shows empty.
        assert!(
            listing(&at.join("proc")).is_empty(),
            "{view}: /proc not empty"
        );
    }
    // Its probe path (user.ctrfsd.host_path) names the file through the live thread: the
    // main thread's /proc/<pid>/root no longer resolves.
    for view in [name.clone(), format!(".pid/{pid}")] {
        let at = d.path().join(&view).join("etc/marker");
        let host = ctrfsd_xattr(&at, "host_path").unwrap_or_else(|| panic!("{view}: no host_path"));
        assert_eq!(
            fs::read_to_string(&host).unwrap_or_else(|e| panic!("{view}: {host}: {e}")),
            "IN-THE-CONTAINER\n",
            "{view}"
        );
    }
    // And it goes when the process ends (Docker cannot stop it: its main PID is a zombie).
    let o = sh(&format!("kill -KILL {pid}"));
    assert!(o.status.success(), "kill: {o:?}");
    within(
        Duration::from_secs(10),
        "stopped container no longer live",
        || ctrfsd_xattr(&d.path().join(&name), "state").as_deref() != Some("running"),
    );
}

#[test]
fn a_link_answer_follows_the_entries_it_was_computed_from_within_a_second() {
    let c = sleeper("derived");
    c.exec(
        "mkdir -p /e1/in /e2/in /a /p/q && echo one > /e1/x && echo two > /e2/x \
         && ln -s /e1/in /d && ln -s ../d/../x /a/l && ln -s ../../x /p/q/up",
    );
    let d = serve(&c);
    let v = d.path().join(&c.0);
    let answer = |p: &str| fs::read_link(v.join(p)).ok();
    let want = |p: &str| Some(v.join(p));
    // Answered through the link /d (`..` after it climbs from where it leads), and through
    // the path of the link's own directory.
    for _ in 0..2 {
        assert_eq!(answer("a/l"), want("e1/x"));
        assert_eq!(answer("p/q/up"), want("x"));
        assert_eq!(fs::read_to_string(v.join("a/l")).unwrap(), "one\n");
    }
    // The link they were resolved through changes; nothing happens to the links themselves.
    c.exec("ln -sfn /e2/in /d && mkdir /p2 && mv /p/q /p2/q");
    let took = within(
        Duration::from_secs(1),
        "answer through the changed link",
        || answer("a/l") == want("e2/x"),
    );
    eprintln!("derived answer renewed after {took:?}");
    assert_eq!(fs::read_to_string(v.join("a/l")).unwrap(), "two\n");
    within(
        Duration::from_secs(1),
        "answer from the moved directory",
        || answer("p2/q/up") == want("x"),
    );
    // Its size follows its answer.
    let size = fs::symlink_metadata(v.join("a/l")).unwrap().len();
    assert_eq!(size, v.join("e2/x").as_os_str().len() as u64);
}

/// A running `inotifywait -m` on `dir`, its output gathered; ready once it said so.
struct Watcher(
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
);

impl Watcher {
    fn start(dir: &Path) -> Watcher {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new("inotifywait")
            .args(["-m", "-e", "create,modify,moved_to,delete"])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run inotifywait (scripts/setup.sh installs inotify-tools)");
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (o, ready) = (
            out.clone(),
            std::sync::Arc::new(std::sync::Mutex::new(false)),
        );
        let r = ready.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("Watches established") {
                    *r.lock().unwrap() = true;
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        within(Duration::from_secs(5), "inotifywait ready", || {
            *ready.lock().unwrap()
        });
        Watcher(child, out)
    }

    fn events(&self) -> String {
        self.1.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn inotify_on_the_mount_sees_no_change_made_inside_the_container() {
    // A kernel limit (README, Limitations): FUSE has no way to send fsnotify events, and the
    // kernel raises them only for changes made through the mount, which is read-only.
    let c = sleeper("inotify");
    let d = serve(&c);
    let ours = Watcher::start(&d.path().join(&c.0).join("tmp"));
    let kernel = Watcher::start(Path::new(&format!("/proc/{}/root/tmp", c.pid())));
    c.exec("echo x > /tmp/new; echo y >> /tmp/new; mv /tmp/new /tmp/moved; rm /tmp/moved");
    within(
        Duration::from_secs(5),
        "events through /proc/<pid>/root",
        || kernel.events().contains("DELETE moved"),
    );
    assert_eq!(ours.events(), "", "events through the mount");
}

#[test]
fn one_st_dev_for_all_and_the_mounts_attribute_to_stay_on_the_root_filesystem() {
    image();
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("in-volume"), "v\n").unwrap();
    let name = format!("ctrfsd-ll-xdev-{}", token());
    let c = docker_run_with(
        &name,
        &[
            "-v",
            &format!("{}:/data", vol.path().display()),
            "--tmpfs",
            "/scratch",
            // A mountpoint `find -path` would read as a pattern, with a space.
            "-v",
            &format!("{}:/v [1]*", vol.path().display()),
        ],
        image(),
        &[
            "/bin/sh",
            "-c",
            "echo s > /scratch/in-tmpfs; exec sleep 100000",
        ],
    );
    let d = serve(&c);
    let v = d.path().join(&name);
    let k = format!("/proc/{}/root", c.pid());
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    // The kernel's view tells the volume apart; every entry under the mount has one st_dev.
    assert_ne!(
        dev(&Path::new(&k).join("etc")),
        dev(&Path::new(&k).join("data"))
    );
    assert_eq!(dev(&v.join("etc")), dev(&v.join("data")));
    assert_eq!(dev(&v.join("etc")), dev(&v.join("scratch")));

    let mounts = ctrfsd_xattr(&v, "mounts").expect("user.ctrfsd.mounts");
    let points: Vec<&str> = mounts.lines().collect();
    for p in ["/data", "/scratch", "/proc"] {
        assert!(points.contains(&p), "{p} not in {points:?}");
    }
    assert!(points.contains(&"/v [1]*"), "{points:?}");
    // The README's way to walk the container's own filesystem only, as written there.
    let readme = include_str!("../README.md");
    let start = readme.find("  m=/ctr/web\n").expect("README recipe");
    let end = start + readme[start..].find("  ```").unwrap();
    let recipe: String = readme[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect::<String>()
        .replace("m=/ctr/web", &format!("m={}", v.display()));
    let o = sh(&recipe);
    assert!(o.status.success(), "{o:?}");
    let found = stdout(&o);
    assert!(found.contains("/etc/marker"), "{found}");
    assert!(
        !found.contains("in-volume") && !found.contains("in-tmpfs"),
        "{found}"
    );
}
