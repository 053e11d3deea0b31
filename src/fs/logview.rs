//! `/ctr/.logs/<path>/`: each container's output as read-only files (README, "Logs").
//!
//! `.logs` mirrors the made-up tree of the mount root (`<name>`, `k8s/<ns>/<pod>/<ctr>`; not
//! `.pid` or `.diff`); a container's directory holds `stdout`, `stderr` and `all` (both, in
//! the order the store recorded them), or only `unavailable` (the reason, as text) when its
//! runtime keeps no readable store or the store was refused. The content comes from
//! [`crate::logs::store::LogSet`], one per container, kept while the container is known or
//! the kernel holds one of its files (so a removed container's log reads on like a deleted
//! file still open).
//!
//! Inode numbers carry [`LOGS_BIT`] (never [`crate::registry::VIRT_BIT`]): the `.logs`
//! directory is `LOGS_BIT`, a mirrored directory `LOGS_BIT | n` for registry directory
//! `VIRT_BIT | n`, a container's directory `LOGS_BIT | CTR_BIT | seq << 3`, its files that
//! plus 1..=4. File attributes are given with a zero TTL (three files per container), so
//! `tail -f` sees growth at its next `fstat`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use fuser::{FileAttr, FileType};

use super::attr::synthetic_dir_attr;
use super::dirs::DirEntry;
use super::virt::XATTR_PREFIX;
use super::{CtrFs, TTL, errno};
use crate::instance::Instance;
use crate::logs::follow;
use crate::logs::store::{LogSet, describe};
use crate::logs::{LogSource, Stream};
use crate::registry::{ROOT_INO, VEntry, VIRT_BIT, View};

/// The directory under the mount root holding every container's log views.
pub(crate) const LOGS_DIR: &str = ".logs";
/// Set in every inode number of the log views.
pub(crate) const LOGS_BIT: u64 = 1 << 61;
const CTR_BIT: u64 = 1 << 60;
/// Inodes of container links shown as their stream ([`super::stdio_links`]).
const LINK_BIT: u64 = 1 << 59;
const FILES: [(&str, u64); 3] = [("stdout", 1), ("stderr", 2), ("all", 3)];
const UNAVAILABLE: (&str, u64) = ("unavailable", 4);

/// True for the inodes this module answers.
pub(crate) fn is_log(ino: u64) -> bool {
    ino & LOGS_BIT != 0 && ino & VIRT_BIT == 0
}

/// What a log-view inode stands for.
#[derive(Clone, Copy)]
enum LNode {
    /// A mirror of registry directory `.0` (`ROOT_INO` for `.logs` itself).
    Dir(u64),
    /// Container `seq`'s directory.
    Ctr(u64),
    /// File `kind` (1..=4) of container `seq`.
    File(u64, u64),
    /// A link inside a container shown as a stream ([`LinkView`]).
    Link(u64),
}

/// A link inside a container shown as one of its streams.
#[derive(Clone)]
struct LinkView {
    seq: u64,
    stream: Stream,
    /// The link's own text.
    text: OsString,
    /// Where it was found: (container directory inode, name), to give one link one inode.
    at: (u64, OsString),
}

fn decode(ino: u64) -> LNode {
    let n = ino & !LOGS_BIT;
    if n & LINK_BIT != 0 {
        return LNode::Link(ino);
    }
    if n & CTR_BIT == 0 {
        return LNode::Dir(if n == 0 { ROOT_INO } else { VIRT_BIT | n });
    }
    let (seq, kind) = ((n & !CTR_BIT) >> 3, n & 7);
    if kind == 0 {
        LNode::Ctr(seq)
    } else {
        LNode::File(seq, kind)
    }
}

fn mirror_ino(vino: u64) -> u64 {
    if vino == ROOT_INO {
        LOGS_BIT
    } else {
        LOGS_BIT | (vino & !VIRT_BIT)
    }
}

fn ctr_ino(seq: u64) -> u64 {
    LOGS_BIT | CTR_BIT | (seq << 3)
}

fn stream_of(kind: u64) -> Stream {
    match kind {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => Stream::All,
    }
}

