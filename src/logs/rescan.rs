//! Looking at a log store again: which of its files are new, which are the ones already held
//! under another name, and where each new one goes in the view.
//!
//! A file is known by its identity, never by its name: a plain file by (st_dev, st_ino) while
//! its fd is held, and a `.gz` rotation by its content (decompressed length and a hash of its
//! first bytes), because Docker renames `x.log` to `x.log.1`, writes it again as `x.log.1.gz`
//! and deletes `x.log.1`: the same bytes under two names and two inodes, and the inode
//! number of a deleted file comes back for a new one. Files the follower opened the moment
//! the runtime made them (`follow.rs`, [`LogSet::early`]) and that are gone from the listing
//! now are kept as deleted segments; files the runtime created (counted by the follower) that
//! were never found are said in the view, as a line of ctrfsd's, where they would have been.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::warn;

use super::Format;
use super::away::dev_null;
use super::open::{OpenError, open_dir, open_file, planted};
use super::scan::decompress;
use super::segment::{Segment, gz_bytes, head_hash, keep_gz, order_key};
use super::store::{FileId, LogSet, State};

impl LogSet {
    /// Opens store file `name` in `dir` now (the runtime just created or renamed it), so that
    /// the next look finds it even if the runtime deletes it first. Failures are left to that
    /// look. `created`: the runtime created the store's live file (counted).
    pub(crate) fn open_early(&self, dir: &OwnedFd, name: &[u8], created: bool) {
        let super::LogSource::Files { path, owner, .. } = self.source() else {
            return;
        };
        let name = OsStr::from_bytes(name);
        let opened = if name.as_bytes().ends_with(b".gz") {
            // Written after its plain file, which is held: nothing to save.
            None
        } else {
            open_file(dir, name, *owner).ok().flatten()
        };
        // Counted with the file kept, under one lock: a look that sees the count sees the file.
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = opened {
            // Bounded: a look takes them; a flood between two looks keeps the newest.
            if early.len() >= super::away::AWAY_UNREAD {
                early.remove(0);
            }
            early.push((name.to_owned(), f));
        }
        if created && path.file_name() == Some(name) {
            self.created.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn rescan(
        &self,
        st: &mut State,
        format: Format,
        path: &std::path::Path,
        owner: u32,
        held: bool,
    ) -> Result<(), OpenError> {
        let failed = |e: io::Error| OpenError::Failed(format!("{}: {e}", path.display()));
        let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
            return Err(OpenError::Failed(format!(
                "{}: not a file path",
                path.display()
            )));
        };
        let dfd = match open_dir(dir, owner) {
            Ok(d) => d,
            Err(OpenError::Failed(why)) => {
                // Removed with its container: what is held stays readable.
                for s in &mut st.segs {
                    s.present = false;
                }
                return Err(OpenError::Failed(why));
            }
            Err(e) => return Err(e),
        };
        // Both taken before the listing: every file counted or opened early was made before it.
        let (early, created) = {
            let mut e = self.early.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut *e),
                self.created.load(Ordering::Acquire),
            )
        };
        let following = self.following.load(Ordering::Acquire);
        // Read twice while followed: a rename during one `readdir` (the runtime rotating)
        // can hide the renamed file from it, and a file missed now may be deleted before the
        // next look; names seen in either pass count.
        let mut names = Vec::new();
        for _ in 0..if following { 2 } else { 1 } {
            let list = rustix::fs::openat(
                &dfd,
                ".",
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| failed(e.into()))?;
            for entry in rustix::fs::Dir::read_from(&list).map_err(|e| failed(e.into()))? {
                let entry = entry.map_err(|e| failed(e.into()))?;
                let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
                if let Some(key) = order_key(base, &name) {
                    names.push((key, name));
                }
            }
        }
        names.sort();
        names.dedup();
        for s in &mut st.segs {
            s.present = false;
        }
        let mut listed = Vec::with_capacity(names.len());
        for (_, name) in names {
            let Some(file) = open_file(&dfd, &name, owner)? else {
                continue;
            };
            let md = file.metadata().map_err(failed)?;
            if owner != 0
                && let Some(why) = planted(&file, md.len(), name.as_os_str() != base)
            {
                return Err(OpenError::Refused(format!(
                    "{}: refused: {why}",
                    name.to_string_lossy()
                )));
            }
            listed.push((name, file, md));
        }
        let id_of = |md: &std::fs::Metadata| (md.dev(), md.ino());
        let names_listed: Vec<std::ffi::OsString> =
            listed.iter().map(|(n, _, _)| n.clone()).collect();
        let held_id = |segs: &[Segment], id: FileId| {
            segs.iter()
                .position(|s| !s.released && s.note.is_none() && (s.dev, s.ino) == id)
        };
        // New files go before the first segment still listed, or after every segment when none
        // is: segments the runtime deleted (kept while held) are older than anything it still
        // lists, and the offsets a follower has read must not move.
        let mut insert_at = st
            .segs
            .iter()
            .position(|s| {
                !s.released && listed.iter().any(|(_, _, md)| id_of(md) == (s.dev, s.ino))
            })
            .unwrap_or(st.segs.len());
        // Never before a segment a read has reached: its offsets must not move (a file found
        // late goes late rather than make a follower read again what it has read).
        let guard = read_into(st);
        let mut late = false;
        let mut place = |insert_at: usize, len: usize| {
            late |= insert_at < guard;
            insert_at.max(guard).min(len)
        };
        // A `.gz` still being written holds older lines than the files listed after it: those
        // are not added until it is done (a few ms), so nothing goes before them later.
        let mut waiting = false;
        // The first file found in this look: lost ones go before it.
        let mut first_new: Option<FileId> = None;
        let mut found = 0u64;
        let mut gz_pending = false;
        // Opened early and gone now: rotated away and deleted since; older than all listed,
        // and among themselves in the order the runtime created them (they were opened in
        // the order of events, which a busy follower may see late).
        let mut early = early;
        early.sort_by_key(|(_, f)| born(f));
        for (name, file) in early {
            let Ok(md) = file.metadata() else { continue };
            let id = id_of(&md);
            if md.nlink() > 0
                || listed.iter().any(|(_, _, m)| id_of(m) == id)
                || held_id(&st.segs, id).is_some()
            {
                continue;
            }
            if owner != 0 && planted(&file, md.len(), true).is_some() {
                continue;
            }
            let mut seg = Segment::new(file, &name, false, format).map_err(failed)?;
            seg.present = false;
            // Held already under another inode (its `.gz` copy became its backing).
            if known_content(st, &mut seg) {
                continue;
            }
            let at = place(insert_at, st.segs.len());
            first_new.get_or_insert(id);
            st.segs.insert(at, seg);
            insert_at = at + 1;
            found += 1;
        }
        for (name, file, md) in listed {
            let id = id_of(&md);
            let live = name.as_os_str() == base;
            // A released segment's inode number may be the filesystem's again, for a new file.
            if let Some(i) = held_id(&st.segs, id) {
                let s = &mut st.segs[i];
                (s.present, s.live, s.name) = (true, live, name);
                insert_at = i + 1;
                continue;
            }
            let gz = name.as_bytes().ends_with(b".gz");
            if gz {
                match self.gz_match(st, &name, file, &md)? {
                    GzMatch::Held(i) => {
                        insert_at = i + 1;
                        continue;
                    }
                    GzMatch::Skip { pending } => {
                        gz_pending |= pending;
                        // Its plain file still listed is its content, found already.
                        let plain = &name.as_bytes()[..name.len() - 3];
                        let since = *st.gz_wait.entry(id).or_insert_with(Instant::now);
                        waiting |= pending
                            && since.elapsed() < GZ_WAIT
                            && !names_listed.iter().any(|n| n.as_bytes() == plain);
                        continue;
                    }
                    GzMatch::New(..) if waiting => continue,
                    GzMatch::New(file, fp) => {
                        let mut seg = Segment::new(file, &name, true, format).map_err(failed)?;
                        seg.fp = Some(fp);
                        let at = place(insert_at, st.segs.len());
                        st.segs.insert(at, seg);
                        first_new.get_or_insert(id);
                        insert_at = at + 1;
                        found += 1;
                        continue;
                    }
                }
            }
            if waiting {
                continue;
            }
            let mut seg = Segment::new(file, &name, gz, format).map_err(failed)?;
            seg.live = live;
            // A file let go while out of sight (renamed between the listing and the open) is
            // known by its content: it is not added twice.
            if !live && known_content(st, &mut seg) {
                continue;
            }
            let at = place(insert_at, st.segs.len());
            st.segs.insert(at, seg);
            first_new.get_or_insert(id);
            insert_at = at + 1;
            found += 1;
        }
        if late {
            warn!(
                "{}: a rotated log file was found after newer lines were read: its lines \
                 follow them",
                self.label()
            );
        }
        st.gz_wait.retain(|_, t| t.elapsed() < GZ_WAIT * 10);
        if following && held {
            st.found += found;
            let at = first_new.and_then(|id| st.segs.iter().position(|s| (s.dev, s.ino) == id));
            self.say_lost(st, created, at, gz_pending);
        }
        if st.segs.is_empty() {
            return Err(OpenError::Failed(format!(
                "{}: no log file (the container has not written one, or its driver keeps none)",
                path.display()
            )));
        }
        if !held {
            st.segs.retain(|s| s.present);
            let ids: Vec<FileId> = st.segs.iter().map(|s| (s.dev, s.ino)).collect();
            st.gz_seen.retain(|id, _| ids.contains(id));
        }
        for i in 0..st.segs.len() {
            let gz = if st.segs[i].gz && !st.segs[i].complete {
                match gz_bytes(&st.segs[i]) {
                    Ok(b) => Some(b),
                    // Checked whole when matched; a later failure leaves it as it is.
                    Err(_) => continue,
                }
            } else {
                None
            };
            if !st.segs[i].present {
                st.segs[i].live = false;
            }
            st.segs[i]
                .extend(self.label(), gz.as_deref().map(|v| v.as_slice()))
                .map_err(failed)?;
        }
        Ok(())
    }

    /// What listed `.gz` file `name` is: the compressed copy of a segment held (its index;
    /// it becomes that segment's backing once the plain file is gone), new content, or
    /// nothing to add (refused for good, or still being written: `pending`).
    fn gz_match(
        &self,
        st: &mut State,
        name: &OsStr,
        file: File,
        md: &std::fs::Metadata,
    ) -> Result<GzMatch, OpenError> {
        let id = (md.dev(), md.ino());
        if st.gz_refused.contains(&id) {
            return Ok(GzMatch::Skip { pending: false });
        }
        let stamp = (
            md.len(),
            md.mtime_nsec() + md.mtime() * 1_000_000_000,
            md.ctime_nsec() + md.ctime() * 1_000_000_000,
        );
        let fp = match st.gz_seen.get(&id) {
            Some((s, fp)) if *s == stamp => *fp,
            _ => match decompress(&file) {
                // Empty: only its header is written yet.
                Ok(bytes) if bytes.is_empty() => return Ok(GzMatch::Skip { pending: true }),
                Ok(bytes) => {
                    let fp = (bytes.len() as u64, head_hash(&bytes));
                    st.gz_seen.insert(id, (stamp, fp));
                    keep_gz(id, bytes);
                    fp
                }
                Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                    warn!(
                        "{}: {}: not served: {e}",
                        self.label(),
                        name.to_string_lossy()
                    );
                    st.gz_refused.insert(id);
                    return Ok(GzMatch::Skip { pending: false });
                }
                // Still being written by the runtime: next time.
                Err(_) => return Ok(GzMatch::Skip { pending: true }),
            },
        };
        let Some(i) = (0..st.segs.len()).find(|&i| st.segs[i].fingerprint() == Some(fp)) else {
            return Ok(GzMatch::New(file, fp));
        };
        let s = &mut st.segs[i];
        // Known by its content from now on, whatever becomes of its names and fds.
        s.fp = Some(fp);
        if !s.present && !s.released {
            (s.file, s.gz, s.dev, s.ino, s.present, s.name) =
                (Arc::new(file), true, id.0, id.1, true, name.to_owned());
        }
        Ok(GzMatch::Held(i))
    }

    /// Says, once, the files the runtime created and deleted before ctrfsd could open them
    /// (`created` counted by the follower, against those found): a line of ctrfsd's in every
    /// stream at `at` (before the first file found in this look), and the log once per set.
    /// Waits while a `.gz` file is still being written (it may be one of them).
    fn say_lost(&self, st: &mut State, created: u64, at: Option<usize>, gz_pending: bool) {
        let lost = created.saturating_sub(st.found);
        if gz_pending {
            return;
        }
        // Before the first file found in this look, else after every file held: the lost
        // ones came after those and before whatever is found next.
        let at = at
            .unwrap_or(st.segs.len())
            .max(read_into(st))
            .min(st.segs.len());
        if lost <= st.lost {
            return;
        }
        let n = lost - st.lost;
        st.lost = lost;
        let text = format!(
            "ctrfsd: {n} log file(s) lost here: the runtime rotated them away and deleted them \
             before ctrfsd could open them\n"
        );
        if n == lost {
            warn!(
                "{}: {}",
                self.label(),
                text.trim_end().trim_start_matches("ctrfsd: ")
            );
        }
        if let Some(null) = dev_null() {
            st.segs.insert(at, Segment::note(null, text.into_bytes()));
        }
    }
}

