//! Command line: `ctrfsd [OPTIONS] MOUNTPOINT`, parsed by clap into a [`Config`].
//!
//! This contract is stable: scripts start ctrfsd exactly this way and stop it with SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::error::StartError;
use crate::runtime::detect::Kind;
pub use crate::runtime::static_pids::{StaticContainer, parse_container};

/// `ctrfsd --version`: the crate version and the commit it was built from (see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CTRFSD_COMMIT"), ")");

/// The command line as clap parses it; [`Args::check`] and [`Args::into_config`] check it.
#[derive(Debug, Parser)]
#[command(
    name = "ctrfsd",
    version = VERSION,
    about = "Mount every container's filesystem, by name, under one read-only directory",
    long_about = "Mount every container's filesystem, by name, under one read-only directory.\n\n\
        /MOUNTPOINT/<name>/ is the container's root as its main process sees it (image, writable \
        layer, volumes, tmpfs). Symlinks inside a container resolve inside that container, never \
        on the host. Runs in the foreground; Ctrl-C or SIGTERM unmounts and exits 0.",
    after_help = "Examples:\n  sudo ctrfsd /ctr\n  ls /ctr/*/etc\n  grep -r ERROR /ctr/nginx/var/log\n  \
        sudo ctrfsd --runtime docker --container web=4242 /ctr\n  ctrfsd --list-runtimes\n  \
        sudo ctrfsd --check /ctr"
)]
pub struct Args {
    /// Directory to mount on (must exist)
    #[arg(required_unless_present = "list_runtimes")]
    pub mountpoint: Option<PathBuf>,

    /// Watch only these runtimes (repeatable): docker, podman (rootful and every user's
    /// rootless), containerd, cri (CRI-O, or containerd through its CRI plugin), or none.
    /// Default: every runtime found, looked for again as sockets appear
    #[arg(long = "runtime", value_name = "NAME")]
    pub runtimes: Vec<RuntimeArg>,

    /// Say which runtimes answer on this host, and why the others do not; then exit
    #[arg(long)]
    pub list_runtimes: bool,

    /// Check that MOUNTPOINT holds a ctrfsd mount whose daemon answers within 2 s, then exit:
    /// 0 if it does, 1 with the reason if not (nothing mounted, another filesystem, a dead
    /// mount, no answer). For readiness and liveness probes: the DaemonSet's uses it
    #[arg(long, conflicts_with = "list_runtimes")]
    pub check: bool,

    /// Also serve the root of process PID as NAME (repeatable); works for any runtime or none
    #[arg(long = "container", value_name = "NAME=PID")]
    pub containers: Vec<String>,

    /// Seconds between full re-lists of the runtime, a safety net behind the event stream
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = at_least_one::<u64>)]
    pub resync: u64,

    /// Create the mountpoint directory (and its parents) if it is missing: for images with
    /// no shell to `mkdir` it, such as the DaemonSet's (deploy/kubernetes)
    #[arg(long)]
    pub mkdir: bool,

    /// Show only running containers. By default stopped ones (created, exited, dead) are shown
    /// too, read-only from their layers, as `docker ps -a` lists them
    #[arg(long)]
    pub running_only: bool,

    /// Most stopped-container views (each a detached overlay mount and one fd) held at once;
    /// the least recently assembled is released and assembled again when next used (default:
    /// 256, or an eighth of RLIMIT_NOFILE if that is less)
    #[arg(long, value_name = "N",
          value_parser = at_least_one::<usize>)]
    pub max_detached: Option<usize>,

    /// Serve extended attributes (getfattr, ACLs, capabilities). Off by default: `ls -l` asks
    /// for them on every file, and answering made `ls -lR` 4.8x slower
    #[arg(long)]
    pub xattrs: bool,

    /// Kernel FUSE passthrough: reads go straight to the container's file (fastest for large
    /// files), at the cost of one round trip per open (slower for many small files)
    #[arg(long)]
    pub passthrough: bool,

    /// Seconds the kernel may keep entries, attributes and listings of directories ctrfsd
    /// watches with inotify; every change reported by an event is pushed to the kernel at
    /// once, so this bounds only what no event reports (writes through a shared memory map,
    /// mounts changed inside a running container). 1 turns watching off: everything is then
    /// asked again after a second
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub cache_ttl: u64,

    /// Most directories watched at once (default: a quarter of fs.inotify.max_user_watches,
    /// which all of root's processes share); past it, directories are cached for 1 s
    #[arg(long, value_name = "N")]
    pub max_watches: Option<usize>,

    /// Let members of this host group (a name or a numeric gid) enter the mount, besides root.
    /// Inside containers the files' own host-view permissions apply to them; `.pid/` stays
    /// root's. Default: root only
    #[arg(long, value_name = "GROUP")]
    pub allow_group: Option<String>,

    /// FUSE worker threads, 1 to 64 (default: number of CPUs, at least 2)
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub threads: Option<usize>,

    /// Log level when RUST_LOG is not set: error, warn, info, debug, trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Parses a count or a number of seconds that must be at least 1, so that `--resync 0` is a
