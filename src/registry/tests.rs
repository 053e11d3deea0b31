//! The registry as the watchers drive it: names, the tree and the aliases after every kind of
//! change, checked against the naming rules applied from scratch.

use super::*;
use crate::container::Stopped;
use crate::registry::naming::{Claim, assign};

/// Issue 12: the field's documentation said the opposite of what it does.
#[test]
fn running_only_hides_stopped_containers() {
    let reg = Registry::new();
    assert!(
        reg.shows_stopped(),
        "stopped containers are shown by default"
    );
    reg.set_hide_stopped(true);
    assert!(!reg.shows_stopped(), "--running-only hides them");
    reg.set_hide_stopped(false);
    assert!(reg.shows_stopped());
}

#[test]
fn an_empty_registry_shows_the_made_up_directories() {
    let reg = Registry::new();
    let v = reg.view();
    let names: Vec<&str> = v.dirs[&ROOT_INO]
        .children
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, [DIFF_DIR, PID_DIR]);
    assert!(is_virtual(v.pid_dir) && v.pid_dir != ROOT_INO);
}

fn stopped(rt: Runtime, scope: &str, id: &str, name: &str, created: i64) -> Instance {
    let mut ident = Identity::new(rt, id, name);
    ident.scope = scope.into();
    ident.created = created;
    let st = Stopped {
        state: "exited".into(),
        exit_code: Some(0),
        finished_at: String::new(),
    };
    Instance::stopped(ident, st, Storage::Unavailable("test".into()))
}

/// What a container is listed as at the top of `v`, if it is: (name, seq).
fn listed(v: &View) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = v.dirs[&ROOT_INO]
        .children
        .iter()
        .filter_map(|(n, e)| match e {
            VEntry::Container(i) => Some((n.clone(), i.seq)),
            VEntry::Dir(_) => None,
        })
        .collect();
    out.sort();
    out
}

/// Inserts, replacements and removals through the registry's own interface: after each,
/// every container is listed (and under `.diff`) exactly where the naming rules applied
/// from scratch put it, as its current instance, and its id and qualified name lead there.
#[test]
fn every_change_lists_what_the_rules_give() {
    let reg = Registry::new();
    let rts = [Runtime::Docker, Runtime::Podman, Runtime::PodmanRootless];
    let names = ["web", "db", "docker", "web@docker"];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..400 {
        let rt = rts[rnd(3) as usize];
        let scope = if rt == Runtime::PodmanRootless {
            ["alice", "docker"][rnd(2) as usize]
        } else {
            ""
        };
        let id = format!("{:x}{}", rnd(6) + 10, "0".repeat(13));
        let name = names[rnd(4) as usize];
        if rnd(4) == 0 {
            reg.remove(&Identity::key(rt, scope, &id), "test");
        } else {
            reg.insert(stopped(rt, scope, &id, name, rnd(3) as i64));
        }
        let st = reg.lock();
        let mut live: Vec<&Entry> = st.entries.values().collect();
        live.sort_by_key(|e| e.reg);
        let claims: Vec<Claim<'_>> = live
            .iter()
            .map(|e| Claim {
                ident: &e.inst.ident,
                has_process: false,
            })
            .collect();
        let want = assign(&claims);
        let v = reg.view();
        let mut expect: Vec<(String, u64)> = live
            .iter()
            .zip(&want)
            .map(|(e, p)| {
                assert_eq!(e.inst.path(), p, "step {step}");
                assert!(e.inst.is_current(), "step {step}: {p} retired");
                (p.clone(), e.inst.seq)
            })
            .collect();
        expect.sort();
        assert_eq!(listed(&v), expect, "step {step}");
        let diff_dir = match v.dirs[&ROOT_INO].children[DIFF_DIR] {
            VEntry::Dir(ino) => ino,
            VEntry::Container(_) => panic!(".diff is no directory"),
        };
        assert_eq!(v.dirs[&diff_dir].children.len(), live.len(), "step {step}");
        assert_eq!(v.links.len(), live.len(), "step {step}");
        for e in &live {
            let link = v.alias(&e.inst.ident.id).expect("the id resolves");
            // Ids here are unique per runtime and scope only: the best-ranked keeps it.
            let best = live
                .iter()
                .filter(|o| o.inst.ident.id == e.inst.ident.id)
                .min_by_key(|o| (o.inst.ident.runtime, o.reg))
                .expect("itself");
            assert_eq!(v.links[&link], best.inst.path(), "step {step}");
        }
        let dockers = live
            .iter()
            .filter(|e| e.inst.ident.runtime == Runtime::Docker)
            .count();
        drop(st);
        assert_eq!(reg.count(Runtime::Docker, ""), dockers, "step {step}");
    }
}