/// Whether `seg` (a file not live, not held by its inode) holds the bytes of a segment
/// already in the view: one whose `.gz` copy became its backing, or one let go.
fn known_content(st: &mut State, seg: &mut Segment) -> bool {
    let Some(fp) = seg.fingerprint() else {
        return false;
    };
    (0..st.segs.len()).any(|i| st.segs[i].fingerprint() == Some(fp))
}

/// When `f` was created (statx birth time; `(0, 0)` where the filesystem does not say).
fn born(f: &File) -> (i64, u32) {
    rustix::fs::statx(
        f,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::BTIME,
    )
    .ok()
    .filter(|s| s.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0)
    .map_or((0, 0), |s| (s.stx_btime.tv_sec, s.stx_btime.tv_nsec))
}

/// How long a look waits for a `.gz` file being written before newer files are added anyway.
const GZ_WAIT: Duration = Duration::from_secs(2);

/// How many segments, from the first, a read has reached (in any stream): none may be
/// inserted before them.
fn read_into(st: &State) -> usize {
    let mut start = [0u64; 3];
    let mut n = 0;
    for s in &st.segs {
        if !(0..3).any(|k| start[k] < st.read_to[k]) {
            break;
        }
        n += 1;
        for (a, o) in start.iter_mut().zip(s.out) {
            *a += o;
        }
    }
    n
}

/// What a listed `.gz` file is ([`LogSet::gz_match`]).
enum GzMatch {
    Held(usize),
    New(File, (u64, u64)),
    Skip { pending: bool },
}
