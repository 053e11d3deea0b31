//! Wiring: pre-flight checks, the runtime thread (watchers and signals), the FUSE session, and
//! a clean unmount on SIGTERM/SIGINT/SIGHUP.

use std::sync::mpsc;
use std::time::Duration;

use fuser::MountOption;
use log::{error, info};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Config;
use crate::error::StartError;
use crate::fs::{CtrFs, Options};
use crate::mountpoint;
use crate::registry::Registry;
use crate::runtime;

/// SIGTERM, SIGINT and SIGHUP streams (each may have failed to install).
type Signals = (
    std::io::Result<tokio::signal::unix::Signal>,
    std::io::Result<tokio::signal::unix::Signal>,
    std::io::Result<tokio::signal::unix::Signal>,
);

enum Event {
    Signal(&'static str),
    SessionEnded(std::io::Result<()>),
}

/// Mounts, serves until a signal or an external unmount, and unmounts.
///
/// # Errors
///
/// Every [`StartError`] comes before or at the mount: [`StartError::NotRoot`] when the
/// effective uid is not 0, [`StartError::NoFuseDevice`] when `/dev/fuse` cannot be opened, the
/// mountpoint errors of [`mountpoint::create`] and [`mountpoint::prepare`], a bad `--container`
/// process, or [`StartError::Other`] when a thread, the FUSE session (the mount itself) or
/// `/proc/self/fd` fails, or when the session ends with an error rather than by an unmount.
pub fn run(config: Config) -> Result<(), StartError> {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        return Err(StartError::NotRoot(euid));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(StartError::NoFuseDevice)?;
    if config.mkdir {
        mountpoint::create(&config.mountpoint)?;
    }
    let mountpoint = mountpoint::prepare(&config.mountpoint)?;
    let nofile = raise_nofile();

    let registry = Registry::new();
    registry.set_hide_stopped(config.running_only);
    crate::instance::set_max_detached(
        config
            .max_detached
            .unwrap_or_else(|| (nofile / 8).clamp(16, 256) as usize),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Other(format!("starting the runtime thread: {e}")))?;
    rt.block_on(async { runtime::static_pids::register(&registry, &config.containers) })?;

    let (tx, rx) = mpsc::channel();
    let watch_registry = registry.clone();
    let signal_tx = tx.clone();
    let (kinds, named, resync) = (
        config.runtimes.clone(),
        config.runtimes_named,
        config.resync,
    );
    // The runtimes whose socket exists now: readiness waits for their first full list.
    let first_lists = runtime::detect::present(&kinds, named);
    registry.set_runtime(rt.handle().clone());
    // Handlers installed before mounting: a SIGTERM right after the mount appears (a kubelet
    // replacing the pod) must unmount, not kill the process and leave a dead mount.
    let signals = {
        let _in_rt = rt.enter();
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        )
    };
    std::thread::Builder::new()
        .name("runtime".into())
        .spawn(move || {
            rt.block_on(async move {
                if !kinds.is_empty() {
                    tokio::spawn(runtime::detect::watch_all(
                        watch_registry,
                        kinds,
                        named,
                        resync,
                    ));
                }
                wait_signal(signals, signal_tx).await;
                // Keep the watchers running until the process exits.
                std::future::pending::<()>().await;
            })
        })
        .map_err(|e| StartError::Other(format!("starting the runtime thread: {e}")))?;

