//! A set of blob names held as keyed 128-bit hashes: 16 bytes a name instead of the name, so
//! that gc can hold every name a store references in a few bytes an object. A hash that
//! collides makes the set say "present" for a name it does not hold; the sets using it only
//! ever keep a blob for that (never delete one), and with random keys per process at 128 bits
//! no one can aim for a collision.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Blob names, hashed.
pub(crate) struct NameSet {
    keys: (RandomState, RandomState),
    hashes: HashSet<u128>,
}

impl NameSet {
    pub(crate) fn new() -> Self {
        NameSet { keys: (RandomState::new(), RandomState::new()), hashes: HashSet::new() }
    }

    /// `name`'s 128-bit keyed hash (also a compact map key for a name).
    pub(crate) fn hash(&self, name: &str) -> u128 {
        let half = |keys: &RandomState| keys.hash_one(name) as u128;
        (half(&self.keys.0) << 64) | half(&self.keys.1)
    }

    pub(crate) fn insert(&mut self, name: &str) {
        let h = self.hash(name);
        self.hashes.insert(h);
    }

    /// Whether `name` was inserted (or, with odds of about 2^-128 a name, collides with one).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.hashes.contains(&self.hash(name))
    }

    pub(crate) fn extend<S: AsRef<str>>(&mut self, names: impl IntoIterator<Item = S>) {
        for name in names {
            self.insert(name.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NameSet;

    #[test]
    fn holds_what_was_put_in_and_nothing_else() {
        let mut set = NameSet::new();
        let names: Vec<String> = (0..10_000).map(|i| format!("s/{i:032x}")).collect();
        set.extend(&names[..5_000]);
        assert!(names[..5_000].iter().all(|n| set.contains(n)));
        assert!(!names[5_000..].iter().any(|n| set.contains(n)));
    }
}
