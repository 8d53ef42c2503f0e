//! What Outlast has seen of one provider: outcomes and latencies of its operations, and the
//! state they add up to. A provider can end an account without notice, so the signs are read
//! from ordinary traffic, never asked of the provider.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorClass;

/// Refusals or vanished blobs in a row, with no success between, that mark an account ended.
pub const TERMINATED_AFTER: u32 = 3;
/// Failed operations in a row (each already retried) that mark a provider unreachable.
pub const UNREACHABLE_AFTER: u32 = 3;
/// Latencies kept for the percentiles.
const LATENCY_WINDOW: usize = 128;
/// Recent reads whose race outcome is kept, and the fewest that give an abandon rate.
const RACE_WINDOW: usize = 32;
const RACE_MIN: usize = 8;

/// A provider's state as the engine acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Answering normally.
    Healthy,
    /// Answering, but much slower than the others (set by the engine, which sees them all).
    Slow,
    /// Not answering: timeouts, connection failures, 5xx.
    Unreachable,
    /// The account looks ended: every call refused (401/403), or the bucket or the blobs it
    /// held are gone. Its shards must be rebuilt elsewhere.
    Terminated,
}

impl HealthState {
    /// Lower case, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Slow => "slow",
            HealthState::Unreachable => "unreachable",
            HealthState::Terminated => "terminated",
        }
    }

    /// Whether shards there can be counted on now.
    pub fn is_usable(self) -> bool {
        matches!(self, HealthState::Healthy | HealthState::Slow)
    }
}

/// Counters and recent latencies of one provider; persisted by the engine between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthStats {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed, by class.
    pub transient: u64,
    /// Refused operations (401/403).
    pub denied: u64,
    /// Blobs the store knows it wrote that the provider says do not exist, and writes refused
    /// because the bucket or container is gone.
    pub gone: u64,
    /// Other failures.
    pub other: u64,
    /// Shards the provider returned that failed their check or authentication.
    pub corrupt: u64,
    /// Refusals since the last success.
    pub denied_in_a_row: u32,
    /// Vanished blobs since a known blob was last read back.
    pub gone_in_a_row: u32,
    /// Transient failures since the last success.
    pub failed_in_a_row: u32,
    /// The last error seen, for reports.
    pub last_error: Option<String>,
    /// Latencies of recent successful operations, in microseconds, oldest first.
    pub recent_us: VecDeque<u32>,
    /// For recent reads, oldest first: whether it was abandoned unanswered because other
    /// providers answered first.
    #[serde(default)]
    pub recent_abandoned: VecDeque<bool>,
    /// How long recent write steps (open, write, close, manifest) took to answer, in
    /// microseconds, oldest first; a step given up on counts at the time it had waited.
    /// Reads alone would not show a provider that is slow only to write (throttled uploads).
    #[serde(default)]
    pub recent_write_us: VecDeque<u32>,
}

