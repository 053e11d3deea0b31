//! floorfs: the least a `/dev/fuse` filesystem can do to serve a directory tree, for measurement
//! only (issue #16: "the floor you believe a /dev/fuse filesystem has for each row"). It is not
//! ctrfsd and not safe to use: no containment, no deadlines, no checks, inodes never forgotten.
//!
//! ```text
//! cargo build --release --example floorfs
//! target/release/examples/floorfs SOURCE MOUNTPOINT [--passthrough-min BYTES]
//! ```
//!
//! It serves SOURCE (e.g. `/proc/<pid>/root`) read-only the way ctrfsd serves a container, with
//! none of ctrfsd's own work: one `statx` per name (`AT_SYMLINK_NOFOLLOW`, relative to its
//! directory's `O_PATH` fd; a directory also gets an `O_PATH` fd of its own, a file is kept as
//! its directory and name), no `RESOLVE_*` walk, no watch, no registry; directory listings read
//! once per `opendir` and answered with readdirplus (a `statx` per entry) or plain readdir as
//! the kernel asks; reads with `pread` on an fd opened by name and kept in a small cache; `open`
//! answered ENOSYS (the kernel then sends no open and keeps its page cache, as with ctrfsd); no
//! store-ahead, no read-ahead of its own (flush and xattrs: fuser's default answer, ENOSYS, as
//! ctrfsd's default). Everything else is ctrfsd's: the INIT flags
//! (`src/fs/fuse.rs`), the mount options (`src/daemon.rs`), 2 threads with cloned fds, TTLs of
//! 60 s (ctrfsd's `--cache-ttl` on a watched tree of single-link files, the bench's), a 1 MiB
//! `st_blksize` on directories, and the mount's `read_ahead_kb` 1024 (`src/mountpoint.rs`).
//!
//! `--passthrough-min BYTES` answers `open` instead: files of at least BYTES get kernel FUSE
//! passthrough (their reads go to SOURCE's file and its page cache), smaller ones
//! `FOPEN_KEEP_CACHE`. This measures the cheapest possible per-file mix of the two modes: every
//! `open()` of the mount then costs an OPEN and a RELEASE request.
//!
//! Used by `scripts/bench.sh` (`FLOOR=1`) and README "First look: reads".

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags, openat, readlinkat, statx};

/// ctrfsd's TTL for entries and attributes on the bench tree (`--cache-ttl`, 60 s).
const TTL: Duration = Duration::from_secs(60);
/// ctrfsd's `st_blksize` for directories (`attr::DIR_BLKSIZE`): glibc's largest getdents buffer.
const DIR_BLKSIZE: u32 = 1 << 20;
/// Read fds kept open (cleared all at once when full: a first walk reads each file once).
const READ_FDS: usize = 64;

/// One directory listing read at `opendir`: (name, type) in getdents order.
type Listing = Arc<Vec<(std::ffi::OsString, FileType)>>;

/// What floorfs holds for an inode: directories keep an `O_PATH` fd (the walk resolves names
/// in them), everything else its directory's inode number and its name (one fd per file would
/// need more than this VM's `RLIMIT_NOFILE` hard limit of 20,000 for the 30k-file tree).
enum Node {
    Dir(OwnedFd),
    Named(u64, std::ffi::OsString),
}

