//! The naming rules (README, "Naming", is the specification), as pure functions of what the
//! runtimes say: no I/O, no registry state, so the whole table is tested below.
//!
//! Containers are ordered by runtime priority ([`crate::container::Runtime`]), running before stopped, newest
//! first, then by scope and id; each takes the first free name of its [`candidates`]:
//!
//! - Kubernetes containers: `k8s/<namespace>/<pod>/<container>`, then that with `~<id12>`.
//! - others: the bare name (runtimes whose [`crate::container::Runtime::bare_names`] allows it), then
//!   `<name>@<qualifier>` ([`crate::container::Runtime::qualifier`]), then that with `~<id12>`.
//!
//! The qualified name and the full id (or any unique id prefix) of every container also resolve
//! at the top level, as symlinks to where it is listed.

use std::collections::HashSet;

use crate::container::{Identity, short_id};

use super::{DIFF_DIR, K8S_DIR, PID_DIR};

/// Why `name` cannot be a directory name under the mount root, if it cannot.
pub fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not a usable directory name")
    } else if name.contains('/') || name.contains('\0') {
        Some("contains '/' or NUL")
    } else if name.chars().any(char::is_control) {
        // A newline or an escape sequence in a name would reach every listing and log line.
        Some("contains control characters")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

/// Where in Kubernetes the container is, if its runtime may say so: never for a user's
/// rootless endpoint, whose labels are the user's to choose (`k8s/...` is never theirs).
fn kube(ident: &Identity) -> Option<&crate::container::PodRef> {
    ident
        .k8s
        .as_ref()
        .filter(|_| ident.runtime != crate::container::Runtime::PodmanRootless)
}

/// `<name>@<qualifier>`, for containers that are not Kubernetes containers and whose runtime
/// has qualified names.
pub fn qualified(ident: &Identity) -> Option<String> {
    if kube(ident).is_some() {
        return None;
    }
    let q = ident.runtime.qualifier(&ident.scope)?;
    Some(format!("{}@{q}", ident.name))
}

/// The names a container may be shown under, best first. Each component is a valid name.
pub fn candidates(ident: &Identity) -> Vec<String> {
    let id12 = short_id(&ident.id).replace(['/', '\0'], "_");
    let mut out = Vec::new();
    if let Some(k) = kube(ident) {
        let comps = [&k.namespace, &k.pod, &k.container];
        if comps.iter().all(|c| invalid_name(c).is_none()) {
            let p = format!("{K8S_DIR}/{}/{}/{}", k.namespace, k.pod, k.container);
            out.push(p.clone());
            out.push(format!("{p}~{id12}"));
        }
    } else {
        if ident.runtime.bare_names(&ident.scope) {
            out.push(ident.name.clone());
        }
        match qualified(ident) {
            Some(q) => {
                out.push(q.clone());
                out.push(format!("{q}~{id12}"));
            }
            None => out.push(format!("{}~{id12}", ident.name)),
        }
    }
    out.retain(|p| p.split('/').all(|c| invalid_name(c).is_none()));
    out
}

/// The names no container is listed under: they are the made-up directories.
pub fn is_reserved(name: &str) -> bool {
    [PID_DIR, K8S_DIR, DIFF_DIR].contains(&name)
}

/// Where a container goes when every candidate is taken: `<runtime>~<id>` (not checked
/// against the others: two scopes of one runtime may report one id).
pub fn fallback(ident: &Identity) -> String {
    format!("{}~{}", ident.runtime.as_str(), ident.id)
}

/// One container as naming sees it: who it is, and whether it runs (running containers come
/// before stopped ones of the same runtime).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Who the runtime says it is.
    pub ident: &'a Identity,
    /// True for a view of a process (a running container).
    pub has_process: bool,
}

