//! `ctrfsd [OPTIONS] MOUNTPOINT`: parse, set up logging, run, map errors to exit codes.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ctrfsd::cli::Args;
use ctrfsd::error::exit;

fn main() -> ExitCode {
    let args = match Args::try_parse().and_then(|a| a.check().map(|()| a)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if log::LevelFilter::iter().all(|l| !l.as_str().eq_ignore_ascii_case(&args.log_level)) {
        eprintln!(
            "ctrfsd: --log-level {}: expected one of off, error, warn, info, debug, trace",
            args.log_level
        );
        return ExitCode::from(exit::USAGE);
    }
    // RUST_LOG, when set, wins over --log-level.
    env_logger::Builder::new()
        .parse_filters(&args.log_level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
    if args.check {
        // clap requires MOUNTPOINT unless --list-runtimes, which --check excludes.
        let path = args.mountpoint.clone().unwrap_or_default();
        std::process::exit(match ctrfsd::check::check(&path) {
            Ok(a) => {
                println!(
                    "{}: ctrfsd answers ({} us)",
                    a.path.display(),
                    a.took.as_micros()
                );
                i32::from(exit::OK)
            }
            Err(e) => {
                eprintln!("ctrfsd: --check {e}");
                i32::from(exit::FAILURE)
            }
        });
    }
    let result = if args.list_runtimes {
        ctrfsd::daemon::list_runtimes(&args.runtimes)
    } else {
        args.into_config().and_then(ctrfsd::daemon::run)
    };
    // Exit now: watcher threads and a lazily detached session are not waited for.
    std::process::exit(match result {
        Ok(()) => i32::from(exit::OK),
        Err(e) => {
            eprintln!("ctrfsd: {e}");
            i32::from(e.exit_code())
        }
    })
}
