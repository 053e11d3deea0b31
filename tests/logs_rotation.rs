//! Following a log view while the runtime rotates faster than the reader polls: Docker
//! `json-file` with a small `max-size` and `max-file=2` deletes each rotated file well before a
//! reader's next look (`tail -F` through FUSE polls once a second), and every line must still
//! reach the reader exactly once, in order (issue #14: "a rotation by the runtime neither
//! repeats nor loses lines for a reader that follows"); and a view held past its container's
//! removal.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_image_once(&BUILT, "ctrfsd-logs-rotation:2", |r| {
        busybox_rootfs(r, &["tmp"], &["sh", "echo", "sleep", "head", "tr", "seq"]);
    })
}

/// Collects what a reader process prints, on a thread (its pipe must not fill).
fn collect(child: &mut Child) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let mut out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// A line of the view: a number the container wrote (`N` or `line N pad`), or ctrfsd's own
/// note (README, "Logs", "Limits of following").
#[derive(Debug, PartialEq)]
enum Line {
    Num(u32),
    Note,
}

/// The lines of `text` after its first line (`start`), failing on any other line.
fn lines(text: &str) -> Vec<Line> {
    text.lines()
        .skip(1)
        .map(|l| {
            // A reader behind the furthest one may start in the middle of a let-go line.
            let end = "let go here (the runtime deleted their file; ctrfsd keeps a bounded \
                       number open: README, \"Logs\")";
            if l.starts_with("ctrfsd: ")
                || l.contains("of log let go here")
                || end.ends_with(l.trim_end())
            {
                return Line::Note;
            }
            l.strip_prefix("line ")
                .unwrap_or(l)
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .map(Line::Num)
                .unwrap_or_else(|| panic!("not a line the container wrote: {l:?}"))
        })
        .collect()
}

/// A reader of the view.
#[derive(Clone, Copy)]
enum Reader {
    /// `tail` with this follow option (`-F` or `-f`), from the first line.
    Tail(&'static str),
    /// Reads to the end, sleeps this many seconds, reads on from where it stopped (as `tail
    /// -f` on a filesystem without inotify, at another pace).
    Poller(u32),
}

impl Reader {
    fn name(self) -> String {
        match self {
            Reader::Tail(opt) => format!("tail {opt}"),
            Reader::Poller(s) => format!("a reader polling every {s} s"),
        }
    }

    fn spawn(self, path: &Path) -> Child {
        let script = r#"
import sys, time
f = open(sys.argv[1], "rb", buffering=0)
while True:
    b = f.read(1 << 20)
    if b:
        sys.stdout.buffer.write(b)
        sys.stdout.buffer.flush()
        continue
    time.sleep(float(sys.argv[2]))
"#;
        let mut cmd = match self {
            Reader::Tail(opt) => {
                let mut c = Command::new("tail");
                c.args([opt, "-n", "+1"]).arg(path);
                c
            }
            Reader::Poller(secs) => {
                let mut c = Command::new("python3");
                c.args(["-c", script]).arg(path).arg(secs.to_string());
                c
            }
        };
        cmd.stdout(Stdio::piped()).spawn().expect("run a reader")
    }
}

/// A container that prints `start`, waits for `/tmp/go`, runs `body` (which prints the numbers
/// `want`, one a line, possibly as `line N pad`) and stays up; `readers` follow its stdout
/// view from the first line while it does, under Docker's `log_opts`. Returns what each read
/// (waiting until each has the last number, two minutes at most), and the view's size then.
fn follow_docker(
    log_opts: &[&str],
    body: &str,
    want: std::ops::RangeInclusive<u32>,
    readers: &[Reader],
) -> (Daemon, Vec<Vec<Line>>, Vec<u64>, u64) {
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-logrot-{}", token());
    let script =
        format!("echo start; while [ ! -e /tmp/go ]; do sleep 0.05; done; {body}; sleep 600");
    let c = docker_run_with(&name, log_opts, image(), &["sh", "-c", &script]);
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let path = d.path().join(".logs").join(&c.0).join("stdout");
    let shown = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s == "start\n")
    });
    assert!(shown.is_some(), "the first line is served");
    let mut procs: Vec<Child> = readers.iter().map(|r| r.spawn(&path)).collect();
    let rx: Vec<_> = procs.iter_mut().map(collect).collect();
    let mut got = vec![Vec::new(); readers.len()];
    let drain = |got: &mut Vec<Vec<u8>>| {
        for (g, rx) in got.iter_mut().zip(&rx) {
            while let Ok(b) = rx.try_recv() {
                g.extend(b);
            }
        }
    };
    // All have read the first line: they follow from here.
    let started = wait_until(Duration::from_secs(20), || {
        drain(&mut got);
        got.iter().all(|g| g.starts_with(b"start\n"))
    });
    assert!(started.is_some(), "the readers printed the first line");
    c.exec(": > /tmp/go");
    let last = *want.end();
    let has_last = |g: &[u8]| {
        let text = String::from_utf8_lossy(g);
        text.lines().last().is_some_and(|l| {
            l.strip_prefix("line ").unwrap_or(l).split(' ').next() == Some(&last.to_string())
        })
    };
    // The container stays up once it has written: its exit makes a new view (README, "Logs").
    let done = wait_until(Duration::from_secs(120), || {
        drain(&mut got);
        got.iter().all(|g| has_last(g))
    });
    // What `stat` says is what the readers read from the start, rotated-away files included.
    let size = std::fs::metadata(&path).unwrap().len();
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    drain(&mut got);
    if done.is_none() {
        eprintln!("not every reader got the last line; log:\n{}", d.log_text());
    }
    let sizes = got.iter().map(|g| g.len() as u64).collect();
    let parsed = got
        .iter()
        .map(|g| lines(&String::from_utf8_lossy(g)))
        .collect();
    drop(c);
    (d, parsed, sizes, size)
}

