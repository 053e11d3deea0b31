//! Reading a walk's next directory ahead (`src/fs/nextdir.rs`): when a walk reads one
//! subdirectory's listing, the next one in its parent's listing is read ahead; that listing
//! answers the walk only while nothing changed, a change made after it was read shows at once,
//! and a repeated walk (answered from the kernel's cache) reads nothing ahead.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn tree(root: &Path) {
    for d in ["a", "b", "c"] {
        let dir = root.join("w").join(d);
        fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            fs::write(dir.join(format!("f{f:02}")), "x\n").unwrap();
        }
    }
}

fn count(mnt: &Path, key: &str) -> u64 {
    request_counts(mnt).get(key).copied().unwrap_or(0)
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_directory_read_ahead_answers_only_while_nothing_changed() {
    let c = FakeContainer::start(tree, "");
    let d = serve(&c, "app");
    let w = d.path().join("app/w");
    // As `find` does: list the parent, then open its subdirectories in listing order.
    let order: Vec<String> = fs::read_dir(&w)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(order.len(), 3, "{order:?}");
    let fifty: BTreeSet<String> = (0..50).map(|f| format!("f{f:02}")).collect();
    assert_eq!(names(&w.join(&order[0])), fifty);
    wait_until(Duration::from_secs(10), || {
        count(d.path(), "nextdir-read") >= 1
    })
    .expect("listing the first subdirectory reads the second ahead");

    // Unchanged since: the second listing is answered from what was read, and is whole.
    assert_eq!(names(&w.join(&order[1])), fifty);
    assert_eq!(count(d.path(), "nextdir-used"), 1);
    wait_until(Duration::from_secs(10), || {
        count(d.path(), "nextdir-read") >= 2
    })
    .expect("listing the second reads the third ahead");

    // Changed inside the container after the third was read ahead: a new file, an append.
    let inside = c.root().join("w").join(&order[2]);
    fs::write(inside.join("new"), "fresh\n").unwrap();
    fs::write(inside.join("f00"), "x\nmore\n").unwrap();
    let third = w.join(&order[2]);
    let mut want = fifty.clone();
    want.insert("new".into());
    assert_eq!(names(&third), want, "the new file is listed");
    assert_eq!(fs::metadata(third.join("f00")).unwrap().len(), 7);
    assert_eq!(fs::read_to_string(third.join("new")).unwrap(), "fresh\n");
    assert_eq!(
        count(d.path(), "nextdir-used"),
        1,
        "a listing read before a change is not given"
    );

    // A repeated walk is answered from the kernel's cache: it reads nothing ahead.
    let read = count(d.path(), "nextdir-read");
    assert_eq!(names(&w.join(&order[0])), fifty);
    assert_eq!(names(&w.join(&order[1])), fifty);
    assert_eq!(count(d.path(), "nextdir-read"), read);
}
