//! A per-run circuit breaker for maintenance work (repair, evacuation, tombstone copies, scrub): a
//! provider that fails several operations in a row is not asked again until the next run, so
//! a dead or hanging provider costs its timeouts a few times per run rather than once per blob.
//! It is deliberately not the persisted health state: a provider that was terminated last week
//! and is back (a recreated bucket) must get its shards back on the next repair.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures in a row after which a provider is left alone for the rest of the run.
pub(crate) const GIVE_UP_AFTER: u32 = 3;

/// Consecutive failures per provider within one run.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failures: Mutex<HashMap<String, u32>>,
}

impl Breaker {
    /// Whether `provider` may still be asked in this run.
    pub(crate) fn allows(&self, provider: &str) -> bool {
        self.failures.lock().expect("breaker lock").get(provider).is_none_or(|f| *f < GIVE_UP_AFTER)
    }

    /// Records an operation's outcome on `provider`; returns true when this failure is the one
    /// that makes the breaker give up on it (so the caller can say so once).
    pub(crate) fn record(&self, provider: &str, ok: bool) -> bool {
        let mut f = self.failures.lock().expect("breaker lock");
        let count = f.entry(provider.to_string()).or_default();
        if ok {
            *count = 0;
            return false;
        }
        *count += 1;
        *count == GIVE_UP_AFTER
    }

    /// Why `provider` is skipped, for reports.
    pub(crate) fn skipped(provider: &str) -> String {
        format!("`{provider}` failed {GIVE_UP_AFTER} operations in a row; left alone for the rest of this run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_failures_in_a_row_only() {
        let b = Breaker::default();
        assert!(!b.record("a", false));
        assert!(!b.record("a", false));
        assert!(!b.record("a", true));
        assert!(b.allows("a"));
        assert!(!b.record("a", false));
        assert!(!b.record("a", false));
        assert!(b.record("a", false));
        assert!(!b.allows("a"));
        assert!(b.allows("b"));
    }
}
