//! Files pushed into the kernel's page cache ahead of a walk (src/fs/prefetch.rs): a walk that
//! reads a directory file by file gets the next files without a read request each, and what
//! it reads is what the container holds; every change still shows within a second; nothing is
//! stored for a walk that reads no file; no fd is kept on a container's mount after the idle
//! sweep. (The fanotify case is in tests/hang.rs.) Real processes in their own mount namespace.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;

const FILES: usize = 40;

fn logs(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..FILES {
        let body: String = (0..(i % 7 + 1))
            .map(|l| format!("2026-11-22 INFO file {i} line {l}\n"))
            .collect();
        fs::write(dir.join(format!("f{i:02}.log")), body).unwrap();
    }
}

/// Waits until no file under `dir` changed in the last 3 s: only such files are stored
/// (`prefetch::SETTLED`, 2 s, counted in whole seconds).
fn settled(dir: &Path) {
    let newest = || {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let m = e.unwrap().metadata().unwrap();
                let c = Duration::from_secs(std::os::unix::fs::MetadataExt::ctime(&m) as u64);
                SystemTime::UNIX_EPOCH + c
            })
            .max()
            .unwrap()
    };
    wait_until(Duration::from_secs(10), || {
        newest()
            .elapsed()
            .is_ok_and(|e| e >= Duration::from_secs(4))
    })
    .expect("files settled");
}

fn counts(d: &Daemon) -> (u64, u64) {
    let c = request_counts(d.path());
    (
        c.get("read").copied().unwrap_or(0),
        c.get("prefetch-files").copied().unwrap_or(0),
    )
}

/// Reads two files of the directory, in listing order, as a walk does: the second starts a job.
fn start_walk(mnt: &Path, d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Listing order is the directory's own (what readdirplus gave the kernel).
    let listed = sh(&format!("ls -f {}", mnt.display()));
    names = stdout(&listed)
        .lines()
        .filter(|n| names.iter().any(|m| m == n))
        .map(str::to_string)
        .collect();
    for n in &names[..2] {
        fs::read(mnt.join(n)).unwrap();
    }
    wait_until(Duration::from_secs(5), || counts(d).1 > 0).expect("nothing was prefetched");
    names
}

