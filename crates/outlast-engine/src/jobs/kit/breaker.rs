//! A per-run circuit breaker for maintenance work (repair, evacuation, tombstone copies, scrub): a
//! provider that fails several operations in a row is not asked again until the next run, so
//! a dead or hanging provider costs its timeouts a few times per run rather than once per blob.
//! It is deliberately not the persisted health state: a provider that was terminated last week
//! and is back (a recreated bucket) must get its shards back on the next repair.
//!
//! Until a provider has answered once in the run, its operations go one at a time
//! ([`Breaker::admit`]): with many objects in flight, a provider that refuses everything would
//! otherwise be asked once per object in flight before the first refusal is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::jobs::status::{JobError, JobErrorKind};

/// Failures in a row after which a provider is left alone for the rest of the run.
pub(crate) const GIVE_UP_AFTER: u32 = 3;

/// Each provider's run so far.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    providers: Mutex<HashMap<String, ProviderRun>>,
}

#[derive(Debug, Default)]
struct ProviderRun {
    /// Failures in a row.
    failures: u32,
    /// Whether an operation succeeded in this run.
    answered: bool,
    /// Held by the one operation let through while the provider has not answered.
    probe: Arc<tokio::sync::Mutex<()>>,
}

/// Leave to ask a provider, held until the operation's outcome is recorded.
pub(crate) struct Admission {
    _probe: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Breaker {
    /// Whether `provider` may still be asked in this run.
    pub(crate) fn allows(&self, provider: &str) -> bool {
        self.providers.lock().expect("breaker lock").get(provider).is_none_or(|r| r.failures < GIVE_UP_AFTER)
    }

    /// Leave to ask `provider` now, or `None` once it is left alone: at once where it has
    /// answered in this run, else after the operation let through before this one is over.
    pub(crate) async fn admit(&self, provider: &str) -> Option<Admission> {
        let probe = {
            let mut providers = self.providers.lock().expect("breaker lock");
            let run = providers.entry(provider.to_string()).or_default();
            if run.failures >= GIVE_UP_AFTER {
                return None;
            }
            if run.answered {
                return Some(Admission { _probe: None });
            }
            run.probe.clone()
        };
        let held = probe.lock_owned().await;
        let providers = self.providers.lock().expect("breaker lock");
        let run = &providers[provider];
        if run.failures >= GIVE_UP_AFTER {
            return None;
        }
        Some(Admission { _probe: (!run.answered).then_some(held) })
    }

    /// Records an operation's outcome on `provider`; returns true when this failure is the one
    /// that makes the breaker give up on it (so the caller can say so once).
    pub(crate) fn record(&self, provider: &str, ok: bool) -> bool {
        let mut providers = self.providers.lock().expect("breaker lock");
        let run = providers.entry(provider.to_string()).or_default();
        if ok {
            run.failures = 0;
            run.answered = true;
            return false;
        }
        run.failures += 1;
        run.failures == GIVE_UP_AFTER
    }

    /// Why `provider` is skipped, for reports.
    pub(crate) fn skipped(provider: &str) -> JobError {
        JobError::provider(
            provider,
            JobErrorKind::LeftAlone,
            format!("`{provider}` failed {GIVE_UP_AFTER} operations in a row; left alone for the rest of this run"),
        )
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

    #[tokio::test]
    async fn a_provider_that_has_not_answered_is_asked_one_operation_at_a_time() {
        let b = Breaker::default();
        let first = b.admit("a").await.expect("admitted");
        let waiting = b.admit("a");
        let mut waiting = std::pin::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending(), "a second operation waits for the first");
        b.record("a", false);
        drop(first);
        let second = waiting.await.expect("one failure does not stop it");
        b.record("a", false);
        b.record("a", false);
        drop(second);
        assert!(b.admit("a").await.is_none(), "left alone after three");
        // One that answered lets everything through at once.
        b.record("b", true);
        let (x, y) = (b.admit("b").await, b.admit("b").await);
        assert!(x.is_some() && y.is_some());
    }
}
