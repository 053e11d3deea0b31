//! The man page and shell completions (examples/gen-docs.rs) come from the same clap
//! definitions as `--help`: each names every long option `ctrfsd --help` shows.

#[allow(dead_code)]
#[path = "../examples/gen-docs.rs"]
mod gen_docs;

use std::process::Command;

/// Every `--long` option in the option lines of `ctrfsd --help`.
fn help_options() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ctrfsd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut opts = Vec::new();
    for line in help.lines().map(str::trim_start) {
        if !line.starts_with('-') {
            continue;
        }
        for word in line.split([' ', ',', '=', '<']) {
            if let Some(name) = word.strip_prefix("--")
                && !name.is_empty()
                && !opts.contains(&name.to_string())
            {
                opts.push(name.to_string());
            }
        }
    }
    opts
}

#[test]
fn man_page_and_completions_name_every_option_of_help() {
    let opts = help_options();
    for must in [
        "runtime",
        "container",
        "cache-ttl",
        "threads",
        "help",
        "version",
    ] {
        assert!(opts.iter().any(|o| o == must), "--{must} not in {opts:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    gen_docs::generate(dir.path()).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    // roff writes a literal hyphen as `\-`.
    let man = read("ctrfsd.1").replace("\\-", "-");
    let (bash, zsh, fish) = (read("ctrfsd.bash"), read("_ctrfsd"), read("ctrfsd.fish"));
    for o in &opts {
        let long = format!("--{o}");
        assert!(man.contains(&long), "man page lacks {long}");
        assert!(bash.contains(&long), "bash completion lacks {long}");
        assert!(zsh.contains(&long), "zsh completion lacks {long}");
        assert!(
            fish.contains(&format!("-l {o} ")) || fish.ends_with(&format!("-l {o}")),
            "fish completion lacks {long}"
        );
    }
    // Every exit code ctrfsd uses is explained.
    use ctrfsd::error::exit;
    for code in [
        exit::OK,
        exit::FAILURE,
        exit::USAGE,
        exit::MOUNTPOINT,
        exit::PRIVILEGE,
        exit::ALREADY_MOUNTED,
        exit::MOUNT_FAILED,
    ] {
        assert!(
            man.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "man page: exit code {code} is not explained"
        );
    }
    // The compressed page is the same page, and `man` can read it.
    let out = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("ctrfsd.1.gz"))
        .env("MANWIDTH", "200")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("--list-runtimes"), "{text}");
    // Each script is valid in its shell where the shell is installed here (bash always is).
    let st = Command::new("bash")
        .arg("-n")
        .arg(dir.path().join("ctrfsd.bash"))
        .status()
        .unwrap();
    assert!(st.success());
}
