//! Probe paths for eBPF (issue 17, item 4): `user.ctrfsd.host_path` of a file a container's
//! process has mapped names, on the host, the very inode the process maps (the device and
//! inode `/proc/<pid>/maps` shows), for a running container, and the layer file for a stopped
//! one. The image is made from the host's own dynamically linked `/bin/sleep` and the libraries
//! `ldd` names, with the host's directory links (`/lib -> usr/lib`) and absolute library links
//! recreated inside it, so every path crosses links that resolve inside the container.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use common::*;

/// Recreates host file `path` under `root` at the same place: every link on the way (`/lib ->
/// usr/lib`, a library link) becomes the same link inside `root`, and the file it ends at is
/// copied.
fn mirror(root: &Path, path: &Path) {
    let comps: Vec<OsString> = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut cur = PathBuf::from("/");
    for (i, c) in comps.iter().enumerate() {
        let next = cur.join(c);
        let inside = root.join(next.strip_prefix("/").unwrap());
        let md = fs::symlink_metadata(&next).unwrap();
        if md.file_type().is_symlink() {
            let target = fs::read_link(&next).unwrap();
            if fs::symlink_metadata(&inside).is_err() {
                fs::create_dir_all(inside.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(&target, &inside).unwrap();
            }
            let mut rest = if target.is_absolute() {
                target
            } else {
                cur.join(target)
            };
            rest.extend(&comps[i + 1..]);
            return mirror(root, &rest);
        }
        if md.is_dir() {
            fs::create_dir_all(&inside).unwrap();
            cur = next;
        } else {
            fs::copy(&next, &inside).unwrap();
            return;
        }
    }
}

/// The files `ldd PROGRAM` names (the program's shared libraries and its loader).
fn ldd(program: &str) -> Vec<PathBuf> {
    let out = sh(&format!("ldd {program}"));
    assert!(out.status.success(), "ldd {program}: {out:?}");
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = match l.split_once("=>") {
                Some((_, r)) => r.trim(),
                None => l,
            };
            let p = p.split_whitespace().next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

/// (path inside the container, device "maj:min" in hex, inode) of each file mapped by `pid`.
fn mapped_files(pid: u32) -> Vec<(String, String, u64)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut v: Vec<(String, String, u64)> = maps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ino: u64 = f.get(4)?.parse().ok()?;
            let path = *f.get(5)?;
            (ino != 0 && path.starts_with('/')).then(|| (path.to_string(), f[3].to_string(), ino))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn dev_hex(dev: u64) -> String {
    format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev))
}

#[test]
fn host_path_is_the_inode_the_process_maps() {
    require_docker();
    let tag = format!("ctrfsd-probe-{}:1", token());
    let dir = tempfile::tempdir().unwrap();
    let mut files = ldd("/bin/sleep");
    files.push("/bin/sleep".into());
    for f in &files {
        mirror(dir.path(), f);
    }
    docker_import(dir.path(), &tag);
    let name = format!("ctrfsd-probe-{}", token());
    // Removed on drop even if `docker run` fails half-way (the image, last).
    let image = DockerImage(tag.clone());
    let _early = DockerCtr(name.clone());
    let ctr = docker_run(&name, &tag, &["/bin/sleep", "100000"]);
    let pid = ctr.pid();
    let d = Daemon::start(&["--runtime", "docker"]);
    let top = d.path().join(&name);
    within(WITHIN_API, "the container appears", || {
        top.join("bin").exists()
    });

    let mapped = mapped_files(pid);
    let libs: Vec<_> = mapped.iter().filter(|(p, ..)| p.contains(".so")).collect();
    assert!(
        libs.len() >= 2,
        "sleep maps libc and the loader: {mapped:?}"
    );
    for (path, dev, ino) in &mapped {
        let seen = top.join(path.trim_start_matches('/'));
        let host = ctrfsd_xattr(&seen, "host_path")
            .unwrap_or_else(|| panic!("{} has no user.ctrfsd.host_path", seen.display()));
        assert_eq!(
            host,
            format!("/proc/{pid}/root{path}"),
            "the mapped path, links resolved inside the container"
        );
        let st = fs::metadata(&host).unwrap();
        assert_eq!(
            (dev_hex(st.dev()), st.ino()),
            (dev.clone(), *ino),
            "{host}: stat gives the device and inode /proc/{pid}/maps shows for {path}"
        );
    }
    // Asked through a link (/lib64/ld-linux-x86-64.so.2 is an absolute link, /lib a
    // directory link, in this image as on the host): the file's own, link-free path.
    let loader = files
        .iter()
        .find(|f| f.to_string_lossy().contains("ld-linux"))
        .expect("ldd names the loader");
    let via_link = ctrfsd_xattr(&top.join(loader.strip_prefix("/").unwrap()), "host_path").unwrap();
    assert!(
        mapped
            .iter()
            .any(|(p, ..)| via_link == format!("/proc/{pid}/root{p}")),
        "{via_link} is the loader's mapped path: {mapped:?}"
    );
    // Not a regular file: no probe path.
    assert_eq!(ctrfsd_xattr(&top.join("bin"), "host_path"), None);

    // Stopped: the layer file, the same inode the running process mapped for /bin/sleep.
    let (sleep_path, _, sleep_ino) = mapped
        .iter()
        .find(|(p, ..)| p.ends_with("/sleep"))
        .expect("sleep is mapped")
        .clone();
    docker_ok(&["stop", "-t", "0", &name]);
    within(WITHIN_API, "the stopped view serves", || {
        ctrfsd_xattr(&top, "state").is_some_and(|s| s != "running")
    });
    let layer = ctrfsd_xattr(&top.join(sleep_path.trim_start_matches('/')), "host_path")
        .expect("a stopped container's file has a host_path");
    assert!(
        layer.starts_with("/var/lib/docker/") && layer.ends_with(&sleep_path),
        "{layer}: the file in the image layer"
    );
    assert_eq!(fs::metadata(&layer).unwrap().ino(), sleep_ino, "{layer}");
    drop(d);
    drop(ctr);
    drop(image);
}

/// A Docker image removed on drop.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}
