//! The host file escape tests try to reach: unique per test, so tests running at the same time
//! (and other checkouts' tests) never share one, and removed when the test ends, passed or not.

use std::fs;
use std::path::PathBuf;

use super::token;

/// A host-only file whose content must never come back through the mount, removed on drop.
pub struct HostMarker {
    /// `/etc/ctrfsd-host-marker-<token>`.
    pub path: PathBuf,
    /// A unique text no container file holds.
    pub content: String,
}

impl HostMarker {
    /// Writes a fresh marker file; it is removed on drop.
    pub fn plant() -> HostMarker {
        let t = token();
        let path = PathBuf::from(format!("/etc/ctrfsd-host-marker-{t}"));
        let content = format!("HOST-ONLY-{t}-SECRET");
        fs::write(&path, &content).unwrap();
        HostMarker { path, content }
    }

    /// Its file name (the part after `/etc/`).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
