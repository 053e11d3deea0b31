//! The naming rules ([`super::naming::assign`]) kept up to date one change at a time, so adding
//! or removing a container costs in proportion to the names that change, not to the number of
//! containers (issue 13: a user's endpoint with 20,000 junk containers made every other
//! runtime's events wait for a full rename of all of them).
//!
//! [`assign`](super::naming::assign) is the specification: after [`Names::settle`], every
//! container holds exactly the path `assign` would give it over the same containers (tested
//! against it below on random sequences of changes). Each container's path depends only on the
//! containers ranked before it: it is its first candidate that none of them holds as its path
//! or qualified name. So a change is worked off in rank order from a queue: a container whose
//! path may have changed is placed again (`Task::Place`), and a name that was let go is
//! offered to the containers after it that want it, stopping at the first one it cannot go
//! past (`Task::Offer`). Nothing ranked before the head of the queue changes again, so each
//! container is placed at most once per change.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::container::{Identity, Runtime};

use super::few::Few;
use super::naming::{candidates, fallback, is_reserved, qualified};

/// A container's place in the naming order: runtime priority, running before stopped, newest
/// first, then scope and id. Unique per container (the registry holds one instance per runtime,
/// scope and id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank {
    runtime: Runtime,
    stopped: bool,
    newest: Reverse<i64>,
    scope: String,
    id: String,
}

impl Rank {
    /// The rank of the container `ident`, `has_process` if it runs.
    pub fn of(ident: &Identity, has_process: bool) -> Rank {
        Rank {
            runtime: ident.runtime,
            stopped: !has_process,
            newest: Reverse(ident.created),
            scope: ident.scope.clone(),
            id: ident.id.clone(),
        }
    }

    /// The registry's key of the container: runtime, scope and id
    /// ([`Identity::same_container`]).
    pub fn key(&self) -> (Runtime, String, String) {
        (self.runtime, self.scope.clone(), self.id.clone())
    }
}

/// What naming knows of one container.
#[derive(Debug)]
struct Slot {
    /// Its candidate names, best first ([`candidates`]).
    candidates: Vec<String>,
    /// Its qualified name, claimed whatever its path.
    qualified: Option<String>,
    /// Where it goes when every candidate is taken.
    fallback: String,
    /// Where it is listed; `None` until first placed.
    path: Option<String>,
}

impl Slot {
    /// Where `name` comes in its preference order (the fallback and "not placed" last).
    fn preference(&self, name: Option<&str>) -> usize {
        name.and_then(|n| self.candidates.iter().position(|c| c == n))
            .unwrap_or(self.candidates.len())
    }
}

/// Work left by a change, done in rank order ([`Names::settle`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    /// Compute the container's path again.
    Place,
    /// This name was let go: offer it to the containers ranked after the task's rank.
    Offer(String),
}

/// Every container's path, kept as [`super::naming::assign`] would compute it.
#[derive(Debug, Default)]
pub struct Names {
    /// Every container, by rank.
    slots: HashMap<Rank, Slot>,
    /// Path -> the containers listed there (one, except for repeated fallbacks).
    paths: HashMap<String, Few<Rank, ()>>,
    /// Qualified name -> the containers whose qualified name it is.
    quals: HashMap<String, Few<Rank, ()>>,
    /// Candidate -> the containers that have it among their candidates.
    wants: HashMap<String, Few<Rank, ()>>,
    /// Work queued by [`Names::add`] and [`Names::remove`].
    queue: BTreeSet<(Rank, Task)>,
    /// The containers placed again since the last settle, with their path before.
    touched: HashMap<Rank, Option<String>>,
}

fn set_add(map: &mut HashMap<String, Few<Rank, ()>>, name: &str, r: &Rank) {
    map.entry(name.to_string())
        .or_default()
        .insert(r.clone(), ());
}

fn set_del(map: &mut HashMap<String, Few<Rank, ()>>, name: &str, r: &Rank) {
    if let Some(s) = map.get_mut(name) {
        s.remove(r);
        if s.is_empty() {
            map.remove(name);
        }
    }
}

/// The members of `set` ranked after `r`.
fn after<'a>(set: Option<&'a Few<Rank, ()>>, r: &'a Rank) -> impl Iterator<Item = &'a Rank> {
    set.into_iter()
        .flat_map(move |s| s.after(r))
        .map(|(k, _)| k)
}

impl Names {
    /// How many containers are named.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no container is named.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Where the container ranked `r` is listed, once settled.
    pub fn path(&self, r: &Rank) -> Option<&str> {
        self.slots.get(r)?.path.as_deref()
    }

