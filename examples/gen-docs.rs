//! Writes the man page and the shell completions from the same clap definitions as
//! `ctrfsd --help`, so they cannot disagree with it:
//!
//! ```text
//! cargo run --example gen-docs -- OUTDIR
//! ```
//!
//! OUTDIR gets `ctrfsd.1` (roff, for `man -l`), `ctrfsd.1.gz` (what packages install),
//! `ctrfsd.bash`, `_ctrfsd` (zsh) and `ctrfsd.fish`. An example rather than a build script or a
//! subcommand: `cargo install --path .` neither runs nor installs it, and clap_mangen and
//! clap_complete stay dev-dependencies. scripts/package.sh runs it; tests/docs.rs includes this
//! file to check that every long option of `--help` appears in each output.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// Writes every output into `out` (created if missing). Errors: `out` cannot be created or
/// written, or `gzip` (for the compressed man page) is missing or fails.
pub(crate) fn generate(out: &Path) -> io::Result<()> {
    std::fs::create_dir_all(out)?;
    let cmd = ctrfsd::cli::Args::command();
    let mut roff = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).date(build_date());
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    man.render_extra_section(&mut roff)?;
    roff.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut roff)?;
    std::fs::write(out.join("ctrfsd.1"), &roff)?;
    // gzip -n: no name or time stamp inside, so the same page always gives the same bytes.
    let mut gz = std::process::Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(out.join("ctrfsd.1.gz"))?)
        .spawn()?;
    gz.stdin.take().expect("piped stdin").write_all(&roff)?;
    let status = gz.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!("gzip: {status}")));
    }
    for (shell, name) in [
        (Shell::Bash, "ctrfsd.bash"),
        (Shell::Zsh, "_ctrfsd"),
        (Shell::Fish, "ctrfsd.fish"),
    ] {
        let mut file = std::fs::File::create(out.join(name))?;
        clap_complete::generate(shell, &mut cmd.clone(), "ctrfsd", &mut file);
    }
    Ok(())
}

/// Sections clap has no place for, in roff. The exit codes are `ctrfsd::error::exit`'s
/// (tests/docs.rs checks that each is listed).
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
stopped cleanly (SIGTERM, SIGINT, SIGHUP, or the mount was unmounted)
.TP
\fB1\fR
runtime failure
.TP
\fB2\fR
bad arguments: an unknown option, an out\-of\-range value, \fB\-\-runtime none\fR with
another runtime, a \fB\-\-container\fR whose process does not exist
.TP
\fB3\fR
unusable mountpoint: missing, not a directory, or a dead mount that is not ctrfsd's
.TP
\fB4\fR
not root, or no /dev/fuse
.TP
\fB5\fR
a live ctrfsd mount is already there
.TP
\fB6\fR
the mount itself failed
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
log filter; wins over \fB\-\-log\-level\fR
.TP
\fBNOTIFY_SOCKET\fR
set by systemd for \fBType=notify\fR: ctrfsd sends READY=1 once the mount answers, STOPPING=1
when it stops
.TP
\fBDOCKER_HOST\fR, \fBCONTAINERD_ADDRESS\fR
where Docker (unix:// only) and containerd listen, if not at their default sockets
.SH FILES
.TP
\fI/etc/default/ctrfsd\fR
CTRFSD_MOUNTPOINT and CTRFSD_OPTS for the systemd service
.TP
\fI/usr/lib/systemd/system/ctrfsd.service\fR
the service: \fBsystemctl enable \-\-now ctrfsd\fR
.SH "SEE ALSO"
\fBfusermount3\fR(1), \fBsystemd.service\fR(5), \fBdocker\fR(1), \fBpodman\fR(1)
"#;

/// The man page's date: `SOURCE_DATE_EPOCH` (reproducible builds) as YYYY-MM-DD, else empty.
fn build_date() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[allow(dead_code)]
fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen-docs OUTDIR");
        std::process::exit(2);
    };
    if let Err(e) = generate(Path::new(&out)) {
        eprintln!("gen-docs: {}: {e}", Path::new(&out).display());
        std::process::exit(1);
    }
}
