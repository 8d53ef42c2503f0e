//! The engine's view of all its providers together: which are slow beside the others, which
//! look terminated, and each one's health as reports show it. (One provider's own counters live
//! in the provider crate; what "slow" means needs the others.)

use std::time::Duration;

use outlast_provider::{HealthState, HealthStats, Provider};
use serde::Serialize;

use crate::error::EngineError;
use crate::store::Store;

/// A provider counts as slow when its read p95 (or its median write step) exceeds both this
/// and [`SLOW_FACTOR`] times the median of all providers' p95 (median write step).
const SLOW_FLOOR: Duration = Duration::from_millis(50);
const SLOW_FACTOR: u32 = 5;
/// A provider whose recent reads were abandoned (others answered first) more often than this
/// counts as slow too: its true latency is unknown, only that it loses the race.
const SLOW_ABANDON_RATE: f64 = 0.25;
/// ... provided its p95 over those recent reads (abandoned ones count at the time they had
/// waited) is also this many times the providers' median p95.
const SLOW_RACE_GAP: u32 = 2;

/// A provider's reads lag when their recent median is this many times the pace a read could
/// keep without it...
const LAG_FACTOR: u32 = 4;
/// ... and this much above it at least (a local disk's 0.4 ms beside others' 0.1 ms is no lag).
const LAG_MARGIN: Duration = Duration::from_millis(2);

/// For each of a version's holders (their recent median read latency, `None` when unknown or
/// unusable), whether it lags: well behind the `k`-th fastest, the pace a read that needs `k`
/// could keep without it. Short of slow (a state reports show), but enough to ask it after the
/// others, so that a provider 50 times slower than the rest does not set the pace of reads it
/// is not needed for. Compared with the `k`-th fastest rather than a median of all, since the
/// holders a healthy read never asks (parity) keep old figures.
pub(crate) fn lagging(p50s: &[Option<Duration>], k: usize) -> Vec<bool> {
    let mut known: Vec<Duration> = p50s.iter().flatten().copied().collect();
    known.sort_unstable();
    let Some(&pace) = known.get(k.saturating_sub(1)) else { return vec![false; p50s.len()] };
    p50s.iter().map(|p| p.is_some_and(|p50| p50 > pace * LAG_FACTOR && p50 > pace + LAG_MARGIN)).collect()
}

/// For each provider, why it counts as slow beside the others, if it does: a read p95 far
/// above the providers' median p95, or losing most hedge races with a real latency gap too,
/// or a median write step far above the providers' typical one.
fn slow_among(stats: &[HealthStats]) -> Vec<Option<String>> {
    let typical = median(stats.iter().filter_map(|h| h.latency(0.95)).collect());
    let typical_write = median(stats.iter().filter_map(|h| h.write_latency(0.5)).collect());
    stats
        .iter()
        .map(|h| {
            let (p95, typical) = (h.latency(0.95)?, typical?);
            if p95 > SLOW_FLOOR && p95 > typical * SLOW_FACTOR {
                return Some(format!("reads take {p95:?} at p95, the providers' typical p95 is {typical:?}"));
            }
            // Losing races counts only with a real gap behind it: under CPU load every provider
            // loses some, and their latencies rise together.
            let lately = h.race_latency(0.95)?;
            let rate = h.abandon_rate().filter(|r| *r > SLOW_ABANDON_RATE && lately > typical * SLOW_RACE_GAP)?;
            Some(format!("others answered first in {:.0}% of recent reads", rate * 100.0))
        })
        .zip(stats)
        .map(|(by_reads, h)| {
            by_reads.or_else(|| {
                // Writes are judged by their median: every put waits for its slowest step,
                // and one slow step in a window of few should not brand a provider.
                let (median, typical) = (h.write_latency(0.5)?, typical_write?);
                (median > SLOW_FLOOR && median > typical * SLOW_FACTOR)
                    .then(|| format!("writes take {median:?} at the median, the providers' typical median is {typical:?}"))
            })
        })
        .collect()
}

/// Every operation a provider has answered (or failed).
pub(crate) fn operations(h: &HealthStats) -> u64 {
    h.ok + h.transient + h.denied + h.gone + h.other + h.corrupt
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// One provider's health as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    /// Provider name.
    pub name: String,
    /// Its state.
    pub state: HealthState,
    /// Why, when not healthy.
    pub reason: String,
    /// Median latency of recent reads, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of recent reads, in milliseconds.
    pub p95_ms: Option<f64>,
    /// The counters behind it.
    pub stats: HealthStats,
}

impl Store {
    /// Each provider's state as the store sees it now: what its own operations imply, plus
    /// [`HealthState::Slow`] for one whose recent reads are far slower than the others'.
    pub fn health(&self) -> Vec<ProviderHealth> {
        let stats: Vec<HealthStats> = self.providers.iter().map(Provider::health).collect();
        let slow = slow_among(&stats);
        self.providers
            .iter()
            .zip(stats)
            .zip(slow)
            .map(|((p, h), slow)| {
                let mut state = p.state();
                let mut reason = h.reason().or_else(|| p.build_error()).unwrap_or_default();
                if let (HealthState::Healthy, Some(why)) = (state, slow) {
                    state = HealthState::Slow;
                    reason = why;
                }
                let p95 = h.latency(0.95);
                ProviderHealth {
                    name: p.name().to_string(),
                    state,
                    reason,
                    p50_ms: h.latency(0.5).map(|d| d.as_secs_f64() * 1e3),
                    p95_ms: p95.map(|d| d.as_secs_f64() * 1e3),
                    stats: h,
                }
            })
            .collect()
    }

