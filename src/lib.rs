//! ctrfsd: one FUSE mount that shows every container's filesystem by name.
//!
//! Data flows one way (see `shared/DESIGN.md`):
//!
//! ```text
//! runtime/ (async watchers) -> registry (name -> instance) -> fs/ (sync FUSE handlers)
//! ```
//!
//! - [`cli`] turns the command line into a [`cli::Config`].
//! - [`daemon`] wires watchers, registry and the FUSE session, and unmounts cleanly on signals.
//! - [`mountpoint`] checks the mountpoint before mounting and cleans up stale ctrfsd mounts.
//! - [`container`] is the container model (runtime kinds, identity, how a stopped one ended);
//!   [`pidfd`] pins processes.
//! - [`registry`] holds the live container instances; [`instance`] acquires one race-free;
//!   [`mounts`] tells which of a container's mounts are served ([`origin`]: where a mount's
//!   data comes from); [`layers`] assembles a stopped
//!   container's filesystem from its layers.
//! - [`runtime`] feeds the registry: Docker, Podman, containerd, and static `NAME=PID` entries;
//!   [`trust`] checks what an endpoint run by an unprivileged user says before root acts on it;
//!   [`idmap`] decides which of that user's containers' files may be shown (what the user's
//!   own processes could read).
//! - [`fs`] is the FUSE filesystem; [`pathsafe`] holds the containment and link-rewriting rules.
//! - [`notify`] tells systemd (`Type=notify`) when the mount is ready and when it stops.
//! - [`error`] maps start-up failures to exit codes; [`sys`] holds the only `unsafe`.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod check;
pub mod cli;
pub mod container;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod idmap;
pub mod instance;
pub mod layers;
pub mod logs;
pub mod mountpoint;
pub mod mounts;
pub mod notify;
pub mod origin;
pub mod pathsafe;
pub mod pidfd;
pub mod registry;
pub mod runtime;
pub mod sys;
pub mod trust;
