//! The first look at directories: a listing nobody stats costs no per-entry work, a walk that
//! stats everything needs no lookup per file, and the inode numbers a plain listing gives
//! (`d_ino`, what `ls -i` and `os.scandir` read) are the ones `stat` gives.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::Path;

use common::*;

/// Entries in the big directory: more than the first (readdirplus) reply of a listing holds,
/// so that the rest comes in plain replies.
const BIG: usize = 20_000;

fn big_tree(root: &Path) {
    let big = root.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..BIG {
        let p = big.join(format!("entry-{i:06}"));
        match i % 1000 {
            // A few of each kind, spread over the whole listing.
            1 => fs::create_dir(&p).unwrap(),
            2 => std::os::unix::fs::symlink("entry-000000", &p).unwrap(),
            3 => fs::hard_link(big.join("entry-000000"), &p).unwrap(),
            _ => fs::write(&p, "").unwrap(),
        }
    }
    for d in 0..20 {
        let dir = root.join(format!("small/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..300 {
            fs::write(dir.join(format!("app-{f:03}.log")), "INFO\n").unwrap();
        }
    }
}

/// `d_ino` of every entry of `dir`, read without a stat (`getdents`).
fn listed(dir: &Path) -> HashMap<String, u64> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.ino())
        })
        .collect()
}

#[test]
fn a_plain_listing_gives_the_numbers_stat_gives() {
    let c = FakeContainer::start(big_tree, "");
    let d = serve(&c, "web");
    let big = d.path().join("web/big");
    let before = request_counts(d.path());
    let first = listed(&big);
    let after = request_counts(d.path());
    assert_eq!(first.len(), BIG, "every entry listed once");
    let plain = after.get("readdir").copied().unwrap_or(0) - before.get("readdir").unwrap_or(&0);
    assert!(
        plain > 0,
        "the listing's later replies are plain: {after:?}"
    );
    // Every entry, and the hard links' shared number, against stat (a lookup each).
    for (name, ino) in &first {
        let st = fs::symlink_metadata(big.join(name)).unwrap();
        assert_eq!(st.ino(), *ino, "{name}: d_ino {ino}, stat {}", st.ino());
    }
    assert_eq!(first["entry-000003"], first["entry-000000"], "hard links");
    // Listed again, now that the kernel holds every entry: the same numbers.
    assert_eq!(listed(&big), first);
    // What a user runs: `ls -i` against `stat -c %i`.
    for name in [
        "entry-000000",
        "entry-012001",
        "entry-019002",
        "entry-019999",
    ] {
        let p = big.join(name);
        let ls = stdout(&sh(&format!("ls -id {}", p.display())));
        let st = stdout(&sh(&format!("stat -c %i {}", p.display())));
        assert_eq!(ls.split_whitespace().next(), Some(st.trim()), "{name}");
    }
}

#[test]
fn a_listing_nobody_stats_costs_no_lookup_per_entry() {
    let c = FakeContainer::start(big_tree, "");
    let d = serve(&c, "web");
    let big = d.path().join("web/big");
    let before = request_counts(d.path());
    let out = sh(&format!("ls -f {} | wc -l", big.display()));
    assert_eq!(stdout(&out).trim(), (BIG + 2).to_string());
    let after = request_counts(d.path());
    let grew = |k: &str| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
    // One readdirplus reply (the first), the rest plain, in replies of thousands of names.
    assert!(grew("readdirplus") <= 2, "{after:?}");
    assert!(grew("readdir") + grew("readdirplus") < 20, "{after:?}");
    assert!(grew("lookup") < 5, "{after:?}");
}

#[test]
fn a_first_walk_of_small_directories_needs_no_lookups() {
    let c = FakeContainer::start(big_tree, "");
    let d = serve(&c, "web");
    let small = d.path().join("web/small");
    let before = request_counts(d.path());
    // find reads each directory whole before it stats the entries (fts): every entry must
    // come with its attributes in that first reply, or each one costs a lookup.
    let out = sh(&format!(
        "find {} -printf '%s %m %u\\n' | wc -l",
        small.display()
    ));
    assert_eq!(stdout(&out).trim(), (20 * 300 + 21).to_string());
    let after = request_counts(d.path());
    let grew = |k: &str| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
    assert!(grew("lookup") < 10, "a lookup per file: {after:?}");
    assert_eq!(
        grew("readdirplus"),
        21,
        "one readdirplus reply per directory: {after:?}"
    );
}