    /// Names of the providers known to be slow now: asked last on reads, given no grace on
    /// writes.
    pub(crate) fn slow_providers(&self) -> Vec<String> {
        self.health().into_iter().filter(|h| h.state == HealthState::Slow).map(|h| h.name).collect()
    }

    /// Providers this process used that now look terminated: the faces turn this into an exit
    /// status, so scripts learn of an ended account even when the work itself succeeded.
    pub fn terminated_providers(&self) -> Vec<ProviderHealth> {
        self.health()
            .into_iter()
            .zip(&self.baseline)
            .filter(|(h, before)| operations(&h.stats) != **before && h.state == HealthState::Terminated)
            .map(|(h, _)| h)
            .collect()
    }

    /// Saves the providers' health observations for the next run (also done on drop),
    /// waiting at most `busy_wait` for another command's write to the index.
    pub async fn save_health(&self, busy_wait: std::time::Duration) -> Result<(), EngineError> {
        let stats: Vec<(String, HealthStats)> = self.providers.iter().map(|p| (p.name().to_string(), p.health())).collect();
        self.index.save_health(&stats, busy_wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider 50 times slower than a local folder lags; one a little slower does not, nor
    /// one whose figures are unknown; and the pace is the k-th fastest, not a median that
    /// stale figures of unread parity holders could raise.
    #[test]
    fn lagging_means_far_behind_the_pace_of_k() {
        let ms = |v: f64| Some(Duration::from_secs_f64(v / 1e3));
        let p50s = [ms(10.2), ms(0.2), ms(0.3), ms(0.25), ms(9.0), ms(12.0)];
        assert_eq!(lagging(&p50s, 3), [true, false, false, false, true, true]);
        // With k = 4 the pace is 9 ms: nobody is 4 times behind it.
        assert_eq!(lagging(&p50s, 4), [false; 6]);
        assert_eq!(lagging(&[ms(0.2), ms(0.9), None], 1), [false, false, false], "under the 2 ms margin");
        assert_eq!(lagging(&[ms(0.2), None, ms(40.0)], 2), [false, false, false], "the pace is the slow one");
        assert_eq!(lagging(&[ms(0.2), None, ms(40.0)], 1), [false, false, true]);
        assert_eq!(lagging(&[None, None], 1), [false, false]);
    }

    fn reads(latency_ms: u32, abandoned_of_32: usize) -> HealthStats {
        let mut h = HealthStats::default();
        h.recent_us.extend(std::iter::repeat_n(latency_ms * 1000, 64));
        h.recent_abandoned.extend((0..32).map(|i| i < abandoned_of_32));
        h
    }

    #[test]
    fn slow_means_far_slower_than_the_others_not_just_losing_races() {
        let fast = || reads(4, 0);
        // Far above the others' p95 (and above the 50 ms floor).
        assert!(slow_among(&[fast(), fast(), fast(), reads(100, 0)])[3].is_some());
        // Losing most races with a real gap behind it (abandoned reads count at their wait).
        assert!(slow_among(&[fast(), fast(), fast(), reads(12, 16)])[3].is_some());
        // Losing races as everyone does under CPU load, at the same latency: not slow.
        assert!(slow_among(&[fast(), fast(), fast(), reads(5, 16)])[3].is_none());
        // Slower, but under the floor and winning its races: not slow.
        assert!(slow_among(&[fast(), fast(), fast(), reads(30, 0)])[3].is_none());
        assert!(slow_among(&[fast(), fast(), fast(), fast()]).iter().all(Option::is_none));
        // Fast for long, losing races lately: the recent reads decide, not the whole window.
        let mut lately = reads(4, 12);
        lately.recent_us.extend(std::iter::repeat_n(50_000, 12));
        assert!(slow_among(&[fast(), fast(), fast(), lately])[3].is_some());
    }

    #[test]
    fn a_provider_slow_only_to_write_is_slow_too() {
        let writes = |ms: &[u64]| {
            let mut h = reads(4, 0);
            for &m in ms.iter().cycle().take(32) {
                h.write_took(Duration::from_millis(m), false);
            }
            h
        };
        let fast = || writes(&[6]);
        assert!(slow_among(&[fast(), fast(), fast(), writes(&[300])])[3].as_deref().is_some_and(|r| r.contains("writes")));
        // One slow step in a few is the median's business, not the provider's.
        assert!(slow_among(&[fast(), fast(), fast(), writes(&[6, 6, 6, 300])])[3].is_none());
        // Everyone slow alike (a loaded machine, a far region): nobody stands out.
        let all = || writes(&[300]);
        assert!(slow_among(&[all(), all(), all(), all()]).iter().all(Option::is_none));
    }
}
