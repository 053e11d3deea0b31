//! Following held log stores as their runtime rotates them: while the kernel holds a
//! container's log view, an inotify watch on the store's directory makes ctrfsd look at the
//! store the moment the runtime creates or renames one of its files, and so open (and keep) each
//! new file before the runtime can rotate it away and delete it.
//!
//! Without this a store is only looked at when a reader asks (`stat`, `read`), and a reader
//! polls (`tail -f` and `tail -F` through FUSE ask once a second): Docker `json-file` with a
//! small `max-size` and `max-file` creates, rotates and deletes a file in less than that, and its
//! lines were lost to every reader (about 20% of them at four rotations a second).
//!
//! One inotify fd and one thread for every set, started on first use; a watch is added when a
//! set becomes held (`follow`) and removed when the kernel lets go of it (`unfollow`). The
//! directory is opened as the store's files are (`open::open_dir`: no symlink, owner checked)
//! and the watch is added through that fd (`/proc/self/fd/N`), so no path is followed twice.
//! Watches count against `fs.inotify.max_user_watches`; at most `MAX_FOLLOWED` are added, and
//! one that cannot be added is logged and the set is served as before (looked at when asked).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use log::warn;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::store::LogSet;

/// Most stores followed at once (one inotify watch each, from the per-user limit that
/// `--max-watches` also draws on); a set held past that is looked at only when read, as
/// before (logged once).
const MAX_FOLLOWED: usize = 512;

/// The watches: inotify watch descriptor -> the sets whose store is in that directory
/// (several sets may share one: their watch is the same), and set id -> its watch.
#[derive(Default)]
struct Table {
    by_wd: HashMap<i32, Vec<(u64, Weak<LogSet>)>>,
    of_set: HashMap<u64, i32>,
    /// The watched directory of each watch, to open new files in the moment they appear.
    dirs: HashMap<i32, Arc<OwnedFd>>,
}

struct Follower {
    fd: OwnedFd,
    table: Mutex<Table>,
}

impl Follower {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The follower, started on first use; `None` if inotify is unavailable (logged once).
fn follower() -> Option<&'static Follower> {
    static F: OnceLock<Option<Follower>> = OnceLock::new();
    let f: &'static Follower = F
        .get_or_init(|| {
            let fd = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
                Ok(fd) => fd,
                Err(e) => {
                    warn!("inotify unavailable ({e}): log stores are looked at only when read");
                    return None;
                }
            };
            Some(Follower {
                fd,
                table: Mutex::default(),
            })
        })
        .as_ref()?;
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("log-follow".into())
            .spawn(move || run(f));
        if let Err(e) = spawned {
            warn!("log follower thread: {e}; log stores are looked at only when read");
        }
    });
    Some(f)
}

/// Starts watching `set`'s store directory (the kernel now holds one of its files). Does
/// nothing for a set already watched or without a store.
pub fn follow(set: &Arc<LogSet>) {
    let Some(f) = follower() else { return };
    {
        let t = f.table();
        if t.of_set.contains_key(&set.id()) {
            return;
        }
        if t.of_set.len() >= MAX_FOLLOWED {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                warn!(
                    "{MAX_FOLLOWED} log stores followed: more held views are looked at only \
                     when read (rotations faster than their readers poll may lose lines)"
                );
            });
            return;
        }
    }
    let Some(dir) = set.dir_fd() else { return };
    let mask = WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR;
    let wd = match inotify::add_watch(&f.fd, format!("/proc/self/fd/{}", dir.as_raw_fd()), mask) {
        Ok(wd) => wd,
        Err(e) => {
            warn!(
                "{}: cannot watch the log store's directory ({e}); rotations faster than \
                 readers poll may lose lines",
                set.label()
            );
            return;
        }
    };
    let mut t = f.table();
    if t.of_set.insert(set.id(), wd).is_none() {
        t.by_wd
            .entry(wd)
            .or_default()
            .push((set.id(), Arc::downgrade(set)));
        t.dirs.entry(wd).or_insert_with(|| Arc::new(dir));
        set.following.store(true, Ordering::Release);
    }
}

/// Stops watching `set`'s store (the kernel holds none of its files any more).
pub fn unfollow(set: &LogSet) {
    let Some(f) = follower() else { return };
    let mut t = f.table();
    let Some(wd) = t.of_set.remove(&set.id()) else {
        return;
    };
    set.following.store(false, Ordering::Release);
    let empty = t.by_wd.get_mut(&wd).is_none_or(|list| {
        list.retain(|(id, _)| *id != set.id());
        list.is_empty()
    });
    if empty {
        t.by_wd.remove(&wd);
        t.dirs.remove(&wd);
        let _ = inotify::remove_watch(&f.fd, wd);
    }
}

/// The follower thread: waits for events, opens each new file of a followed store at once
/// (`LogSet::open_early`), and has each set whose store changed looked at on a second thread
/// (once per batch of events), so that a look (which decodes) never delays the next open.
fn run(f: &'static Follower) {
    let (looks, rx) = std::sync::mpsc::channel::<Arc<LogSet>>();
    let spawned = std::thread::Builder::new()
        .name("log-look".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut sets = vec![first];
                while let Ok(s) = rx.try_recv() {
                    if !sets.iter().any(|h| h.id() == s.id()) {
                        sets.push(s);
                    }
                }
                for set in sets {
                    set.look_now();
                }
            }
        });
    if let Err(e) = spawned {
        warn!("log look thread: {e}; log stores are looked at only when read");
        return;
    }
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
    loop {
        let mut pfd = [rustix::event::PollFd::new(
            &f.fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut pfd, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                warn!("polling inotify: {e}; log stores are looked at only when read");
                return;
            }
        }
        let mut hit: Vec<Arc<LogSet>> = Vec::new();
        let mut reader = inotify::Reader::new(&f.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(e) => {
                    let mut t = f.table();
                    if e.events().contains(ReadFlags::IGNORED) {
                        // The directory is gone: its watch with it.
                        t.dirs.remove(&e.wd());
                        if let Some(list) = t.by_wd.remove(&e.wd()) {
                            for (id, s) in list {
                                t.of_set.remove(&id);
                                if let Some(s) = s.upgrade() {
                                    s.following.store(false, Ordering::Release);
                                }
                            }
                        }
                        continue;
                    }
                    let (Some(list), Some(dir)) = (t.by_wd.get(&e.wd()), t.dirs.get(&e.wd()))
                    else {
                        continue;
                    };
                    let dir = dir.clone();
                    let sets: Vec<_> = list.iter().filter_map(|(_, s)| s.upgrade()).collect();
                    drop(t);
                    let name = e.file_name().map(|n| n.to_bytes()).unwrap_or_default();
                    let created = e.events().contains(ReadFlags::CREATE);
                    for set in sets {
                        if !set.is_store_name(name) {
                            continue;
                        }
                        // Opened first, before anything else: the runtime may delete it soon.
                        set.open_early(&dir, name, created);
                        // A `.gz` being made: its plain file is still there until it is done.
                        if let Some(plain) = name.strip_suffix(b".gz") {
                            set.open_early(&dir, plain, false);
                        }
                        if !hit.iter().any(|h| h.id() == set.id()) {
                            hit.push(set);
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: drained
            }
        }
        // Looked at on another thread: this one goes back to opening files at once.
        for set in hit {
            if looks.send(set).is_err() {
                return;
            }
        }
    }
}