struct Floor {
    /// FUSE inode number - 1 -> what names that file (the root is inode 1).
    nodes: Mutex<Vec<Arc<Node>>>,
    /// (st_dev, st_ino) -> FUSE inode number: one inode per file, as the kernel expects.
    by_id: Mutex<HashMap<(u64, u64), u64>>,
    /// Open directory handles.
    dirs: Mutex<HashMap<u64, Listing>>,
    next_fh: Mutex<u64>,
    /// Opened read fds by inode.
    read_fds: Mutex<HashMap<u64, Arc<File>>>,
    /// `Some(bytes)`: answer opens, passthrough for files of at least that size.
    passthrough_min: Option<u64>,
    /// Backing ids by inode (kept for the life of the mount: measurement only).
    backing: Mutex<HashMap<u64, Arc<BackingId>>>,
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(t: rustix::fs::StatxTimestamp) -> SystemTime {
    if t.tv_sec >= 0 {
        UNIX_EPOCH + Duration::new(t.tv_sec as u64, t.tv_nsec)
    } else {
        UNIX_EPOCH
    }
}

fn errno(e: impl Into<std::io::Error>) -> Errno {
    Errno::from_i32(e.into().raw_os_error().unwrap_or(libc::EIO))
}

fn proc_fd(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn to_attr(st: &rustix::fs::Statx, ino: u64) -> FileAttr {
    let mode = u32::from(st.stx_mode);
    let k = kind(mode);
    FileAttr {
        ino: INodeNo(ino),
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: time(st.stx_atime),
        mtime: time(st.stx_mtime),
        ctime: time(st.stx_ctime),
        crtime: time(st.stx_ctime),
        kind: k,
        perm: (mode & 0o7777) as u16,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev: (st.stx_rdev_major << 8) | st.stx_rdev_minor,
        blksize: if k == FileType::Directory {
            DIR_BLKSIZE
        } else {
            st.stx_blksize
        },
        flags: 0,
    }
}

impl Floor {
    fn node(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        let nodes = self.nodes.lock().map_err(|_| Errno::EIO)?;
        nodes.get(ino.0 as usize - 1).cloned().ok_or(Errno::ESTALE)
    }

    /// The directory fd of inode `ino`.
    fn dir(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        let n = self.node(ino)?;
        match &*n {
            Node::Dir(_) => Ok(n),
            Node::Named(..) => Err(Errno::ENOTDIR),
        }
    }

    /// Runs `f` with the (directory fd, name) that reach inode `ino` (name "" for a directory).
    fn with_name<T>(
        &self,
        ino: INodeNo,
        f: impl FnOnce(&OwnedFd, &OsStr) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let n = self.node(ino)?;
        match &*n {
            Node::Dir(fd) => f(fd, OsStr::new("")),
            Node::Named(parent, name) => match &*self.dir(INodeNo(*parent))? {
                Node::Dir(fd) => f(fd, name),
                Node::Named(..) => Err(Errno::ENOTDIR),
            },
        }
    }

    fn stat(dir: &OwnedFd, name: &OsStr) -> Result<rustix::fs::Statx, Errno> {
        let flags = if name.is_empty() {
            AtFlags::EMPTY_PATH
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        statx(dir, name.as_bytes(), flags, StatxFlags::BASIC_STATS).map_err(errno)
    }

    /// One `statx` of `name` in directory `parent` (and an `O_PATH` open if it is a
    /// directory): its inode's attributes.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let dir = self.dir(parent)?;
        let Node::Dir(dirfd) = &*dir else {
            return Err(Errno::ENOTDIR);
        };
        let st = Self::stat(dirfd, name)?;
        let id = (
            (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
            st.stx_ino,
        );
        let mut by_id = self.by_id.lock().map_err(|_| Errno::EIO)?;
        if let Some(&ino) = by_id.get(&id) {
            return Ok(to_attr(&st, ino));
        }
        let node = if kind(u32::from(st.stx_mode)) == FileType::Directory {
            Node::Dir(
                openat(
                    dirfd,
                    name.as_bytes(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?,
            )
        } else {
            Node::Named(parent.0, name.to_owned())
        };
        let mut nodes = self.nodes.lock().map_err(|_| Errno::EIO)?;
        nodes.push(Arc::new(node));
        let ino = nodes.len() as u64;
        by_id.insert(id, ino);
        Ok(to_attr(&st, ino))
    }

    fn read_fd(&self, ino: INodeNo) -> Result<Arc<File>, Errno> {
        if let Some(f) = self.read_fds.lock().map_err(|_| Errno::EIO)?.get(&ino.0) {
            return Ok(f.clone());
        }
        let f = Arc::new(self.with_name(ino, |dir, name| {
            openat(
                dir,
                name.as_bytes(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(errno)
        })?);
        let mut fds = self.read_fds.lock().map_err(|_| Errno::EIO)?;
        if fds.len() >= READ_FDS {
            fds.clear();
        }
        fds.insert(ino.0, f.clone());
        Ok(f)
    }

    fn listing(&self, fh: FileHandle) -> Result<Listing, Errno> {
        let dirs = self.dirs.lock().map_err(|_| Errno::EIO)?;
        dirs.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }
}

fn file_type(t: std::fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
        ] {
            let _ = config.add_capabilities(flag);
        }
        if self.passthrough_min.is_some()
            && (config
                .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
                .is_err()
                || config.set_max_stack_depth(2).is_err())
        {
            return Err(std::io::Error::other(
                "the kernel offers no FUSE passthrough",
            ));
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with_name(ino, |dir, name| Ok(to_attr(&Self::stat(dir, name)?, ino.0))) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.with_name(ino, |dir, name| {
            readlinkat(dir, name.as_bytes(), Vec::new()).map_err(errno)
        }) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(min) = self.passthrough_min else {
            // The kernel stops sending opens for the whole mount and keeps its page cache.
            return reply.error(Errno::ENOSYS);
        };
        let r = (|| {
            let size = self.with_name(ino, |dir, name| Ok(Self::stat(dir, name)?.stx_size))?;
            if size < min {
                return Ok(None);
            }
            let mut backing = self.backing.lock().map_err(|_| Errno::EIO)?;
            if let Some(b) = backing.get(&ino.0) {
                return Ok(Some(b.clone()));
            }
            let file = self.read_fd(ino)?;
            let b = Arc::new(reply.open_backing(&*file).map_err(errno)?);
            backing.insert(ino.0, b.clone());
            Ok(Some(b))
        })();
        match r {
            Ok(Some(b)) => reply.opened_passthrough(FileHandle(0), FopenFlags::empty(), &b),
            Ok(None) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.read_fd(ino).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let mut n = 0;
            while n < buf.len() {
                match f.read_at(&mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let dir = self.dir(ino)?;
            let Node::Dir(dirfd) = &*dir else {
                return Err(Errno::ENOTDIR);
            };
            let mut list = Vec::new();
            for e in std::fs::read_dir(proc_fd(dirfd)).map_err(errno)? {
                let e = e.map_err(errno)?;
                list.push((e.file_name(), file_type(e.file_type().map_err(errno)?)));
            }
            let mut next = self.next_fh.lock().map_err(|_| Errno::EIO)?;
            *next += 1;
            self.dirs
                .lock()
                .map_err(|_| Errno::EIO)?
                .insert(*next, Arc::new(list));
            Ok(*next)
        })();
        match r {
            // ctrfsd's flags for a watched directory.
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = match self.listing(fh) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (i, (name, k)) in list.iter().enumerate().skip(offset as usize) {
            // Plain readdir: the kernel does not use the inode number for its cache.
            if reply.add(ino, i as u64 + 1, *k, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let list = match self.listing(fh) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (i, (name, _)) in list.iter().enumerate().skip(offset as usize) {
            // The kernel links no dentry for these; leave them out.
            if name == "." || name == ".." {
                continue;
            }
            let Ok(attr) = self.child(ino, name) else {
                continue;
            };
            if reply.add(attr.ino, i as u64 + 1, name, &TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut dirs) = self.dirs.lock() {
            dirs.remove(&fh.0);
        }
        reply.ok();
    }
}

/// Sets the mount's `read_ahead_kb` to 1024, as ctrfsd does (`mountpoint::set_readahead`).
fn set_readahead(mountpoint: &std::path::Path) -> std::io::Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let want = mountpoint.to_string_lossy();
    let majmin = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[4] == want).then(|| f[2].to_string())
        })
        .next_back()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
    std::fs::write(format!("/sys/class/bdi/{majmin}/read_ahead_kb"), "1024")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: floorfs SOURCE MOUNTPOINT [--passthrough-min BYTES]";
    let (source, mountpoint) = match (args.get(1), args.get(2)) {
        (Some(s), Some(m)) => (s.clone(), PathBuf::from(m)),
        _ => return Err(usage.into()),
    };
    let passthrough_min = match (args.get(3).map(String::as_str), args.get(4)) {
        (Some("--passthrough-min"), Some(n)) => Some(n.parse::<u64>()?),
        (None, _) => None,
        _ => return Err(usage.into()),
    };
    let root = openat(
        rustix::fs::CWD,
        source.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fs = Floor {
        nodes: Mutex::new(vec![Arc::new(Node::Dir(root))]),
        by_id: Mutex::new(HashMap::new()),
        dirs: Mutex::new(HashMap::new()),
        next_fh: Mutex::new(0),
        read_fds: Mutex::new(HashMap::new()),
        passthrough_min,
        backing: Mutex::new(HashMap::new()),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("floorfs".into()),
        MountOption::CUSTOM("subtype=floorfs".into()),
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(2);
    config.clone_fd = true;
    let session = fuser::Session::new(fs, &mountpoint, &config)?;
    if let Err(e) = set_readahead(&mountpoint) {
        eprintln!("floorfs: readahead stays the kernel's default: {e}");
    }
    session.run()?;
    Ok(())
}