    /// Adds the container `ident` (not yet named); [`Names::settle`] gives it its path.
    /// Returns its rank.
    pub fn add(&mut self, ident: &Identity, has_process: bool) -> Rank {
        let r = Rank::of(ident, has_process);
        if self.slots.contains_key(&r) {
            self.remove(&r);
        }
        let slot = Slot {
            candidates: candidates(ident),
            qualified: qualified(ident),
            fallback: fallback(ident),
            path: None,
        };
        for c in &slot.candidates {
            set_add(&mut self.wants, c, &r);
        }
        if let Some(q) = &slot.qualified {
            set_add(&mut self.quals, q, &r);
            // Whoever after it is listed under its qualified name moves.
            let moved: Vec<Rank> = after(self.paths.get(q), &r).cloned().collect();
            self.queue
                .extend(moved.into_iter().map(|m| (m, Task::Place)));
        }
        self.slots.insert(r.clone(), slot);
        self.touched.entry(r.clone()).or_insert(None);
        self.queue.insert((r.clone(), Task::Place));
        r
    }

    /// Removes the container ranked `r`; the names it held are offered to the others at the
    /// next [`Names::settle`].
    pub fn remove(&mut self, r: &Rank) {
        let Some(slot) = self.slots.remove(r) else {
            return;
        };
        for c in &slot.candidates {
            set_del(&mut self.wants, c, r);
        }
        if let Some(q) = slot.qualified {
            set_del(&mut self.quals, &q, r);
            self.queue.insert((r.clone(), Task::Offer(q)));
        }
        if let Some(p) = slot.path {
            set_del(&mut self.paths, &p, r);
            self.queue.insert((r.clone(), Task::Offer(p)));
        }
        self.touched.remove(r);
        self.queue.remove(&(r.clone(), Task::Place));
    }

    /// Does the queued work. Returns every container added since the last settle, and every
    /// other whose path is not what it was before the changes.
    pub fn settle(&mut self) -> Vec<Rank> {
        while let Some((r, task)) = self.queue.pop_first() {
            match task {
                Task::Place => self.place(&r),
                Task::Offer(name) => self.offer(&r, &name),
            }
        }
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .filter(|(r, before)| self.path(r) != before.as_deref())
            .map(|(r, _)| r)
            .collect()
    }

    /// True if `name` is reserved or held (as a path or a qualified name) by a container
    /// ranked before `r`.
    fn blocked(&self, name: &str, r: &Rank) -> bool {
        let before = |m: &HashMap<String, Few<Rank, ()>>| {
            m.get(name)
                .and_then(|s| s.first())
                .is_some_and(|(first, _)| first < r)
        };
        is_reserved(name) || before(&self.paths) || before(&self.quals)
    }

    /// Computes the path of `r` from the containers ranked before it.
    fn place(&mut self, r: &Rank) {
        let Some(slot) = self.slots.get(r) else {
            return;
        };
        let new = slot
            .candidates
            .iter()
            .find(|c| !self.blocked(c, r))
            .unwrap_or(&slot.fallback)
            .clone();
        if slot.path.as_ref() == Some(&new) {
            return;
        }
        let before = slot.path.clone();
        self.touched.entry(r.clone()).or_insert(before);
        let Some(slot) = self.slots.get_mut(r) else {
            return;
        };
        let old = slot.path.replace(new.clone());
        set_add(&mut self.paths, &new, r);
        // Whoever after it was listed there moves.
        let moved: Vec<Rank> = after(self.paths.get(&new), r).cloned().collect();
        self.queue
            .extend(moved.into_iter().map(|m| (m, Task::Place)));
        if let Some(o) = old {
            set_del(&mut self.paths, &o, r);
            self.queue.insert((r.clone(), Task::Offer(o)));
        }
    }

