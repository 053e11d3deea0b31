//! A cold walk's next files read ahead from disk (src/fs/coldahead.rs): a walk reading a
//! directory whose files are not in the page cache gets them read ahead, and reads what the
//! container holds; a walk that reads no file reads nothing ahead. The files are made cold
//! one by one (`POSIX_FADV_DONTNEED` after `fsync`), not with `drop_caches`, so nothing else
//! on the machine loses its cache. Real processes in their own mount namespace.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use rustix::fs::{Advice, fadvise};

const FILES: usize = 40;

/// Drops the page cache of every file in `dir` (written back first: only clean pages go).
fn make_cold(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let f = fs::File::open(e.unwrap().path()).unwrap();
        f.sync_all().unwrap();
        fadvise(&f, 0, None, Advice::DontNeed).unwrap();
    }
}

fn count(d: &Daemon, name: &str) -> u64 {
    request_counts(d.path()).get(name).copied().unwrap_or(0)
}

#[test]
fn a_cold_walk_is_read_ahead_and_reads_what_the_container_holds() {
    let c = FakeContainer::start(
        |r| {
            let dir = r.join("logs");
            fs::create_dir_all(&dir).unwrap();
            for i in 0..FILES {
                fs::write(dir.join(format!("f{i:02}.log")), format!("cold file {i}\n")).unwrap();
            }
        },
        "",
    );
    let inside = c.root().join("logs");
    // Only files unchanged for 2 s start a store job (prefetch::SETTLED, whole seconds).
    let written = SystemTime::now();
    wait_until(Duration::from_secs(10), || {
        written.elapsed().is_ok_and(|e| e >= Duration::from_secs(4))
    })
    .expect("time passes");
    let d = serve(&c, "ca");
    let mnt = d.path().join("ca/logs");

    // Listing and stat'ing every cold file reads none: nothing is read ahead.
    make_cold(&inside);
    let out = sh(&format!(
        "ls -lR {0} >/dev/null && find {0} -printf '%s'",
        mnt.display()
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        count(&d, "prefetch-readahead"),
        0,
        "a walk reading nothing read ahead"
    );

    // A walk reading the cold files in listing order: the second read starts a job, which
    // finds its files cold and reads them ahead.
    make_cold(&inside);
    let listed = sh(&format!("ls -f {}", mnt.display()));
    let names: Vec<String> = stdout(&listed)
        .lines()
        .filter(|n| n.ends_with(".log"))
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), FILES);
    for n in &names[..2] {
        fs::read(mnt.join(n)).unwrap();
    }
    wait_until(Duration::from_secs(5), || {
        count(&d, "prefetch-readahead") > 0
    })
    .expect("nothing was read ahead for a cold walk");
    for n in &names {
        assert_eq!(
            fs::read(mnt.join(n)).unwrap(),
            fs::read(inside.join(n)).unwrap(),
            "{n}"
        );
    }
}