/// The container whose log key is `seq` in the view ([`LogViews::key_of`]), with the
/// registry directory that lists it.
fn find(logs: &LogViews, view: &View, seq: u64) -> Option<(u64, Arc<Instance>)> {
    view.dirs.iter().find_map(|(dino, d)| {
        d.children.values().find_map(|e| match e {
            VEntry::Container(i) if logs.key_of(i) == seq => Some((*dino, i.clone())),
            _ => None,
        })
    })
}

/// One listed entry: name, inode, kind.
type Listed = (String, u64, FileType);

/// The log sets and the kernel's references to log files.
#[derive(Default)]
pub(crate) struct LogViews {
    sets: DashMap<u64, Arc<LogSet>>,
    /// File inode -> lookups the kernel holds.
    refs: DashMap<u64, u64>,
    /// Link inode -> what it shows; entries live while the kernel holds the inode.
    links: DashMap<u64, LinkView>,
    /// (container seq, directory inode, name) -> link inode.
    link_inos: DashMap<(u64, u64, OsString), u64>,
    next_link: AtomicU64,
    /// Instance seq -> log key: a container's later instances (it exited, was restarted) keep
    /// the key, set and inodes of its first one while that set is kept, so a follower's file
    /// stays the same file (`tail -F` read it again from its start when it became another).
    keys: DashMap<u64, u64>,
}

impl LogViews {
    /// The log key of `inst`: the key of a kept set reading the same store, else its seq.
    fn key_of(&self, inst: &Instance) -> u64 {
        if let Some(k) = self.keys.get(&inst.seq) {
            return *k;
        }
        let Some(LogSource::Files { path, .. }) = &inst.ident.logs else {
            return inst.seq;
        };
        let same = self.sets.iter().find_map(|e| match e.value().source() {
            LogSource::Files { path: p, .. } if p == path => {
                // The runtime wrote its last lines as the old instance ended: look again.
                e.value().look_soon();
                Some(*e.key())
            }
            _ => None,
        });
        let key = same.unwrap_or(inst.seq);
        self.keys.insert(inst.seq, key);
        key
    }
}

impl CtrFs {
    fn log_set(&self, seq: u64) -> io::Result<Arc<LogSet>> {
        if let Some(s) = self.logs.sets.get(&seq) {
            return Ok(s.clone());
        }
        let (_, inst) =
            find(&self.logs, &self.registry.view(), seq).ok_or_else(|| errno(libc::ENOENT))?;
        Ok(self.log_set_of(&inst))
    }

    /// The log set of `inst` (made on first use).
    fn log_set_of(&self, inst: &Instance) -> Arc<LogSet> {
        let key = self.logs.key_of(inst);
        if let Some(s) = self.logs.sets.get(&key) {
            return s.clone();
        }
        let source = inst.ident.logs.clone().unwrap_or_else(|| {
            LogSource::Unavailable(format!(
                "{} names no log store for this container",
                inst.ident.runtime.as_str()
            ))
        });
        self.prune_log_sets();
        let set = Arc::new(LogSet::new(source, inst.path().to_string()));
        self.logs.sets.entry(key).or_insert(set).clone()
    }

    /// Whether `inst`'s log is served (else its stdout links are shown as links).
    pub(super) fn log_served(&self, inst: &Instance) -> bool {
        self.log_set_of(inst).refresh().is_none()
    }

    /// Drops the sets of containers no longer in the registry that the kernel holds nothing
    /// of (their fds would otherwise keep deleted stores' disk space).
    fn prune_log_sets(&self) {
        let view = self.registry.view();
        let insts: Vec<Arc<Instance>> = view
            .dirs
            .values()
            .flat_map(|d| d.children.values())
            .filter_map(|e| match e {
                VEntry::Container(i) => Some(i.clone()),
                VEntry::Dir(_) => None,
            })
            .collect();
        let seqs: std::collections::HashSet<u64> = insts.iter().map(|i| i.seq).collect();
        self.logs.keys.retain(|seq, _| seqs.contains(seq));
        let live: std::collections::HashSet<u64> =
            insts.iter().map(|i| self.logs.key_of(i)).collect();
        self.logs
            .sets
            .retain(|seq, set| live.contains(seq) || set.refs.load(Ordering::Relaxed) > 0);
    }