/// Asserts that each reader read exactly `want`, once each, in order, and what `stat` said.
fn assert_every_line_once(
    readers: &[Reader],
    want: std::ops::RangeInclusive<u32>,
    run: &(Daemon, Vec<Vec<Line>>, Vec<u64>, u64),
) {
    let (d, got, sizes, size) = run;
    let want: Vec<Line> = want.map(Line::Num).collect();
    for ((r, g), n) in readers.iter().zip(got).zip(sizes) {
        if *g != want {
            let first = g.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{} read {} of {} lines, first difference at {first:?} ({:?}); log:\n{}",
                r.name(),
                g.len(),
                want.len(),
                first.map(|i| &g[i]),
                d.log_text()
            );
        }
        assert_eq!(n, size, "{} read what stat says", r.name());
    }
}

const LINES: u32 = 10_000;

/// The container's body for [`LINES`] lines of about 90 bytes (`line N ppp...`), 100 every
/// 0.2 s: with `max-size=20k` Docker rotates about four times a second.
fn padded_lines() -> String {
    format!(
        "pad=$(head -c 80 /dev/zero | tr '\\0' p); i=0; \
         while [ $i -lt {LINES} ]; do j=0; \
           while [ $j -lt 100 ]; do echo \"line $i $pad\"; i=$((i+1)); j=$((j+1)); done; \
           sleep 0.2; done"
    )
}

/// `tail -F` and a once-a-second poller through the view see each of 10,000 lines once, in
/// order, while Docker rotates (`max-size=20k`, `max-file=2`) about four times a second. Each
/// rotated file lives about a quarter of a second before Docker deletes it.
#[test]
fn followers_see_every_line_once_while_docker_rotates_fast() {
    let readers = [Reader::Tail("-F"), Reader::Poller(1)];
    let opts = ["--log-opt", "max-size=20k", "--log-opt", "max-file=2"];
    let run = follow_docker(&opts, &padded_lines(), 0..=LINES - 1, &readers);
    assert_every_line_once(&readers, 0..=LINES - 1, &run);
}

/// The same with compressed rotations, ten a second (`compress=true`, `max-file=3`, the
/// numbers 1 to 10,000 written 100 every 0.1 s): Docker renames each rotated file to
/// `x.log.1`, writes it again as `x.log.1.gz`, deletes `x.log.1`, and shifts `x.log.1.gz` to
/// `x.log.2.gz`. The same bytes under two names and inodes, and the inode numbers of deleted
/// files come back for new ones: `tail -F` read stretches of 268 lines (one file) late and
/// twice (13,125 lines), and a view read at the end held one rotated file after newer ones.
#[test]
fn followers_see_every_line_once_while_docker_rotates_and_compresses() {
    let readers = [Reader::Tail("-F"), Reader::Tail("-f"), Reader::Poller(1)];
    let opts = [
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
    ];
    let body = "i=0; while [ $i -lt 100 ]; do i=$((i+1)); seq $((i*100-99)) $((i*100)); \
                sleep 0.1; done";
    let run = follow_docker(&opts, body, 1..=10_000, &readers);
    assert_every_line_once(&readers, 1..=10_000, &run);
}

/// A reader that follows but polls only every 12 seconds, while Docker rotates four times a
/// second with `max-file=2`: some 50 files are rotated away and deleted between two of its
/// reads, more than the 32 kept per container for readers that have read past them; those it
/// has not read yet must stay (it read `EIO`, then nothing more, when the oldest were let go).
#[test]
fn a_slow_follower_loses_no_line_to_the_bound_on_held_files() {
    let readers = [Reader::Poller(12)];
    let opts = ["--log-opt", "max-size=20k", "--log-opt", "max-file=2"];
    let run = follow_docker(&opts, &padded_lines(), 0..=LINES - 1, &readers);
    assert_every_line_once(&readers, 0..=LINES - 1, &run);
}