impl HealthStats {
    /// Records an operation's outcome; `latency` is sampled for reads only, so the
    /// percentiles compare like with like (what a hedged read waits for).
    pub fn record(&mut self, latency: Option<Duration>, outcome: Result<(), (ErrorClass, String)>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.denied_in_a_row = 0;
                self.failed_in_a_row = 0;
                if let Some(elapsed) = latency {
                    if self.recent_us.len() == LATENCY_WINDOW {
                        self.recent_us.pop_front();
                    }
                    self.recent_us.push_back(elapsed.as_micros().min(u32::MAX as u128) as u32);
                    self.race(false);
                }
            }
            Err((class, message)) => {
                match class {
                    ErrorClass::Denied => {
                        self.denied += 1;
                        self.denied_in_a_row += 1;
                    }
                    ErrorClass::Transient => {
                        self.transient += 1;
                        self.failed_in_a_row += 1;
                    }
                    ErrorClass::Gone => {
                        self.gone += 1;
                        self.gone_in_a_row += 1;
                    }
                    // A missing blob is an answer: the provider is up and the account works.
                    // The engine reports blobs it knew to exist with `known_blob`.
                    ErrorClass::NotFound => {
                        self.denied_in_a_row = 0;
                        self.failed_in_a_row = 0;
                    }
                    ErrorClass::Permanent => self.other += 1,
                }
                self.last_error = Some(message);
            }
        }
    }

    /// Records a read that was abandoned unanswered after `elapsed` (a hedged request whose
    /// answer was no longer needed): its latency was at least that. Without these, a slow
    /// provider that is always hedged around would keep looking fast.
    pub fn unanswered_after(&mut self, elapsed: Duration) {
        if self.recent_us.len() == LATENCY_WINDOW {
            self.recent_us.pop_front();
        }
        self.recent_us.push_back(elapsed.as_micros().min(u32::MAX as u128) as u32);
        self.race(true);
    }

    /// Records how long a write step took to answer, or, with `gave_up`, how long it had waited
    /// when the writer stopped waiting (it took at least that). Such a lower bound is kept only
    /// when it says something: below the provider's recent median it would make a slow provider
    /// that is no longer waited for look fast again.
    pub fn write_took(&mut self, elapsed: Duration, gave_up: bool) {
        if gave_up && self.write_latency(0.5).is_some_and(|median| elapsed < median) {
            return;
        }
        if self.recent_write_us.len() == RACE_WINDOW {
            self.recent_write_us.pop_front();
        }
        self.recent_write_us.push_back(elapsed.as_micros().min(u32::MAX as u128) as u32);
    }

    /// The `q` quantile of recent write steps, once there are enough of them to tell.
    pub fn write_latency(&self, q: f64) -> Option<Duration> {
        if self.recent_write_us.len() < RACE_MIN {
            return None;
        }
        quantile(self.recent_write_us.iter().copied().collect(), q)
    }

    fn race(&mut self, abandoned: bool) {
        if self.recent_abandoned.len() == RACE_WINDOW {
            self.recent_abandoned.pop_front();
        }
        self.recent_abandoned.push_back(abandoned);
    }

    /// The share of recent reads abandoned because others answered first, once there are
    /// enough of them to tell.
    pub fn abandon_rate(&self) -> Option<f64> {
        (self.recent_abandoned.len() >= RACE_MIN)
            .then(|| self.recent_abandoned.iter().filter(|a| **a).count() as f64 / self.recent_abandoned.len() as f64)
    }

    /// Records whether a blob the store knows it wrote was there when read.
    pub fn known_blob(&mut self, present: bool) {
        if present {
            self.gone_in_a_row = 0;
        } else {
            self.gone += 1;
            self.gone_in_a_row += 1;
        }
    }

    /// The state these observations alone imply (the engine may add [`HealthState::Slow`]).
    pub fn state(&self) -> HealthState {
        if self.denied_in_a_row >= TERMINATED_AFTER || self.gone_in_a_row >= TERMINATED_AFTER {
            HealthState::Terminated
        } else if self.failed_in_a_row >= UNREACHABLE_AFTER {
            HealthState::Unreachable
        } else {
            HealthState::Healthy
        }
    }

    /// Why [`Self::state`] says what it says, in a few words.
    pub fn reason(&self) -> Option<String> {
        let last = self.last_error.as_deref().unwrap_or("no error recorded");
        if self.denied_in_a_row >= TERMINATED_AFTER {
            Some(format!("{} calls in a row refused (last: {last})", self.denied_in_a_row))
        } else if self.gone_in_a_row >= TERMINATED_AFTER {
            Some(format!(
                "{} blobs it held are gone, as after a deleted bucket or an ended account (last: {last})",
                self.gone_in_a_row
            ))
        } else if self.failed_in_a_row >= UNREACHABLE_AFTER {
            Some(format!("{} calls in a row failed (last: {last})", self.failed_in_a_row))
        } else {
            None
        }
    }

    /// The `q` quantile (0..=1) of recent latencies.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        self.latency_of_last(q, LATENCY_WINDOW)
    }

    /// The `q` quantile of the latencies of the last reads that raced (as many as the race
    /// window holds): what the provider has been like lately, not over the whole window.
    pub fn race_latency(&self, q: f64) -> Option<Duration> {
        self.latency_of_last(q, RACE_WINDOW)
    }

    fn latency_of_last(&self, q: f64, last: usize) -> Option<Duration> {
        let skip = self.recent_us.len().saturating_sub(last);
        quantile(self.recent_us.iter().skip(skip).copied().collect(), q)
    }
}