#[test]
fn a_walk_reading_file_by_file_is_served_ahead_and_changes_still_show_within_a_second() {
    let c = FakeContainer::start(|r| logs(&r.join("logs")), "");
    let inside = c.root().join("logs");
    settled(&inside);
    let d = serve(&c, "pf");
    let mnt = d.path().join("pf/logs");

    // Listing and stat'ing every file reads none: nothing is stored.
    let out = sh(&format!(
        "ls -lR {0} >/dev/null && find {0} -printf '%s'",
        mnt.display()
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(counts(&d), (0, 0), "a walk that reads nothing stored files");

    let names = start_walk(&mnt, &d);
    let (reads_before, _) = counts(&d);
    // The rest of the walk, in listing order: every file reads as the container holds it.
    for n in &names[2..] {
        assert_eq!(
            fs::read(mnt.join(n)).unwrap(),
            fs::read(inside.join(n)).unwrap(),
            "{n}"
        );
    }
    let (reads_after, stored) = counts(&d);
    assert!(stored >= 10, "stored {stored}");
    assert!(
        reads_after - reads_before < (FILES - 2) as u64,
        "every file was still read through ctrfsd ({reads_before} -> {reads_after})"
    );

    // A stored file appended to inside the container: the new line shows within a second.
    let third = mnt.join(&names[2]);
    fs::OpenOptions::new()
        .append(true)
        .open(inside.join(&names[2]))
        .unwrap()
        .write_all(b"2026-11-22 ERROR appended\n")
        .unwrap();
    within(Duration::from_secs(1), "appended line", || {
        fs::read_to_string(&third)
            .unwrap_or_default()
            .ends_with("ERROR appended\n")
    });
    // A stored file replaced by rename: the new contents within a second.
    let fourth = mnt.join(&names[3]);
    fs::write(inside.join(".new"), "replaced\n").unwrap();
    fs::rename(inside.join(".new"), inside.join(&names[3])).unwrap();
    within(Duration::from_secs(1), "replaced file", || {
        fs::read_to_string(&fourth).unwrap_or_default() == "replaced\n"
    });
    // Rewritten shorter in place.
    let fifth = mnt.join(&names[4]);
    fs::write(inside.join(&names[4]), "short\n").unwrap();
    within(Duration::from_secs(1), "rewritten file", || {
        fs::read_to_string(&fifth).unwrap_or_default() == "short\n"
    });
}

#[test]
fn a_file_written_just_before_the_walk_is_read_through_ctrfsd_not_stored() {
    let c = FakeContainer::start(|r| logs(&r.join("logs")), "");
    let inside = c.root().join("logs");
    settled(&inside);
    let d = serve(&c, "pf");
    let mnt = d.path().join("pf/logs");
    // Every file but the first two is written to now: none of them may be stored.
    let listed = sh(&format!("ls -f {}", inside.display()));
    let names: Vec<String> = stdout(&listed)
        .lines()
        .filter(|n| n.ends_with(".log"))
        .map(str::to_string)
        .collect();
    for n in &names[2..] {
        fs::OpenOptions::new()
            .append(true)
            .open(inside.join(n))
            .unwrap()
            .write_all(b"live\n")
            .unwrap();
    }
    for n in &names[..2] {
        fs::read(mnt.join(n)).unwrap();
    }
    for n in &names[2..] {
        assert_eq!(
            fs::read_to_string(mnt.join(n)).unwrap(),
            fs::read_to_string(inside.join(n)).unwrap()
        );
    }
    assert_eq!(counts(&d).1, 0, "a file written a moment ago was stored");
}

#[test]
fn prefetch_keeps_no_fd_on_a_container_mount_after_the_idle_sweep() {
    let c = FakeContainer::start(
        |r| fs::create_dir_all(r.join("vol")).unwrap(),
        "mount -t tmpfs ctrfsd-pf \"$R/vol\" && mkdir \"$R/vol/d\" && \
         for i in $(seq 10 49); do echo \"line $i\" > \"$R/vol/d/f$i\"; done",
    );
    let vol = c.proc_root().join("vol/d");
    settled(&vol);
    let d = serve(&c, "pf");
    let mnt = d.path().join("pf/vol/d");
    start_walk(&mnt, &d);
    // Within the sweep (1.5 s) and a margin, the tmpfs unmounts inside the container.
    let pid = c.pid().to_string();
    let root = c.root().join("vol");
    let mut last = String::new();
    wait_until(Duration::from_millis(3500), || {
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-m", "umount"])
            .arg(&root)
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        o.status.success()
    })
    .unwrap_or_else(|| panic!("the tmpfs stayed busy: {last}"));
}

/// A directory read again after two of its files were replaced: the two are read through ctrfsd,
/// and the unchanged rest, stored before, is not stored again.
#[test]
fn files_stored_before_and_unchanged_are_not_stored_again() {
    let c = FakeContainer::start(|r| logs(&r.join("logs")), "");
    let inside = c.root().join("logs");
    settled(&inside);
    let d = serve(&c, "pf2");
    let mnt = d.path().join("pf2/logs");
    let names = start_walk(&mnt, &d);
    for n in &names[2..] {
        fs::read(mnt.join(n)).unwrap();
    }
    let (_, stored) = counts(&d);
    assert!(stored >= 10, "stored {stored}");
    // Two files replaced by rename (new inodes: the kernel has no page of them, ctrfsd no fd),
    // as a log writer or a config reload does; their new contents show within a second.
    for n in &names[..2] {
        fs::write(inside.join(".new"), format!("rewritten {n}\n")).unwrap();
        fs::rename(inside.join(".new"), inside.join(n)).unwrap();
    }
    for n in &names[..2] {
        within(Duration::from_secs(1), "rewritten file", || {
            fs::read_to_string(mnt.join(n)).unwrap_or_default() == format!("rewritten {n}\n")
        });
    }
    // The two misses start a job as before; it finds nothing new to store. (A store, when
    // there is one, lands within milliseconds of the second miss: a second is ample.)
    let more = wait_until(Duration::from_secs(1), || counts(&d).1 > stored);
    assert!(
        more.is_none(),
        "unchanged files stored again: {stored} -> {}",
        counts(&d).1
    );
}
