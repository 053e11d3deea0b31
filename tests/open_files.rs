//! An open file is the file, not its name: a host tool holding a file of a real Docker
//! container open keeps reading that file when the container renames it (within and across
//! directories), replaces it by rename, or deletes it; `fstat` describes it; `tail -f` and
//! `tail -F` follow a logrotate-style rotation as on a local filesystem.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;

const IMAGE: &str = "ctrfsd-open-files:1";

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, IMAGE, |r| {
        busybox_rootfs(
            r,
            &["etc", "tmp", "proc", "sys", "dev"],
            &["sh", "sleep", "echo", "cat", "mv", "rm", "mkdir"],
        );
    })
}

/// A running container and ctrfsd serving it.
fn setup(what: &str) -> (DockerCtr, Daemon) {
    setup_with(what, &[])
}

/// [`setup`] with ctrfsd options.
fn setup_with(what: &str, args: &[&str]) -> (DockerCtr, Daemon) {
    image();
    let name = format!("ctrfsd-of-{what}-{}", token());
    let c = docker_run(&name, IMAGE, &["/bin/sh", "-c", "exec sleep 100000"]);
    let d = Daemon::start(args);
    within(Duration::from_secs(10), "container listed", || d.has(&name));
    (c, d)
}

/// Everything left to read from `f`.
fn rest(f: &mut fs::File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

/// Everything in `f` from its start (`pread`-like: the file, whatever its name now).
fn all(f: &mut fs::File) -> String {
    f.seek(SeekFrom::Start(0)).unwrap();
    rest(f)
}

#[test]
fn an_open_file_keeps_reading_after_a_rename() {
    let (c, d) = setup("rename");
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /t /u /w; echo one > /t/a; echo x > /t/c; echo e1 > /t/e");
    // The issue's input: opened (never read) under one name, renamed in its directory.
    let mut a = fs::File::open(v.join("t/a")).unwrap();
    // Across directories, into one the host has looked into.
    let mut cc = fs::File::open(v.join("t/c")).unwrap();
    assert!(listing(&v.join("u")).is_empty());
    // Across directories, into one the host never looked into: read before, so held.
    let mut e = fs::File::open(v.join("t/e")).unwrap();
    assert_eq!(rest(&mut e), "e1\n");
    c.exec("mv /t/a /t/b; echo two >> /t/b; mv /t/c /u/c; echo y >> /u/c; mv /t/e /w/e; echo e2 >> /w/e");
    // Appends are seen within the attribute TTL (1 s), as everywhere else.
    within(Duration::from_secs(3), "renamed file read whole", || {
        all(&mut a) == "one\ntwo\n"
    });
    assert_eq!(a.metadata().unwrap().len(), 8, "fstat of the renamed file");
    within(Duration::from_secs(3), "moved file read whole", || {
        all(&mut cc) == "x\ny\n"
    });
    within(Duration::from_secs(3), "moved, read-before file", || {
        all(&mut e) == "e1\ne2\n"
    });
    assert_eq!(e.metadata().unwrap().len(), 6);
}

#[test]
fn an_open_file_read_before_survives_delete_and_replace() {
    let (c, d) = setup("delete");
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /t; echo first > /t/d; echo old > /t/r");
    let mut del = fs::File::open(v.join("t/d")).unwrap();
    assert_eq!(rest(&mut del), "first\n");
    let mut rep = fs::File::open(v.join("t/r")).unwrap();
    assert_eq!(rest(&mut rep), "old\n");
    c.exec("echo second >> /t/d; rm /t/d; echo new > /t/r.new; mv /t/r.new /t/r");
    within(Duration::from_secs(3), "gone file still read", || {
        all(&mut del) == "first\nsecond\n"
    });
    let m = del.metadata().unwrap();
    assert_eq!((m.len(), m.nlink()), (13, 0), "fstat of the deleted file");
    // Replaced by rename: the descriptor keeps the old file, the name gives the new one.
    assert_eq!(all(&mut rep), "old\n");
    assert_eq!(rep.metadata().unwrap().len(), 4);
    within(Duration::from_secs(3), "new file at the name", || {
        fs::read_to_string(v.join("t/r")).ok().as_deref() == Some("new\n")
    });
}

#[test]
fn with_passthrough_a_file_never_read_survives_delete_and_a_move_out_of_sight() {
    // The default mode never hears of an open (that is its speed), so a file neither read nor
    // renamed where a watch sees it cannot be found again; `--passthrough` opens every file
    // and holds it while the host does (README, "Open files").
    let (c, d) = setup_with("pt", &["--passthrough"]);
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /t /w; echo gone > /t/a; echo moved > /t/b");
    let mut a = fs::File::open(v.join("t/a")).unwrap();
    let mut b = fs::File::open(v.join("t/b")).unwrap();
    c.exec("rm /t/a; mv /t/b /w/b; echo more >> /w/b");
    assert_eq!(all(&mut a), "gone\n");
    assert_eq!(
        a.metadata().unwrap().nlink(),
        0,
        "fstat of the deleted file"
    );
    within(Duration::from_secs(3), "moved file read whole", || {
        all(&mut b) == "moved\nmore\n"
    });
}

/// A running `tail ARGS path` whose stdout and stderr are gathered as it prints.
struct Tail {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Tail {
    fn start(args: &[&str], path: &std::path::Path) -> Tail {
        let mut child = Command::new("tail")
            .args(args)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tail");
        let gather = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            buf
        };
        let out = gather(Box::new(child.stdout.take().unwrap()));
        let err = gather(Box::new(child.stderr.take().unwrap()));
        Tail { child, out, err }
    }

    fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// logrotate's default: the log is renamed, the writer keeps writing to it for a moment, then a
/// new log is created at the name.
const ROTATE: &str = "mv /log/app.log /log/app.log.1; echo late-line >> /log/app.log.1; \
                      echo new-line > /log/app.log";

#[test]
fn tail_f_follows_the_descriptor_through_rotation() {
    let (c, d) = setup("tailf");
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /log; echo first-line > /log/app.log");
    let t = Tail::start(&["-s", "0.2", "-f"], &v.join("log/app.log"));
    within(Duration::from_secs(5), "tail printed the log", || {
        t.out().contains("first-line")
    });
    c.exec(ROTATE);
    within(
        Duration::from_secs(5),
        "tail -f printed the renamed file's line",
        || t.out().contains("late-line"),
    );
    assert!(
        !t.out().contains("new-line"),
        "tail -f follows the descriptor, not the name: {:?}",
        t.out()
    );
    assert_eq!(t.err(), "", "tail -f complained");
}

#[test]
fn tail_capital_f_reopens_the_new_log_without_a_stale_handle() {
    let (c, d) = setup("tailF");
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /log; echo first-line > /log/app.log");
    let t = Tail::start(&["-s", "0.2", "-F"], &v.join("log/app.log"));
    within(Duration::from_secs(5), "tail printed the log", || {
        t.out().contains("first-line")
    });
    c.exec(ROTATE);
    within(
        Duration::from_secs(5),
        "tail -F printed the new log",
        || t.out().contains("new-line"),
    );
    let err = t.err();
    assert!(!err.contains("Stale file handle"), "tail -F said: {err}");
    assert!(
        err.is_empty() || err.contains("has been replaced"),
        "tail -F said: {err}"
    );
}

#[test]
fn a_file_replaced_by_rename_is_described_as_the_old_file_with_its_later_writes() {
    // `mv new name` replaces the file at `name` without a DELETE or MOVED_FROM event for it:
    // the descriptor must describe the old file (nlink 0, as through /proc/<pid>/root) and
    // read what a container process still writes to it after the replacement.
    let (c, d) = setup("replaced");
    let v = d.path().join(&c.0);
    c.exec("mkdir -p /t; echo old > /t/r");
    let mut rep = fs::File::open(v.join("t/r")).unwrap();
    assert_eq!(rest(&mut rep), "old\n");
    // A writer that holds the old file and writes once told to (after the replacement).
    c.exec(
        "exec 4>>/t/r; (while [ ! -e /t/go ]; do sleep 0.1; done; echo later >&4; : > /t/done) \
         >/dev/null 2>&1 & echo new > /t/n; mv /t/n /t/r",
    );
    within(Duration::from_secs(3), "new file at the name", || {
        fs::read_to_string(v.join("t/r")).ok().as_deref() == Some("new\n")
    });
    within(Duration::from_secs(3), "fstat of the replaced file", || {
        let m = rep.metadata().unwrap();
        (m.len(), m.nlink()) == (4, 0)
    });
    c.exec("echo > /t/go");
    within(Duration::from_secs(5), "writer done", || {
        v.join("t/done").exists()
    });
    within(
        Duration::from_secs(3),
        "the replaced file read whole",
        || all(&mut rep) == "old\nlater\n",
    );
    assert_eq!(rep.metadata().unwrap().len(), 10);
}