    /// Offers `name`, let go by `r`, to the containers after `r` that want it, in rank order:
    /// stops at the first for which it is still taken (it is for every one after), at the one
    /// that holds it, and at the first that prefers it to its path (placed again, the offer
    /// goes on after it, since it may take a better name instead).
    fn offer(&mut self, r: &Rank, name: &str) {
        let mut next = None;
        for w in after(self.wants.get(name), r) {
            if self.blocked(name, w) {
                break;
            }
            let Some(slot) = self.slots.get(w) else {
                continue;
            };
            if slot.path.as_deref() == Some(name) {
                break;
            }
            if slot.preference(Some(name)) < slot.preference(slot.path.as_deref()) {
                next = Some(w.clone());
                break;
            }
        }
        if let Some(w) = next {
            self.queue.insert((w.clone(), Task::Place));
            self.queue.insert((w, Task::Offer(name.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PodRef;
    use crate::registry::naming::{Claim, assign};

    /// A small deterministic generator (xorshift), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A container drawn from a small pool of runtimes, scopes, names and ids, so that names
    /// collide often (bare names, qualified names, `~id12` and fallbacks).
    fn random_ident(rng: &mut Rng) -> (Identity, bool) {
        let runtimes = [
            Runtime::Static,
            Runtime::Docker,
            Runtime::Podman,
            Runtime::PodmanRootless,
            Runtime::Containerd,
        ];
        let rt = runtimes[rng.next(runtimes.len() as u64) as usize];
        let names = [
            "web",
            "db",
            "docker",
            "web@docker",
            ".pid",
            "k8s",
            "podman",
            "x",
        ];
        let name = names[rng.next(names.len() as u64) as usize];
        // Ids that share their first 12 characters, and ids equal to names.
        let ids = [
            "aaaaaaaaaaaa1",
            "aaaaaaaaaaaa2",
            "b1",
            "b2",
            "web",
            "c3",
            "docker~b1",
        ];
        let id = ids[rng.next(ids.len() as u64) as usize];
        let scope = match rt {
            Runtime::PodmanRootless => ["alice", "docker", "bob"][rng.next(3) as usize],
            Runtime::Containerd => ["default", "k8s.io", "team"][rng.next(3) as usize],
            _ => "",
        };
        let mut i = Identity::new(rt, id, name);
        i.scope = scope.into();
        i.created = rng.next(3) as i64;
        if rng.next(4) == 0 {
            i.k8s = Some(PodRef {
                namespace: "ns".into(),
                pod: ["p", "q"][rng.next(2) as usize].into(),
                container: "c".into(),
            });
        }
        (i, rng.next(2) == 0)
    }

    fn key(i: &Identity) -> (Runtime, String, String) {
        (i.runtime, i.scope.clone(), i.id.clone())
    }

    /// Random adds, replacements and removals: after each settle, every path is what a full
    /// `assign` gives, and the changed list names exactly the containers whose path changed.
    #[test]
    fn matches_a_full_assignment_after_every_change() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut names = Names::default();
            // Key -> (ident, has_process, rank), in registration order.
            let mut live: Vec<(Identity, bool, Rank)> = Vec::new();
            let mut last: HashMap<Rank, String> = HashMap::new();
            for step in 0..60 {
                let batch = 1 + rng.next(3);
                let mut added = BTreeSet::new();
                for _ in 0..batch {
                    if live.is_empty() || rng.next(3) != 0 {
                        let (ident, running) = random_ident(&mut rng);
                        if let Some(at) = live.iter().position(|(i, ..)| key(i) == key(&ident)) {
                            let (_, _, old) = live.remove(at);
                            names.remove(&old);
                        }
                        let r = names.add(&ident, running);
                        added.insert(r.clone());
                        live.push((ident, running, r));
                    } else {
                        let at = rng.next(live.len() as u64) as usize;
                        let (_, _, r) = live.remove(at);
                        names.remove(&r);
                        added.remove(&r);
                    }
                }
                let changed: BTreeSet<Rank> = names.settle().into_iter().collect();
                let claims: Vec<Claim<'_>> = live
                    .iter()
                    .map(|(ident, has_process, _)| Claim {
                        ident,
                        has_process: *has_process,
                    })
                    .collect();
                let want = assign(&claims);
                let mut now = HashMap::new();
                for ((ident, _, r), want) in live.iter().zip(&want) {
                    assert_eq!(
                        names.path(r),
                        Some(want.as_str()),
                        "seed {seed} step {step}: {ident:?}"
                    );
                    let moved = added.contains(r) || last.get(r) != Some(want);
                    assert_eq!(
                        changed.contains(r),
                        moved,
                        "seed {seed} step {step}: {ident:?} reported wrongly"
                    );
                    now.insert(r.clone(), want.clone());
                }
                assert_eq!(names.len(), live.len());
                last = now;
            }
        }
    }

    /// The input of issue 13: many containers of one user with one name. Adding one more
    /// places a handful, not all of them.
    #[test]
    fn one_more_duplicate_moves_only_what_it_displaces() {
        let mut names = Names::default();
        let mk = |n: i64| {
            let mut i = Identity::new(Runtime::PodmanRootless, format!("{n:012x}ab"), "x");
            i.scope = "mallory".into();
            i.created = n;
            i
        };
        for n in 0..2000 {
            names.add(&mk(n), false);
        }
        assert_eq!(names.settle().len(), 2000);
        // The newest takes `x@mallory`; the one that held it moves to its `~id12`.
        let r = names.add(&mk(5000), false);
        let moved = names.settle();
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert_eq!(names.path(&r), Some("x@mallory"));
        names.remove(&r);
        assert_eq!(
            names.settle().len(),
            1,
            "the one before takes its name back"
        );
    }
}
