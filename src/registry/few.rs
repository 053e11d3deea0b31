//! [`Few`]: the claims on one name, ordered. Almost every name has one claimant, so one is
//! held inline (no allocation); a name many claim (a user's 20,000 containers called `x`)
//! gets a B-tree, so every operation stays O(log n).

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

/// An ordered map that is usually empty or one entry.
#[derive(Debug, Default)]
pub(super) enum Few<K, V> {
    /// No entry.
    #[default]
    Empty,
    /// Exactly one entry, inline.
    One(K, V),
    /// Two or more.
    Many(BTreeMap<K, V>),
}

impl<K: Ord, V> Few<K, V> {
    /// Sets `k` to `v`; returns the value it had.
    pub(super) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match std::mem::take(self) {
            Few::Empty => {
                *self = Few::One(k, v);
                None
            }
            Few::One(k0, v0) if k0 == k => {
                *self = Few::One(k, v);
                Some(v0)
            }
            Few::One(k0, v0) => {
                *self = Few::Many(BTreeMap::from([(k0, v0), (k, v)]));
                None
            }
            Few::Many(mut m) => {
                let old = m.insert(k, v);
                *self = Few::Many(m);
                old
            }
        }
    }

    /// Removes `k`; returns its value.
    pub(super) fn remove(&mut self, k: &K) -> Option<V> {
        match std::mem::take(self) {
            Few::Empty => None,
            Few::One(k0, v0) if k0 == *k => Some(v0),
            one @ Few::One(..) => {
                *self = one;
                None
            }
            Few::Many(mut m) => {
                let old = m.remove(k);
                *self = if m.len() == 1 {
                    m.pop_first()
                        .map_or(Few::Empty, |(k1, v1)| Few::One(k1, v1))
                } else {
                    Few::Many(m)
                };
                old
            }
        }
    }

    /// The least entry.
    pub(super) fn first(&self) -> Option<(&K, &V)> {
        match self {
            Few::Empty => None,
            Few::One(k, v) => Some((k, v)),
            Few::Many(m) => m.first_key_value(),
        }
    }

    /// True without entries.
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Few::Empty)
    }

    /// The entries after `k`, in order.
    pub(super) fn after<'a>(&'a self, k: &'a K) -> impl Iterator<Item = (&'a K, &'a V)> + 'a {
        let one = match self {
            Few::One(k0, v0) if k0 > k => Some((k0, v0)),
            _ => None,
        };
        let many = match self {
            Few::Many(m) => Some(m.range((Excluded(k), Unbounded))),
            _ => None,
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut f = Few::default();
        assert!(f.is_empty() && f.first().is_none());
        assert_eq!(f.insert(5, 'a'), None);
        assert!(matches!(f, Few::One(5, 'a')));
        assert_eq!(f.insert(5, 'b'), Some('a'));
        assert_eq!(f.insert(3, 'c'), None);
        assert_eq!(f.insert(9, 'd'), None);
        assert_eq!(f.first(), Some((&3, &'c')));
        let after: Vec<i32> = f.after(&3).map(|(k, _)| *k).collect();
        assert_eq!(after, [5, 9]);
        assert_eq!(f.remove(&3), Some('c'));
        assert_eq!(f.remove(&3), None);
        assert_eq!(f.remove(&9), Some('d'));
        assert!(matches!(f, Few::One(5, 'b')), "back inline");
        assert_eq!(f.after(&4).count(), 1);
        assert_eq!(f.after(&5).count(), 0);
        assert_eq!(f.remove(&5), Some('b'));
        assert!(f.is_empty());
    }
}