/// A writer with no pause (`seq 1 200000`, `max-size=20k`, `max-file=2`: hundreds of
/// rotations a second) outruns the follower: files the runtime deletes before ctrfsd opens
/// them are lost, but not silently (they were skipped without a word): `tail -f` and `tail -F`
/// read to the last line, what is missing is said in the view by ctrfsd's own lines and in
/// its log. Where the note stands under such a flood is approximate (README).
#[test]
fn lines_rotated_away_unread_are_said_not_skipped() {
    let readers = [Reader::Tail("-f"), Reader::Tail("-F")];
    let opts = ["--log-opt", "max-size=20k", "--log-opt", "max-file=2"];
    let run = follow_docker(&opts, "seq 1 200000", 1..=200_000, &readers);
    let (d, got, _, _) = &run;
    let log = d.log_text();
    for (r, g) in readers.iter().zip(got) {
        let nums: std::collections::BTreeSet<u32> = g
            .iter()
            .filter_map(|l| match l {
                Line::Num(n) => Some(*n),
                Line::Note => None,
            })
            .collect();
        let notes = g.iter().filter(|l| **l == Line::Note).count();
        let missing = 200_000 - nums.len();
        eprintln!(
            "{}: {} of 200000 lines read, {missing} missing, {notes} notes",
            r.name(),
            nums.len()
        );
        assert_eq!(nums.last(), Some(&200_000), "{} read to the end", r.name());
        if missing > 0 {
            assert!(
                notes > 0,
                "{}: {missing} lines missing, no note; log:\n{log}",
                r.name()
            );
            assert!(
                log.contains("lost here") || log.contains("let go of"),
                "{}: {missing} lines missing, nothing logged; log:\n{log}",
                r.name()
            );
        }
    }
}

/// A log view held open after `docker rm` reads on and reports no link, as a deleted file
/// does (it reported 1).
#[test]
fn a_view_held_after_docker_rm_is_a_deleted_file() {
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-logrot-{}", token());
    let c = docker_run_with(&name, &[], image(), &["sh", "-c", "echo last words"]);
    let path = d.path().join(".logs").join(&c.0).join("stdout");
    let shown = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s == "last words\n")
    });
    assert!(shown.is_some(), "the view is served");
    let mut f = std::fs::File::open(&path).unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 1);
    drop(c);
    let gone = wait_until(Duration::from_secs(5), || !path.exists());
    assert!(gone.is_some(), "the view is gone with its container");
    assert_eq!(f.metadata().unwrap().nlink(), 0, "held after docker rm");
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(text, "last words\n");
}

/// `tail -F` of a container's stdout view while the container writes and exits: each line
/// once, and the name stays the same file (inode) across the exit, as `tail -F` checks. (The
/// view was keyed by the container's instance: at the exit the name became another file,
/// which `tail -F` may read again from its start.)
#[test]
fn tail_follow_name_reads_each_line_once_across_the_containers_exit() {
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start(&["--runtime", "docker"]);
    let name = format!("ctrfsd-logrot-{}", token());
    let body = "echo start; while [ ! -e /tmp/go ]; do sleep 0.05; done; i=0; \
                while [ $i -lt 30 ]; do i=$((i+1)); seq $((i*100-99)) $((i*100)); sleep 0.1; \
                done";
    let c = docker_run_with(&name, &[], image(), &["sh", "-c", body]);
    assert!(wait_until(Duration::from_secs(5), || d.has(&c.0)).is_some());
    let path = d.path().join(".logs").join(&c.0).join("stdout");
    let shown = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s == "start\n")
    });
    assert!(shown.is_some(), "the first line is served");
    let mut tail = Reader::Tail("-F").spawn(&path);
    let rx = collect(&mut tail);
    let mut got = Vec::new();
    let drain = |got: &mut Vec<u8>| {
        while let Ok(b) = rx.try_recv() {
            got.extend(b);
        }
    };
    let started = wait_until(Duration::from_secs(10), || {
        drain(&mut got);
        got.starts_with(b"start\n")
    });
    assert!(started.is_some(), "tail printed the first line");
    let ino = || std::fs::metadata(&path).map(|m| m.ino()).ok();
    let before = ino();
    c.exec(": > /tmp/go");
    let exited = wait_until(Duration::from_secs(30), || {
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &c.0]).trim() == "false"
    });
    assert!(exited.is_some(), "the container exited");
    let all = wait_until(Duration::from_secs(20), || {
        drain(&mut got);
        String::from_utf8_lossy(&got).lines().any(|l| l == "3000")
    });
    // `tail -F` looks at the name once a second: a few looks after the exit, nothing again.
    let again = wait_until(Duration::from_secs(4), || {
        drain(&mut got);
        String::from_utf8_lossy(&got).matches("start\n").count() > 1
    });
    let after = ino();
    let _ = tail.kill();
    let _ = tail.wait();
    drain(&mut got);
    assert_eq!(before, after, "the name is the same file after the exit");
    let text = String::from_utf8_lossy(&got);
    let want: Vec<Line> = (1..=3000).map(Line::Num).collect();
    assert!(
        all.is_some() && again.is_none() && lines(&text) == want,
        "tail -F read {} lines (all: {:?}, read again: {:?}); log:\n{}",
        text.lines().count(),
        all,
        again,
        d.log_text()
    );
}
