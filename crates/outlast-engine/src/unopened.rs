//! Objects whose index entry holds a manifest that does not open with this store's key (it
//! was sealed under another key, or the index was damaged). A store-wide job names each, skips
//! it and carries on; the command then exits non-zero.

use serde::Serialize;

/// Names kept in a report; the rest are counted (and each was logged as it was met).
const NAMES_KEPT: usize = 20;

/// The objects a job skipped because their manifest does not open.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Unopened {
    /// How many were skipped.
    pub count: u64,
    /// The first of their names.
    pub names: Vec<String>,
}

impl Unopened {
    /// Counts `name` as skipped and says so, with what to do about it.
    pub fn note(&mut self, name: &str, error: &dyn std::fmt::Display) {
        tracing::error!(
            "`{}`: its manifest does not open with this store's key ({error}); skipped. \
             Read it with the key it was written with, or `outlast rm` it",
            crate::display::escaped(name)
        );
        self.count += 1;
        if self.names.len() < NAMES_KEPT {
            self.names.push(name.to_string());
        }
    }

    /// Whether nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