/// The `q` quantile (0..=1) of latencies in microseconds; `None` when there are none.
fn quantile(mut us: Vec<u32>, q: f64) -> Option<Duration> {
    if us.is_empty() {
        return None;
    }
    us.sort_unstable();
    let i = ((us.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(Duration::from_micros(us[i] as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(class: ErrorClass) -> Result<(), (ErrorClass, String)> {
        Err((class, format!("{class:?}")))
    }

    #[test]
    fn refusals_in_a_row_terminate_and_a_success_clears_them() {
        let mut h = HealthStats::default();
        let ms = Duration::from_millis(1);
        for _ in 0..TERMINATED_AFTER - 1 {
            h.record(Some(ms), err(ErrorClass::Denied));
        }
        assert_eq!(h.state(), HealthState::Healthy);
        h.record(Some(ms), Ok(()));
        h.record(Some(ms), err(ErrorClass::Denied));
        assert_eq!(h.state(), HealthState::Healthy, "a success in between resets the run");
        for _ in 0..TERMINATED_AFTER {
            h.record(Some(ms), err(ErrorClass::Denied));
        }
        assert_eq!(h.state(), HealthState::Terminated);
        assert!(h.reason().unwrap().contains("refused"));
    }

    #[test]
    fn vanished_blobs_terminate_even_while_writes_succeed() {
        // A local folder that was deleted: writes recreate it, but what it held is gone.
        let mut h = HealthStats::default();
        for _ in 0..TERMINATED_AFTER {
            h.record(Some(Duration::from_millis(1)), Ok(()));
            h.known_blob(false);
        }
        assert_eq!(h.state(), HealthState::Terminated);
        h.known_blob(true);
        assert_eq!(h.state(), HealthState::Healthy);
    }

    #[test]
    fn transient_failures_make_it_unreachable_and_missing_blobs_do_not() {
        let mut h = HealthStats::default();
        for _ in 0..10 {
            h.record(Some(Duration::from_millis(1)), err(ErrorClass::NotFound));
        }
        assert_eq!(h.state(), HealthState::Healthy);
        for _ in 0..UNREACHABLE_AFTER {
            h.record(None, err(ErrorClass::Transient));
        }
        assert_eq!(h.state(), HealthState::Unreachable);
    }

    #[test]
    fn write_latency_needs_a_few_steps_and_ignores_uninformative_lower_bounds() {
        let mut h = HealthStats::default();
        for _ in 0..RACE_MIN - 1 {
            h.write_took(Duration::from_millis(300), false);
        }
        assert_eq!(h.write_latency(0.5), None);
        h.write_took(Duration::from_millis(300), false);
        assert_eq!(h.write_latency(0.5), Some(Duration::from_millis(300)));
        // Given up on at 5 ms (others were done): it took at least 5 ms, which says nothing.
        for _ in 0..RACE_WINDOW {
            h.write_took(Duration::from_millis(5), true);
        }
        assert_eq!(h.write_latency(0.5), Some(Duration::from_millis(300)));
        // Real answers decide: a provider that got fast again looks fast again.
        for _ in 0..RACE_WINDOW {
            h.write_took(Duration::from_millis(4), false);
        }
        assert_eq!(h.write_latency(0.5), Some(Duration::from_millis(4)));
    }

    #[test]
    fn latency_quantiles_come_from_the_recent_window() {
        let mut h = HealthStats::default();
        for ms in 1..=200u64 {
            h.record(Some(Duration::from_millis(ms)), Ok(()));
        }
        assert_eq!(h.recent_us.len(), LATENCY_WINDOW);
        assert_eq!(h.latency(0.0), Some(Duration::from_millis(73)));
        assert_eq!(h.latency(1.0), Some(Duration::from_millis(200)));
    }
}