    let fs = CtrFs::new(
        registry.clone(),
        Options {
            mountpoint: mountpoint.clone(),
            xattrs: config.xattrs,
            passthrough: config.passthrough,
            // Each cache gets a quarter of the fd budget, so open files always have room.
            fd_cache: (nofile / 4).clamp(16, 512) as usize,
            cache_ttl: config.cache_ttl,
            max_watches: config.max_watches,
            allow_group: config.allow_group,
        },
    )
    .map_err(|e| StartError::Other(format!("/proc/self/fd: {e}")))?;
    let nodes = fs.nodes();
    let stats = fs.stats();
    let watcher = fs.watcher();
    let prefetch = fs.prefetcher();
    std::thread::Builder::new()
        .name("maintenance".into())
        .spawn(move || {
            let mut last = 0;
            loop {
                std::thread::sleep(Duration::from_secs(5));
                nodes.shrink_if_sparse();
                if nodes.len() != last {
                    last = nodes.len();
                    log::debug!("inode table: {last} nodes");
                }
            }
        })
        .map_err(|e| StartError::Other(format!("starting the maintenance thread: {e}")))?;
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("ctrfsd".into()),
        // The kernel shows the type as fuse.ctrfsd, which is how a stale mount is recognised.
        MountOption::CUSTOM("subtype=ctrfsd".into()),
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
        // The kernel checks every access against the modes and host-view owners ctrfsd
        // reports, for every caller: a uid-0 process without capabilities gets what the
        // kernel's own view gives it (README, security model).
        MountOption::DefaultPermissions,
    ];
    if config.allow_group.is_some() {
        // `allow_other`: others may send requests; the mount root's mode (0550, group
        // `--allow-group`) keeps everyone but root and the group out, checked by the kernel
        // on every path walk.
        fuse_config.acl = fuser::SessionACL::All;
    }
    fuse_config.n_threads = Some(config.threads);
    fuse_config.clone_fd = true;
    let mut session =
        fuser::Session::new(fs, &mountpoint, &fuse_config).map_err(|source| StartError::Mount {
            path: mountpoint.clone(),
            source,
        })?;
    if let Err(e) = mountpoint::set_readahead(&mountpoint) {
        log::warn!(
            "{}: cannot raise the readahead to {} KiB ({e}); sequential reads use the kernel's default",
            mountpoint.display(),
            mountpoint::READAHEAD_KB
        );
    }
    registry.set_notifier(session.notifier());
    prefetch.set_notifier(session.notifier());
    watcher
        .start(session.notifier())
        .map_err(|e| StartError::Other(format!("starting the watch thread: {e}")))?;
    let mut unmounter = session.unmount_callable();
    let notifier = crate::notify::Notifier::from_env();
    info!(
        "mounted at {} ({} threads, RLIMIT_NOFILE {nofile})",
        mountpoint.display(),
        config.threads
    );
    std::thread::Builder::new()
        .name("session".into())
        .spawn(move || {
            let _ = tx.send(Event::SessionEnded(session.run()));
        })
        .map_err(|e| StartError::Other(format!("starting the FUSE session: {e}")))?;
    let (ready_registry, expected) = (registry.clone(), first_lists);
    crate::notify::ready_when_listed(notifier.clone(), mountpoint.clone(), move || {
        expected
            .iter()
            .filter(|r| !ready_registry.has_listed(**r))
            .map(|r| r.as_str().to_string())
            .collect()
    });

    let event = rx.recv();
    notifier.send_logged("STOPPING=1");
    match event {
        Ok(Event::Signal(sig)) => {
            info!("{sig}: unmounting {}", mountpoint.display());
            // fuser's own unmounter, so its session does not try again when it ends.
            match unmounter.unmount() {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    info!("{}: busy, detaching lazily", mountpoint.display());
                    if let Err(e) = mountpoint::detach(&mountpoint) {
                        error!("detaching {}: {e}", mountpoint.display());
                    }
                }
                Err(e) => error!("unmounting {}: {e}", mountpoint.display()),
            }
            // A plain unmount ends the session at once; after a lazy one, exiting closes
            // /dev/fuse, which releases the detached mount for its last users.
            let _ = rx.recv_timeout(Duration::from_secs(2));
            info!(
                "requests answered: {}",
                stats.report().trim().replace('\n', ", ")
            );
            info!("stopped");
            Ok(())
        }
        Ok(Event::SessionEnded(Ok(()))) => {
            info!("{} was unmounted; stopping", mountpoint.display());
            Ok(())
        }
        Ok(Event::SessionEnded(Err(e))) => Err(StartError::Other(format!(
            "FUSE session at {}: {e}",
            mountpoint.display()
        ))),
        Err(_) => Err(StartError::Other("internal channel closed".into())),
    }
}

async fn wait_signal(signals: Signals, tx: mpsc::Sender<Event>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
        error!("cannot install signal handlers; stop ctrfsd with `umount`");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    let _ = tx.send(Event::Signal(name));
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit in force.
fn raise_nofile() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1024)
}

/// `--list-runtimes`: prints what answers on this host.
///
/// # Errors
///
/// The errors of [`crate::cli::runtime_kinds`], and [`StartError::Other`] when the runtime
/// thread cannot start. A runtime that does not answer is reported in the output, not as an
/// error.
pub fn list_runtimes(args: &[crate::cli::RuntimeArg]) -> Result<(), StartError> {
    let (kinds, _) = crate::cli::runtime_kinds(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Other(format!("starting the runtime thread: {e}")))?;
    print!("{}", rt.block_on(runtime::detect::report(&kinds)));
    Ok(())
}