    /// The entries of log directory `ino`: (name, inode, kind), and its parent's inode.
    fn log_children(&self, ino: u64) -> io::Result<(u64, Vec<Listed>)> {
        let view = self.registry.view();
        match decode(ino) {
            LNode::Dir(vino) => {
                let dir = view.dirs.get(&vino).ok_or_else(|| errno(libc::ENOENT))?;
                let parent = if vino == ROOT_INO {
                    ROOT_INO
                } else {
                    mirror_ino(dir.parent)
                };
                let list = dir
                    .children
                    .iter()
                    .filter(|(n, _)| vino != ROOT_INO || !n.starts_with('.'))
                    .map(|(n, e)| {
                        let i = match e {
                            VEntry::Dir(d) => mirror_ino(*d),
                            VEntry::Container(c) => ctr_ino(self.logs.key_of(c)),
                        };
                        (n.clone(), i, FileType::Directory)
                    })
                    .collect();
                Ok((parent, list))
            }
            LNode::Ctr(seq) => {
                let parent = find(&self.logs, &view, seq).map_or(LOGS_BIT, |(d, _)| mirror_ino(d));
                let set = self.log_set(seq)?;
                let files: Vec<(&str, u64)> = match set.refresh() {
                    None => FILES.to_vec(),
                    Some(_) => vec![UNAVAILABLE],
                };
                let list = files
                    .into_iter()
                    .map(|(n, k)| (n.to_string(), ino | k, FileType::RegularFile))
                    .collect();
                Ok((parent, list))
            }
            LNode::File(..) | LNode::Link(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    /// (container seq, file kind) of a log file or link inode.
    fn file_of(&self, ino: u64) -> io::Result<(u64, u64)> {
        match decode(ino) {
            LNode::File(seq, kind) => Ok((seq, kind)),
            LNode::Link(ino) => {
                let l = self
                    .logs
                    .links
                    .get(&ino)
                    .ok_or_else(|| errno(libc::ENOENT))?;
                Ok((l.seq, l.stream as u64 + 1))
            }
            _ => Err(errno(libc::EISDIR)),
        }
    }

    /// The log inode for link `name` in container directory `parent` of `inst` that leads to
    /// `stream`; its attributes, counted as one kernel reference. `None`: no log to show
    /// (then the link is shown as it is).
    pub(super) fn log_link(
        &self,
        inst: &Arc<Instance>,
        parent: u64,
        name: &OsStr,
        stream: Stream,
        text: OsString,
    ) -> Option<FileAttr> {
        let set = self.log_set_of(inst);
        if set.refresh().is_some() {
            return None;
        }
        let seq = self.logs.key_of(inst);
        let key = (seq, parent, name.to_owned());
        let ino = *self.logs.link_inos.entry(key).or_insert_with(|| {
            LOGS_BIT | LINK_BIT | (self.logs.next_link.fetch_add(1, Ordering::Relaxed) + 1)
        });
        self.logs.links.entry(ino).or_insert_with(|| LinkView {
            seq,
            stream,
            text,
            at: (parent, name.to_owned()),
        });
        let (attr, _) = self.log_getattr(ino).ok()?;
        self.log_ref(ino, 1);
        Some(attr)
    }

    /// The reason text of an `unavailable` file.
    fn unavailable_text(set: &LogSet) -> Vec<u8> {
        let mut why = set.refresh().unwrap_or_default().into_bytes();
        why.push(b'\n');
        why
    }

    /// Attributes of log inode `ino`, and how long the kernel may keep them.
    pub(super) fn log_getattr(&self, ino: u64) -> io::Result<(FileAttr, Duration)> {
        match decode(ino) {
            LNode::Dir(vino) => {
                if !self.registry.view().dirs.contains_key(&vino) {
                    return Err(errno(libc::ENOENT));
                }
                Ok((synthetic_dir_attr(ino, self.started), TTL))
            }
            LNode::Ctr(seq) => {
                self.log_set(seq)?;
                Ok((synthetic_dir_attr(ino, self.started), TTL))
            }
            LNode::File(..) | LNode::Link(_) => {
                let (seq, kind) = self.file_of(ino)?;
                let set = self.log_set(seq)?;
                let (size, mtime) = if kind == UNAVAILABLE.1 {
                    (Self::unavailable_text(&set).len() as u64, self.started)
                } else {
                    if set.refresh().is_some() {
                        return Err(errno(libc::ENOENT));
                    }
                    set.size(stream_of(kind))
                };
                let mut attr = synthetic_dir_attr(ino, mtime);
                attr.kind = FileType::RegularFile;
                // Root's alone, as the runtime's own log files are (json-file is 0640
                // root:root): `--allow-group` members get no more than the host gives them.
                attr.perm = 0o440;
                // A view held after its container was removed is a deleted file (as the
                // store's files it still reads are).
                attr.nlink = u32::from(find(&self.logs, &self.registry.view(), seq).is_some());
                attr.size = size;
                attr.blocks = size.div_ceil(512);
                Ok((attr, Duration::ZERO))
            }
        }
    }

    /// `name` in log directory `parent` (the mount root for `.logs` itself); counts a kernel
    /// reference to a file.
    pub(super) fn log_lookup(&self, parent: u64, name: &OsStr) -> io::Result<(FileAttr, Duration)> {
        let ino = if parent == ROOT_INO {
            LOGS_BIT
        } else {
            let (_, list) = self.log_children(parent)?;
            list.into_iter()
                .find(|(n, _, _)| OsStr::new(n) == name)
                .map(|(_, i, _)| i)
                .or_else(|| self.held_between_instances(parent, name))
                .ok_or_else(|| errno(libc::ENOENT))?
        };
        let r = self.log_getattr(ino)?;
        self.log_ref(ino, 1);
        Ok(r)
    }

    /// While a container is between two instances (its process exited and the runtime has
    /// not yet reported it stopped, so the registry lists no instance of it for an instant),
    /// the directory of a set the kernel holds, under the name it had at the top of `.logs`,
    /// as long as its store's directory is there (a container removed is gone at once).
    fn held_between_instances(&self, parent: u64, name: &OsStr) -> Option<u64> {
        if parent != LOGS_BIT {
            return None;
        }
        self.logs.sets.iter().find_map(|e| {
            let set = e.value();
            (OsStr::new(set.label()) == name
                && set.refs.load(Ordering::Relaxed) > 0
                && set.dir_fd().is_some())
            .then(|| ctr_ino(*e.key()))
        })
    }

    /// Counts `n` kernel references to `ino`; a set that becomes held is followed
    /// ([`follow::follow`]: its store's new files are opened as the runtime makes them).
    fn log_ref(&self, ino: u64, n: u64) {
        let Ok((seq, _)) = self.file_of(ino) else {
            return;
        };
        let Some(set) = self.logs.sets.get(&seq).map(|s| s.clone()) else {
            return;
        };
        *self.logs.refs.entry(ino).or_insert(0) += n;
        if set.refs.fetch_add(n, Ordering::Relaxed) == 0 && n > 0 {
            follow::follow(&set);
        }
    }

    /// The kernel forgot `n` references to `ino`. A set nobody holds whose container is gone
    /// is dropped (its fds closed).
    pub(super) fn log_forget(&self, ino: u64, n: u64) {
        let Ok((seq, _)) = self.file_of(ino) else {
            return;
        };
        let Some(mut held) = self.logs.refs.get_mut(&ino) else {
            return;
        };
        let n = n.min(*held);
        *held -= n;
        let zero = *held == 0;
        drop(held);
        if zero {
            self.logs.refs.remove(&ino);
            if let Some((_, l)) = self.logs.links.remove(&ino) {
                self.logs.link_inos.remove(&(l.seq, l.at.0, l.at.1));
            }
        }
        let unheld = self.logs.sets.get(&seq).is_some_and(|set| {
            let last = set.refs.fetch_sub(n, Ordering::Relaxed) == n;
            if last {
                follow::unfollow(&set);
            }
            last
        });
        if unheld && find(&self.logs, &self.registry.view(), seq).is_none() {
            self.logs.sets.remove(&seq);
        }
    }

    /// Reads log file `ino` at `off`.
    pub(super) fn log_read(&self, ino: u64, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let (seq, kind) = self.file_of(ino)?;
        let set = self.log_set(seq)?;
        if kind == UNAVAILABLE.1 {
            let text = Self::unavailable_text(&set);
            let from = (off as usize).min(text.len());
            let n = (text.len() - from).min(buf.len());
            buf[..n].copy_from_slice(&text[from..from + n]);
            return Ok(n);
        }
        set.refresh();
        set.read(stream_of(kind), off, buf)
    }

    /// `SEEK_DATA`/`SEEK_HOLE` on log file `ino`: a log view has no holes, so data runs from 0
    /// to its size and the only hole is at the end (as for any regular file without holes).
    ///
    /// # Errors
    ///
    /// ENXIO for an offset at or past the size (lseek(2)), EINVAL for another `whence`, and
    /// what [`Self::log_getattr`] gives (ENOENT once the container's log is gone).
    pub(super) fn log_seek(&self, ino: u64, offset: i64, whence: i32) -> io::Result<i64> {
        let size = self.log_getattr(ino)?.0.size;
        let off = u64::try_from(offset).map_err(|_| errno(libc::ENXIO))?;
        if off >= size {
            return Err(errno(libc::ENXIO));
        }
        let at = match whence {
            libc::SEEK_DATA => off,
            libc::SEEK_HOLE => size,
            _ => return Err(errno(libc::EINVAL)),
        };
        i64::try_from(at).map_err(|_| errno(libc::EOVERFLOW))
    }

    /// Lists log directory `ino` from `offset` (as [`Self::do_readdir`] does).
    pub(super) fn log_readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(DirEntry<'_>, Option<&FileAttr>) -> bool,
    ) -> io::Result<()> {
        let (parent, list) = self.log_children(ino)?;
        let dir_attr = synthetic_dir_attr(ino, self.started);
        let dots = [
            (".".to_string(), ino, FileType::Directory),
            ("..".to_string(), parent, FileType::Directory),
        ];
        for (i, (name, eino, kind)) in dots.into_iter().chain(list).enumerate() {
            let off = i as u64 + 1;
            if off <= offset {
                continue;
            }
            let is_dot = i < 2;
            let attr = if !plus {
                None
            } else if is_dot {
                Some(dir_attr)
            } else {
                match self.log_getattr(eino) {
                    Ok((a, _)) => Some(a),
                    Err(_) => continue,
                }
            };
            let ttl = if kind == FileType::RegularFile {
                Duration::ZERO
            } else {
                TTL
            };
            let e = DirEntry {
                ino: eino,
                offset: off,
                kind,
                name: OsStr::new(&name),
                ttl,
            };
            if plus && !is_dot {
                self.log_ref(eino, 1);
            }
            if add(e, attr.as_ref()) {
                if plus && !is_dot {
                    self.log_forget(eino, 1);
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// `access(2)`: read-only, and no file here is executable.
    pub(super) fn log_access(&self, ino: u64, mask: i32) -> io::Result<()> {
        let (attr, _) = self.log_getattr(ino)?;
        if mask & libc::W_OK != 0 {
            return Err(errno(libc::EROFS));
        }
        if mask & libc::X_OK != 0 && attr.kind != FileType::Directory {
            return Err(errno(libc::EACCES));
        }
        Ok(())
    }

    /// `user.ctrfsd.*` of a log directory or file: the store and why it is not served.
    pub(super) fn log_xattrs(&self, ino: u64) -> Vec<(String, Vec<u8>)> {
        let seq = match decode(ino) {
            LNode::Ctr(seq) | LNode::File(seq, _) => seq,
            LNode::Link(i) => match self.logs.links.get(&i) {
                Some(l) => l.seq,
                None => return Vec::new(),
            },
            LNode::Dir(_) => return Vec::new(),
        };
        let Ok(set) = self.log_set(seq) else {
            return Vec::new();
        };
        let mut out = vec![("log_source".to_string(), describe(set.source()))];
        if let Some(l) = self.logs.links.get(&ino) {
            out.push(("link".into(), l.text.to_string_lossy().into_owned()));
        }
        if let Some(why) = set.refresh() {
            out.push(("unavailable".into(), why));
        }
        out.into_iter()
            .map(|(k, v)| (format!("{XATTR_PREFIX}{k}"), v.into_bytes()))
            .collect()
    }
}
