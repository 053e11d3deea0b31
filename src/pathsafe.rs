//! Containment rules for symlinks: what `readlink` answers through the mount.
//!
//! The host kernel follows a symlink's text from where the link sits under the mount, and it
//! resolves `..` against its own dentries: at `/ctr/<name>` a `..` climbs to `/ctr` and then to
//! the host. Inside the container, `..` at the root stays at the root. So the text is rewritten:
//!
//! 1. A relative target without `..` (`lib/x`, `./x`) is answered unchanged: it only walks
//!    down from the link's directory, through the mount.
//! 2. An absolute target without `..` (`/usr/share/zoneinfo/UTC`) is answered as
//!    `<mountpoint>/<name>/usr/share/zoneinfo/UTC`.
//! 3. Any target with `..` is resolved here, as the container's kernel would resolve it, up to
//!    its last `..`: `..` at the container root stays there, and symlinks met on the way are
//!    followed inside the container (at most [`MAX_HOPS`] of them, else ELOOP). The answer is
//!    `<mountpoint>/<name>/<resolved>/<rest>`, which holds no `..` at all, so no race and no
//!    stale dentry can make it climb out. Where resolution fails (a component is missing or is
//!    not a directory), the remaining `..` are dropped: the host walk then fails at the same
//!    component as the container's would, and can never climb.
//!
//! Every answer is thus either a downward relative path or an absolute path under
//! `<mountpoint>/<name>/` with no `..` component.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Symlinks followed while resolving one link, as the kernel's MAXSYMLINKS.
pub const MAX_HOPS: usize = 40;
const PATH_MAX: usize = 4096;

/// What a name is, seen from a directory inside the container (never following it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory: resolution goes on inside it.
    Dir,
    /// A symlink, with its target text.
    Symlink(Vec<u8>),
    /// Exists but is not a directory, is missing, or is not served (a pseudo filesystem).
    Stop,
}

/// Rewrites `target`, the text of a link that sits in directory `link_dir` (components from the
/// container root), into what the kernel may follow from under `prefix` (`<mountpoint>/<name>`).
/// `classify(dir, name)` tells what `name` is in directory `dir` (components from the root).
///
/// # Errors
///
/// An errno for the kernel: `ELOOP` after more than `MAX_HOPS` symbolic links inside the
/// container, `ENAMETOOLONG` when the result reaches `PATH_MAX`.
pub fn rewrite(
    target: &[u8],
    link_dir: &[&[u8]],
    prefix: &[u8],
    mut classify: impl FnMut(&[Vec<u8>], &[u8]) -> Kind,
) -> Result<Vec<u8>, i32> {
    let absolute = target.first() == Some(&b'/');
    let has_dotdot = components(target).any(|c| c == b"..");
    if !absolute && !has_dotdot {
        return Ok(target.to_vec());
    }
    let mut stack: Vec<Vec<u8>> = if absolute {
        Vec::new()
    } else {
        link_dir.iter().map(|c| c.to_vec()).collect()
    };
    let mut rest: std::collections::VecDeque<Vec<u8>> =
        components(target).map(<[u8]>::to_vec).collect();
    let mut hops = 0;
    while let Some(c) = rest.pop_front() {
        if c == b".." {
            stack.pop();
            continue;
        }
        if !rest.iter().any(|r| r == b"..") {
            // Nothing after this can climb: the kernel may walk the rest itself.
            stack.push(c);
            stack.extend(rest.drain(..));
            break;
        }
        match classify(&stack, &c) {
            Kind::Dir => stack.push(c),
            Kind::Symlink(t) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(libc::ELOOP);
                }
                if t.first() == Some(&b'/') {
                    stack.clear();
                }
                for comp in components(&t).rev() {
                    rest.push_front(comp.to_vec());
                }
            }
            Kind::Stop => {
                stack.push(c);
                stack.extend(rest.drain(..).filter(|r| r != b".."));
                break;
            }
        }
    }
    let mut out = prefix.to_vec();
    for c in &stack {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if stack.is_empty() || target.ends_with(b"/") {
        out.push(b'/');
    }
    if out.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(out)
}

/// The non-empty, non-`.` components of a path.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// A name the kernel may send us as one component: never `.`, `..`, empty or with `/`.
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A container tree: dirs, and symlinks with their targets.
    fn tree() -> HashMap<&'static str, Kind> {
        let mut t = HashMap::new();
        for d in ["etc", "usr", "usr/share", "var", "a", "a/b", "x", "x/y"] {
            t.insert(d, Kind::Dir);
        }
        t.insert("link2x", Kind::Symlink(b"/x/y".to_vec()));
        t.insert("a/up", Kind::Symlink(b"../..".to_vec()));
        t.insert("loop", Kind::Symlink(b"loop/..".to_vec()));
        t
    }

    fn run(target: &str, dir: &[&str]) -> Result<String, i32> {
        let t = tree();
        let dir: Vec<&[u8]> = dir.iter().map(|s| s.as_bytes()).collect();
        rewrite(target.as_bytes(), &dir, b"/ctr/app", |stack, name| {
            let mut p: Vec<String> = stack
                .iter()
                .map(|c| String::from_utf8(c.clone()).unwrap())
                .collect();
            p.push(String::from_utf8(name.to_vec()).unwrap());
            t.get(p.join("/").as_str()).cloned().unwrap_or(Kind::Stop)
        })
        .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn rewrite_table() {
        let cases: &[(&str, &[&str], Result<&str, i32>)] = &[
            ("lib/x", &["usr"], Ok("lib/x")),
            ("./x", &[], Ok("./x")),
            (
                "/usr/share/zoneinfo/UTC",
                &["etc"],
                Ok("/ctr/app/usr/share/zoneinfo/UTC"),
            ),
            ("/", &["etc"], Ok("/ctr/app/")),
            ("/etc/", &[], Ok("/ctr/app/etc/")),
            (
                "../../../../etc/passwd",
                &["var"],
                Ok("/ctr/app/etc/passwd"),
            ),
            ("a/../../../etc", &[], Ok("/ctr/app/etc")),
            ("..", &["a", "b"], Ok("/ctr/app/a")),
            ("../..", &["a"], Ok("/ctr/app/")),
            // `..` after a symlink goes to the parent of the link's target, as in the container.
            ("/link2x/../z", &[], Ok("/ctr/app/x/z")),
            ("/a/up/../../etc", &[], Ok("/ctr/app/etc")),
            // A missing component stops resolution and drops the `..` that follow.
            ("/nope/../../etc", &[], Ok("/ctr/app/nope/etc")),
            ("/loop/..", &[], Err(libc::ELOOP)),
        ];
        for (target, dir, want) in cases {
            let got = run(target, dir);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                *want,
                "target {target} in {dir:?}"
            );
            if let Ok(s) = &got
                && s.starts_with('/')
            {
                assert!(!s.split('/').any(|c| c == ".."), "{s} climbs");
            }
        }
    }

    #[test]
    fn too_long_is_refused() {
        let long = format!("/{}/..", "d/".repeat(2100));
        assert_eq!(run(&long, &[]), Err(libc::ENAMETOOLONG));
    }

    #[test]
    fn plain_names() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(!is_plain_name(OsStr::new(bad)), "{bad}");
        }
        assert!(is_plain_name(OsStr::new("...")));
    }
}