/// The path of every container, in the order given: by priority, each takes its first
/// candidate not taken by a container before it (its path or qualified name) nor reserved
/// (`.pid`, `.diff`, `k8s`); a
/// container with no free candidate gets `<runtime>~<id>`. The specification of
/// [`super::claims::Names`], which keeps the same answer one change at a time.
pub fn assign(claims: &[Claim<'_>]) -> Vec<String> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    // Running before stopped: a restarted Kubernetes container takes the plain path, its
    // exited predecessor the `~id` one.
    order.sort_by_cached_key(|&i| {
        let c = &claims[i];
        let d = c.ident;
        (
            d.runtime,
            !c.has_process,
            std::cmp::Reverse(d.created),
            d.scope.clone(),
            d.id.clone(),
        )
    });
    let mut taken: HashSet<String> = HashSet::new();
    let mut paths = vec![String::new(); claims.len()];
    for i in order {
        let ident = claims[i].ident;
        let path = candidates(ident)
            .into_iter()
            .find(|p| !is_reserved(p) && !taken.contains(p))
            .unwrap_or_else(|| fallback(ident));
        taken.insert(path.clone());
        // Its qualified name resolves to it (an alias) even where it is listed elsewhere: a
        // lower-ranked container (a user named "docker") must not be listed under it.
        if let Some(q) = qualified(ident) {
            taken.insert(q);
        }
        paths[i] = path;
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{PodRef, Runtime};

    fn ident(rt: Runtime, scope: &str, id: &str, name: &str) -> Identity {
        let mut i = Identity::new(rt, id, name);
        i.scope = scope.into();
        i
    }

    fn k8s(scope: &str, id: &str, created: i64, ns: &str, pod: &str, c: &str) -> Identity {
        let mut i = ident(Runtime::Containerd, scope, id, id);
        i.created = created;
        i.k8s = Some(PodRef {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
        });
        i
    }

    /// README, "Naming": the candidates of each kind of container, best first.
    #[test]
    fn candidate_names() {
        let table: Vec<(Identity, &[&str])> = vec![
            (
                ident(Runtime::Docker, "", "3f2a9c0d11aa22bb", "web"),
                &["web", "web@docker", "web@docker~3f2a9c0d11aa"],
            ),
            (
                ident(Runtime::Podman, "", "5511", "web"),
                &["web", "web@podman", "web@podman~5511"],
            ),
            (
                ident(Runtime::PodmanRootless, "alice", "77aa", "web"),
                &["web@alice", "web@alice~77aa"],
            ),
            (
                ident(Runtime::Containerd, "default", "c1", "db"),
                &["db", "db@containerd", "db@containerd~c1"],
            ),
            (
                ident(Runtime::Containerd, "team", "c2", "db"),
                &["db@team", "db@team~c2"],
            ),
            (
                k8s("k8s.io", "c3", 0, "default", "api-7d9", "api"),
                &["k8s/default/api-7d9/api", "k8s/default/api-7d9/api~c3"],
            ),
            (
                ident(Runtime::Static, "", "pid:5", "web"),
                &["web", "web~pid:5"],
            ),
            // A user's endpoint never places a container among the kubelet's.
            (
                {
                    let mut i = k8s("", "r9", 0, "kube-system", "p", "c");
                    i.runtime = Runtime::PodmanRootless;
                    i.scope = "mallory".into();
                    i.name = "x".into();
                    i
                },
                &["x@mallory", "x@mallory~r9"],
            ),
            // A Kubernetes path with an unusable component falls back to nothing at all.
            (k8s("k8s.io", "c4", 0, "default", "..", "api"), &[]),
            // An unusable name: only what is usable is left.
            (
                ident(Runtime::Docker, "", "ab", ".."),
                &["..@docker", "..@docker~ab"],
            ),
        ];
        for (i, want) in table {
            assert_eq!(candidates(&i), want, "{i:?}");
        }
    }

    #[test]
    fn names_that_cannot_be_directories() {
        for (name, bad) in [
            ("web", false),
            ("", true),
            (".", true),
            ("..", true),
            ("...", false),
            ("a/b", true),
            ("a\0b", true),
            ("a\nb", true),
            ("\u{1b}[2Jx", true),
            ("a\u{85}b", true),
            ("a b", false),
            (&"x".repeat(255), false),
            (&"x".repeat(256), true),
        ] {
            assert_eq!(invalid_name(name).is_some(), bad, "{name:?}");
        }
    }

    fn run(claims: &[(Identity, bool)]) -> Vec<String> {
        let c: Vec<Claim<'_>> = claims
            .iter()
            .map(|(ident, has_process)| Claim {
                ident,
                has_process: *has_process,
            })
            .collect();
        assign(&c)
    }

    /// README, "Naming": who wins a name, and where the others go.
    #[test]
    fn assignment() {
        // Docker before Podman before containerd; rootless never takes a bare name.
        let got = run(&[
            (ident(Runtime::Containerd, "default", "c1", "web"), true),
            (ident(Runtime::PodmanRootless, "alice", "r1", "web"), true),
            (ident(Runtime::Podman, "", "p1", "web"), true),
            (ident(Runtime::Docker, "", "d1", "web"), true),
        ]);
        assert_eq!(got, ["web@containerd", "web@alice", "web@podman", "web"]);
        // A static entry outranks every runtime.
        let got = run(&[
            (ident(Runtime::Docker, "", "d1", "web"), true),
            (ident(Runtime::Static, "", "pid:9", "web"), true),
        ]);
        assert_eq!(got, ["web@docker", "web"]);
        // The reserved names are never taken.
        let got = run(&[(ident(Runtime::Docker, "", "d1", ".pid"), true)]);
        assert_eq!(got, [".pid@docker"]);
        // Same Kubernetes path: running before stopped, then the newest; the others get `~id`.
        let got = run(&[
            (k8s("k8s.io", "exited", 5, "ns", "p", "c"), false),
            (k8s("k8s.io", "older", 1, "ns", "p", "c"), true),
            (k8s("k8s.io", "newer", 3, "ns", "p", "c"), true),
        ]);
        assert_eq!(got, ["k8s/ns/p/c~exited", "k8s/ns/p/c~older", "k8s/ns/p/c"]);
        // Two with the same name and qualifier: by id, the second gets `~id12`.
        let got = run(&[
            (ident(Runtime::PodmanRootless, "bob", "b2", "x"), true),
            (ident(Runtime::PodmanRootless, "bob", "b1", "x"), true),
        ]);
        assert_eq!(got, ["x@bob~b2", "x@bob"]);
        // A user named like a runtime never takes that runtime's qualified names.
        let got = run(&[
            (ident(Runtime::PodmanRootless, "docker", "r1", "web"), true),
            (ident(Runtime::Docker, "", "d1", "web"), true),
        ]);
        assert_eq!(got, ["web@docker~r1", "web"]);
        // Nothing usable left: `<runtime>~<id>`.
        let got = run(&[(k8s("k8s.io", "z", 0, "ns", "..", "c"), true)]);
        assert_eq!(got, ["containerd~z"]);
    }
}
