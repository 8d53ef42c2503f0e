//! A job's write pace: a user who shares a link with other work caps what a repair writes.

use std::time::{Duration, Instant};

/// Keeps a run's write rate, over all its tasks, under a limit by sleeping when ahead of it.
pub(crate) struct Pacer {
    limit: Option<u64>,
    start: Instant,
    bytes: std::sync::atomic::AtomicU64,
}

impl Pacer {
    /// A pacer for `limit` bytes a second (none: as fast as the providers take it).
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Pacer { limit: limit.filter(|l| *l > 0), start: Instant::now(), bytes: Default::default() }
    }

    /// Counts `bytes` written, and waits while the run is ahead of its limit.
    pub(crate) async fn wrote(&self, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
        if let Some(limit) = self.limit {
            let due = Duration::from_secs_f64(total as f64 / limit as f64);
            if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
                tokio::time::sleep(ahead).await;
            }
        }
    }
}
