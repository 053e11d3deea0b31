//! A stopped container's filesystem, assembled from the layers its runtime reports.
//!
//! The view is an overlayfs mount made with the kernel's mount API (`fsopen("overlay")`,
//! `fsconfig`, `fsmount`) and never attached anywhere: it exists only as the fd ctrfsd holds, so
//! no other process sees it in any mount table, and it goes away when the fd (and every file
//! opened below it) is closed.
//!
//! No side effects (DESIGN.md invariant 3): the container's writable layer is stacked as the
//! topmost *lower* layer, so the overlay has no upper layer at all. It is read-only by
//! construction: no copy-up, no work directory, nothing written to the container's storage.
//! Whiteouts and opaque directories in every layer are honoured by overlayfs itself, exactly as
//! in the container's own mount. The mount is also `ro,nosuid,nodev,noexec,noatime`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_flag,
    fsconfig_set_string, fsmount, fsopen,
};

/// Where a container's files are kept, as its runtime reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// overlayfs: the container's writable layer and the image layers below it, topmost first.
    Overlay {
        /// The writable layer (overlayfs `upperdir`).
        upper: PathBuf,
        /// The image layers, topmost first (overlayfs `lowerdir`); empty for a single layer.
        lowers: Vec<PathBuf>,
    },
    /// ctrfsd cannot assemble it; why (shown in `user.ctrfsd.unavailable` and the log).
    Unavailable(String),
}

impl Storage {
    /// From the Docker API's `GraphDriver` (Docker's `overlay2`, Podman's `overlay`).
    pub fn from_graph_driver(
        driver: &str,
        data: &std::collections::HashMap<String, String>,
    ) -> Storage {
        if driver != "overlay2" && driver != "overlay" {
            return Storage::Unavailable(format!(
                "storage driver {driver:?}: ctrfsd assembles overlay layers only"
            ));
        }
        let Some(upper) = data.get("UpperDir").filter(|s| !s.is_empty()) else {
            return Storage::Unavailable(format!("storage driver {driver:?} reports no UpperDir"));
        };
        let lowers = data
            .get("LowerDir")
            .map(|l| {
                l.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Storage::Overlay {
            upper: PathBuf::from(upper),
            lowers,
        }
    }

    /// The container's writable layer, if known.
    pub fn upper(&self) -> Option<&std::path::Path> {
        match self {
            Storage::Overlay { upper, .. } => Some(upper),
            Storage::Unavailable(_) => None,
        }
    }

    /// Why the layers cannot be shown, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Storage::Unavailable(why) => Some(why),
            Storage::Overlay { .. } => None,
        }
    }
}

/// Assembles the read-only overlay of `upper` over `lowers` and returns the detached mount's
/// root fd. Errors name the layer or step that failed.
///
/// # Errors
///
/// `NotFound` when a layer is not a directory (any more); otherwise the failing
/// `fsopen`/`fsconfig`/`fsmount` call's error kind (`EPERM` without `CAP_SYS_ADMIN`, `EINVAL`
/// for a kernel without `lowerdir+`, before 6.8), with a message naming the layer or step. The
/// raw errno is not kept in these errors: they carry context.
pub fn assemble(upper: &std::path::Path, lowers: &[PathBuf]) -> io::Result<OwnedFd> {
    let ctx = |what: String| {
        move |e: rustix::io::Errno| -> io::Error {
            io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
        }
    };
    for layer in std::iter::once(upper).chain(lowers.iter().map(PathBuf::as_path)) {
        if !layer.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("layer {} is gone", layer.display()),
            ));
        }
    }
    let fs =
        fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(ctx("fsopen overlay".into()))?;
    // One layer per call ("lowerdir+", Linux 6.8): no length limit, and no escaping of ':'
    // in layer paths.
    for layer in std::iter::once(upper).chain(lowers.iter().map(PathBuf::as_path)) {
        fsconfig_set_string(&fs, "lowerdir+", layer)
            .map_err(ctx(format!("layer {}", layer.display())))?;
    }
    fsconfig_set_flag(&fs, "ro").map_err(ctx("ro".into()))?;
    fsconfig_create(&fs).map_err(ctx(format!(
        "overlay of {} and {} image layers",
        upper.display(),
        lowers.len()
    )))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC
            | MountAttrFlags::MOUNT_ATTR_NOATIME,
    )
    .map_err(ctx("fsmount".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn graph_driver() {
        let data = HashMap::from([
            ("UpperDir".to_string(), "/s/c/diff".to_string()),
            (
                "LowerDir".to_string(),
                "/s/c-init/diff:/s/i/diff".to_string(),
            ),
        ]);
        assert_eq!(
            Storage::from_graph_driver("overlay2", &data),
            Storage::Overlay {
                upper: "/s/c/diff".into(),
                lowers: vec!["/s/c-init/diff".into(), "/s/i/diff".into()],
            }
        );
        let vfs = Storage::from_graph_driver("vfs", &HashMap::new());
        assert!(vfs.unavailable().unwrap().contains("\"vfs\""), "{vfs:?}");
        assert!(
            Storage::from_graph_driver("overlay", &HashMap::new())
                .unavailable()
                .is_some()
        );
    }
}
