//! Scale and accounting: walking more files than ctrfsd's own `RLIMIT_NOFILE` (and a
//! directory larger than one readdir reply) without losing an entry or holding an fd per file;
//! the request counters ctrfsd reports on its mount root and logs at exit.

mod common;

use std::fs;

use common::*;

#[test]
fn walks_more_files_than_the_fd_limit() {
    const DIRS: usize = 30;
    const PER: usize = 100;
    let c = FakeContainer::start(
        |root| {
            for d in 0..DIRS {
                let dir = root.join(format!("logs/d{d}"));
                fs::create_dir_all(&dir).unwrap();
                for f in 0..PER {
                    fs::write(
                        dir.join(format!("f{f}.log")),
                        format!("line {f}\nERROR {d}/{f}\n"),
                    )
                    .unwrap();
                }
            }
            // One directory with more entries than one readdir reply holds.
            fs::create_dir_all(root.join("big")).unwrap();
            for i in 0..5000 {
                fs::write(root.join(format!("big/entry-with-a-long-name-{i:05}")), "").unwrap();
            }
        },
        "",
    );
    let pid = c.pid();
    let d = Daemon::start_with(
        &["--runtime", "none", "--container", &format!("many={pid}")],
        |cmd| limit_nofile(cmd, 1024),
    );
    let v = d.path().join("many");
    let out = sh(&format!(
        "grep -r -c ERROR {}/logs | grep -c ':1$'",
        v.display()
    ));
    assert_eq!(
        stdout(&out).trim(),
        (DIRS * PER).to_string(),
        "grep -r over {} files",
        DIRS * PER
    );
    let out = sh(&format!(
        "find {0}/logs {0}/big -type f | wc -l",
        v.display()
    ));
    assert_eq!(stdout(&out).trim(), (DIRS * PER + 5000).to_string());
    let mut names: Vec<String> = fs::read_dir(v.join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5000, "readdir paging lost or repeated entries");
    let limit = fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    assert!(
        limit
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limit}"
    );
    let fds = fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    assert!(fds < 1024, "ctrfsd holds {fds} fds");
}

#[test]
fn request_counters_on_the_mount_root() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "web");
    let count = |what: &str| -> u64 {
        let out = sh(&format!(
            "getfattr --only-values -n user.ctrfsd.requests {}",
            d.path().display()
        ));
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix(what)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    let (lookups, enoent) = (count("lookup"), count("error ENOENT"));
    for i in 0..7 {
        assert!(fs::metadata(d.path().join("web").join(format!("no-such-{i}"))).is_err());
    }
    assert!(count("lookup") >= lookups + 7, "{}", count("lookup"));
    assert_eq!(count("error ENOENT"), enoent + 7);
    assert!(count("requests") > count("lookup"));
    // Listed among the root's attributes; logged at exit.
    let out = sh(&format!("getfattr -d {}", d.path().display()));
    assert!(stdout(&out).contains("user.ctrfsd.requests="), "{out:?}");
    let mut d = d;
    assert!(d.stop().success());
    assert!(
        d.log_text().contains("requests answered: requests "),
        "{}",
        d.log_text()
    );
}
