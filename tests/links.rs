//! Symbolic links in a container, through a real FUSE mount of a process in its own mount
//! namespace (`--container NAME=PID`): absolute and relative links resolve inside the
//! container and are answered as paths under the mount; links planted to escape never reach a
//! host file, whatever host tool follows them.

mod common;

use std::fs;
use std::path::Path;

use common::*;

#[test]
fn absolute_and_relative_links_resolve_inside_the_container() {
    let c = FakeContainer::start(basic_tree, "");
    let d = serve(&c, "app");
    let view = d.path().join("app");
    assert_eq!(
        fs::read_to_string(view.join("etc/localtime")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    assert_eq!(
        fs::read_to_string(view.join("usr/lib/zone")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    assert_eq!(
        fs::read_to_string(view.join("usr/share/tz")).unwrap(),
        "CONTAINER-ZONE\n"
    );
    // Answers name the container's file under the mount, so `ls -l` tells the truth; a link
    // that only walks down is answered unchanged.
    let zone = view.join("usr/share/zoneinfo/UTC");
    assert_eq!(fs::read_link(view.join("etc/localtime")).unwrap(), zone);
    assert_eq!(fs::read_link(view.join("usr/lib/zone")).unwrap(), zone);
    assert_eq!(
        fs::read_link(view.join("usr/share/tz")).unwrap(),
        Path::new("zoneinfo/UTC")
    );
}

#[test]
fn links_planted_to_escape_never_reach_host_files() {
    let m = HostMarker::plant();
    let n = m.name();
    let c = FakeContainer::start(
        |root| {
            basic_tree(root);
            plant_escape_links(root, &n);
        },
        "mount -t proc proc $R/proc",
    );
    // The kernel's own view follows the absolute link on the host: the problem ctrfsd fixes.
    assert_eq!(
        fs::read_to_string(c.proc_root().join("evil-abs")).unwrap(),
        m.content
    );

    let d = serve(&c, "hostile");
    let view = d.path().join("hostile");
    for link in [
        "evil-abs",
        "a/b/evil-rel",
        "evil-dotdot",
        "evil-magic",
        "evil-pid1",
        "chain2",
        "var/log/etc-dir/".to_string().as_str(),
        "rootlink/etc",
        "a/b/c/up/etc",
    ] {
        let p = view
            .join(link)
            .join(if link.ends_with('/') || link.ends_with("etc") {
                n.as_str()
            } else {
                ""
            });
        let got = fs::read_to_string(&p);
        assert!(
            !got.as_deref().unwrap_or("").contains(&m.content),
            "{} returned the host file",
            p.display()
        );
        assert!(
            got.is_err(),
            "{} should not exist in the container",
            p.display()
        );
    }
    // Every answer stays under /<mount>/hostile.
    for link in [
        "evil-abs",
        "evil-dotdot",
        "rootlink",
        "a/b/c/up",
        "var/log/etc-dir",
    ] {
        let t = fs::read_link(view.join(link)).unwrap();
        assert!(
            t.starts_with(&view),
            "{link} -> {} leaves the container",
            t.display()
        );
        assert!(
            !t.components().any(|c| c == std::path::Component::ParentDir),
            "{}",
            t.display()
        );
    }
    // `rootlink/etc` is the container's /etc.
    assert!(view.join("rootlink/etc/localtime").exists());
    // Host tools that follow links everywhere still see no host byte.
    let v = view.display();
    for cmd in [
        format!("grep -r '{}' {v}", m.content),
        format!("grep -R '{}' {v}", m.content),
        format!("find -L {v} -type f -exec cat {{}} + 2>/dev/null"),
        format!("tar -h -cf - -C {v} . 2>/dev/null"),
        format!(
            // In its own shell, so `timeout` runs all of it and grep searches only the copy.
            "sh -c 'd=$(mktemp -d) && cp -rL {v}/. \"$d\"/ 2>/dev/null; grep -r {} \"$d\"; test -f \"$d\"/etc/app.conf && echo COPIED; rm -rf \"$d\"'",
            m.content
        ),
    ] {
        let out = sh(&format!("timeout 120 {cmd}"));
        assert_ne!(out.status.code(), Some(124), "`{cmd}` did not finish");
        if cmd.contains("cp -rL") {
            assert!(
                stdout(&out).contains("COPIED"),
                "`{cmd}` copied nothing: {out:?}"
            );
        }
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(&m.content),
            "`{cmd}` printed the host marker"
        );
    }
    // A link loop fails like one.
    let err = fs::read(view.join("loop")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
}
