//! systemd readiness notification (`Type=notify`): one datagram on the Unix socket named by
//! `$NOTIFY_SOCKET`, as sd_notify(3) describes it, without linking libsystemd.
//!
//! The protocol (sd_notify(3), "Notes"): `NOTIFY_SOCKET` holds a filesystem path or, when it
//! starts with `@`, a Linux abstract socket name; the message is newline-separated
//! `KEY=VALUE` lines sent as one `SOCK_DGRAM` datagram. When the variable is unset (started by
//! hand, or by a service manager that does not ask) every call here does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the service manager listens, read once from `$NOTIFY_SOCKET`.
#[derive(Debug, Clone)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; an empty or missing value means "nobody listens".
    pub fn from_env() -> Notifier {
        Notifier {
            addr: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// True when a service manager asked for notifications.
    pub fn wanted(&self) -> bool {
        self.addr.is_some()
    }

    /// Sends `state` (for example `"READY=1\nSTATUS=serving"`) as one datagram. Does nothing
    /// when nobody listens.
    ///
    /// # Errors
    ///
    /// The socket cannot be created or the address is unusable (`InvalidInput` for an abstract
    /// name longer than the kernel's 107 bytes), or `sendto` failed (`ECONNREFUSED` when the
    /// listener is gone).
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(addr) = &self.addr else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        match addr.strip_prefix('@') {
            Some(name) => {
                let sa = SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(state.as_bytes(), &sa)?;
            }
            None => {
                sock.send_to(state.as_bytes(), addr)?;
            }
        }
        Ok(())
    }

    /// [`Notifier::send`], logging a failure instead of returning it: a lost notification
    /// must not stop a daemon that otherwise works (systemd then reports the start as timed
    /// out, which names the problem).
    pub fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            log::warn!(
                "NOTIFY_SOCKET {}: sending {:?}: {e}",
                self.addr.as_deref().unwrap_or(""),
                state
            );
        }
    }
}

/// How long readiness waits for the runtimes present at start to finish their first list: a
/// runtime that is down (its socket exists, nothing answers) must not hold the service in
/// "activating" for longer.
pub const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `READY=1` from a thread of its own once every runtime present at start has finished
/// its first full list (`pending` returns the names of those that have not; waited for at
/// most [`FIRST_LIST_WAIT`], then named in `STATUS=`) and `mountpoint` answers a listing of
/// its root. The `--container` entries are registered before the mount exists. So a unit
/// ordered `After=ctrfsd.service` finds every running container of a runtime that answers.
/// The mount listing is retried every 50 ms without limit: the unit's `TimeoutStartSec`
/// bounds that wait. Nothing is sent if nobody listens.
pub fn ready_when_listed(
    notifier: Notifier,
    mountpoint: std::path::PathBuf,
    pending: impl Fn() -> Vec<String> + Send + 'static,
) {
    if !notifier.wanted() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            let mut late = pending();
            while !late.is_empty() && start.elapsed() < FIRST_LIST_WAIT {
                std::thread::sleep(std::time::Duration::from_millis(50));
                late = pending();
            }
            while std::fs::read_dir(&mountpoint).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let where_ = mountpoint.display();
            let status = if late.is_empty() {
                format!("serving {where_}")
            } else {
                let late = late.join(", ");
                log::warn!("{late}: no full list after {FIRST_LIST_WAIT:?}; ready without it");
                format!("serving {where_}; not listed yet: {late}")
            };
            notifier.send_logged(&format!("READY=1\nSTATUS={status}"));
            log::info!("{where_}: answering; told the service manager it is ready");
        });
    if let Err(e) = spawned {
        log::error!("starting the notify thread: {e}; systemd will not see ctrfsd ready");
    }
}
