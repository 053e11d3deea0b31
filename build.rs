//! Names the commit ctrfsd is built from, for `ctrfsd --version`: sets `CTRFSD_COMMIT` to
//! `git describe --always --dirty --abbrev=12` when built in a git checkout, else to the commit
//! cargo recorded in `.cargo_vcs_info.json` when the source came from a published crate, else
//! to "unknown commit". Generates no code; git missing is not an error.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The `"sha1"` field of the file `cargo package` writes into a published crate.
fn vcs_info() -> Option<String> {
    let text = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].chars().take(12).collect())
}

fn main() {
    for p in ["src", "Cargo.toml", "Cargo.lock", ".cargo_vcs_info.json"] {
        // A path that does not exist would make cargo run this script on every build.
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = if git(&["rev-parse", "--is-inside-work-tree"]).is_some()
        && Path::new(&git(&["rev-parse", "--show-toplevel"]).unwrap_or_default())
            == Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
    {
        // Rebuild when HEAD moves or the index changes (a commit, a checkout, an add).
        for what in ["HEAD", "index", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", what])
                && Path::new(&p).exists()
            {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &r])
            && Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
        git(&[
            "describe",
            "--always",
            "--dirty",
            "--abbrev=12",
            "--exclude",
            "*",
        ])
    } else {
        None
    }
    .or_else(vcs_info)
    .map(|c| format!("commit {c}"))
    .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=CTRFSD_COMMIT={commit}");
}