/// usage error with a message that says why.
fn at_least_one<T: std::str::FromStr<Err = std::num::ParseIntError> + PartialEq + From<u8>>(
    s: &str,
) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A value of `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    /// Docker Engine
    Docker,
    /// Rootful and every user's rootless Podman
    Podman,
    /// containerd, every namespace (Kubernetes too)
    Containerd,
    /// A Kubernetes node's runtime through the CRI: CRI-O, or containerd's CRI plugin
    Cri,
    /// No runtime: only `--container` entries and `/MOUNTPOINT/.pid/<PID>/`.
    #[value(help = "No runtime: only --container entries and /MOUNTPOINT/.pid/<PID>/")]
    None,
}

/// What the daemon runs with: the checked command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory to mount on (checked by [`crate::mountpoint`] before mounting).
    pub mountpoint: PathBuf,
    /// `--container NAME=PID` entries.
    pub containers: Vec<StaticContainer>,
    /// Runtimes to watch.
    pub runtimes: Vec<Kind>,
    /// The user named them (their sockets are watched even before they exist).
    pub runtimes_named: bool,
    /// How often every runtime is listed again in full, as a safety net behind its events.
    pub resync: Duration,
    /// `--mkdir`: a missing mountpoint is created.
    pub mkdir: bool,
    /// `--running-only`: stopped containers are not shown.
    pub running_only: bool,
    /// `None`: 256, or an eighth of RLIMIT_NOFILE if less.
    pub max_detached: Option<usize>,
    /// Extended attributes are answered (else ENOSYS, which spares `ls -l` round trips).
    pub xattrs: bool,
    /// Kernel FUSE passthrough of opened files, where the kernel offers it.
    pub passthrough: bool,
    /// FUSE worker threads.
    pub threads: usize,
    /// How long the kernel may cache entries and attributes of watched directories.
    pub cache_ttl: Duration,
    /// At most this many directories are watched with inotify.
    pub max_watches: usize,
    /// `--allow-group`: the gid whose members may enter the mount; `None`: root only.
    pub allow_group: Option<u32>,
}

impl Args {
    /// Checks what clap's per-option parsers cannot see (combinations), as a usage error
    /// that exits 2 like every other bad option value.
    ///
    /// # Errors
    ///
    /// A `clap` usage error (`ArgumentConflict`, exit code 2) when `--runtime none` is combined
    /// with another runtime.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.runtimes.contains(&RuntimeArg::None) && self.runtimes.len() > 1 {
            return Err(<Args as clap::CommandFactory>::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--runtime none cannot be combined with other runtimes",
            ));
        }
        Ok(())
    }

    /// The validated settings (expects [`Args::check`] to have passed).
    ///
    /// # Errors
    ///
    /// [`StartError`] naming the argument and what is wrong with it: a bad `--container`
    /// entry (or a second one for the same PID), or a missing MOUNTPOINT.
    pub fn into_config(self) -> Result<Config, StartError> {
        let containers = self
            .containers
            .iter()
            .map(|arg| parse_container(arg))
            .collect::<Result<Vec<_>, _>>()?;
        // One process, one name: a second entry for the same PID would silently replace the
        // first (both are the same container to the registry).
        for (i, c) in containers.iter().enumerate() {
            if let Some(first) = containers[..i].iter().find(|f| f.pid == c.pid) {
                return Err(StartError::BadContainer {
                    arg: format!("{}={}", c.name, c.pid),
                    reason: format!("process {} is already given as {}", c.pid, first.name),
                });
            }
        }
        // Ranges of --threads, --resync, --cache-ttl and --max-detached are checked by clap
        // (usage errors, exit 2); --runtime by `Args::check`.
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 64)
        });
        let mountpoint = self
            .mountpoint
            .ok_or_else(|| StartError::Other("MOUNTPOINT is required".into()))?;
        let (runtimes, runtimes_named) = runtime_kinds(&self.runtimes)?;
        let allow_group = self.allow_group.as_deref().map(parse_group).transpose()?;
        Ok(Config {
            mountpoint,
            containers,
            runtimes,
            runtimes_named,
            resync: Duration::from_secs(self.resync),
            mkdir: self.mkdir,
            running_only: self.running_only,
            max_detached: self.max_detached,
            xattrs: self.xattrs,
            passthrough: self.passthrough,
            threads,
            cache_ttl: Duration::from_secs(self.cache_ttl),
            max_watches: self
                .max_watches
                .unwrap_or_else(crate::fs::watch::default_max_watches),
            allow_group,
        })
    }
}

/// `--allow-group`: a numeric gid as given, or a group name resolved now (through NSS), so a
/// typo fails at start (exit code 2) instead of opening the mount to nobody.
///
/// # Errors
///
/// [`StartError::BadGroup`] naming `arg`: the id `u32::MAX` (it means "no group" to the
/// kernel), a name that no group has on this host, or a failed NSS lookup (the errno
/// `getgrnam_r` returned, in the reason text).
pub fn parse_group(arg: &str) -> Result<u32, StartError> {
    let bad = |reason: String| StartError::BadGroup {
        name: arg.to_string(),
        reason,
    };
    if let Ok(gid) = arg.parse::<u32>() {
        if gid == u32::MAX {
            return Err(bad("not a group id".into()));
        }
        return Ok(gid);
    }
    match crate::sys::group_gid(arg) {
        Ok(Some(gid)) => Ok(gid),
        Ok(None) => Err(bad("no such group on this host".into())),
        Err(e) => Err(bad(format!("cannot look the group up: {e}"))),
    }
}

/// The runtimes `--runtime` selects, and whether the user named any.
///
/// # Errors
///
/// [`StartError::Other`] when `none` is combined with another runtime.
pub fn runtime_kinds(args: &[RuntimeArg]) -> Result<(Vec<Kind>, bool), StartError> {
    if args.is_empty() {
        return Ok((
            vec![Kind::Docker, Kind::Podman, Kind::Containerd, Kind::Cri],
            false,
        ));
    }
    if args.contains(&RuntimeArg::None) && args.len() > 1 {
        return Err(StartError::Other(
            "--runtime none: cannot be combined with other runtimes".into(),
        ));
    }
    let mut kinds = Vec::new();
    for a in args {
        let k = match a {
            RuntimeArg::Docker => Kind::Docker,
            RuntimeArg::Podman => Kind::Podman,
            RuntimeArg::Containerd => Kind::Containerd,
            RuntimeArg::Cri => Kind::Cri,
            RuntimeArg::None => continue,
        };
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    Ok((kinds, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_arguments() {
        assert_eq!(parse_group("0").unwrap(), 0);
        assert_eq!(parse_group("root").unwrap(), 0);
        assert_eq!(parse_group("4242").unwrap(), 4242);
        let err = parse_group("no-such-group-ctrfsd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--allow-group no-such-group-ctrfsd: no such group on this host"
        );
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }
}
