//! Repair in the background, for a process that runs long (a gateway): what its writes left
//! below full redundancy, and whatever else is owed, is rebuilt without anyone scheduling
//! `outlast repair`. A write that leaves debt wakes it (after a short settle, so that a burst
//! is paid in one run); otherwise it runs every so often. While debt remains (a provider still
//! down), runs are spaced out, doubling up to the period, so a flood of writes to a store with
//! a provider gone does not walk the index over and over.

use std::sync::Arc;
use std::time::Duration;

use crate::jobs::repair::RepairOptions;
use crate::progress::NoProgress;
use crate::store::Store;

/// When and how fast a background repair runs.
#[derive(Debug, Clone)]
pub struct BackgroundRepair {
    /// Longest time between runs.
    pub every: Duration,
    /// Wait after a write left debt before the run starts.
    pub settle: Duration,
    /// Most bytes written per second.
    pub limit_rate: Option<u64>,
}

impl Default for BackgroundRepair {
    fn default() -> Self {
        BackgroundRepair { every: Duration::from_secs(3600), settle: Duration::from_secs(10), limit_rate: Some(20 << 20) }
    }
}

impl Store {
    /// Wakes when a write of this process commits with shards or copies owed.
    pub(crate) fn note_debt(&self) {
        self.debt.notify_one();
    }

    /// Repairs in the background until the future is dropped (a gateway aborts it when it
    /// stops; a run cut there leaves what it did, as a stopped repair does).
    pub async fn repair_in_background(self: Arc<Self>, policy: BackgroundRepair) {
        let mut gap = Duration::ZERO;
        loop {
            tokio::select! {
                () = self.debt.notified() => tokio::time::sleep(policy.settle.max(gap)).await,
                () = tokio::time::sleep(policy.every) => {}
            }
            let opts = RepairOptions { limit_rate: policy.limit_rate };
            match self.repair(&opts, &NoProgress).await {
                Ok(r) => {
                    if r.blobs_rebuilt + r.manifests_written + r.tombstones_written > 0 {
                        tracing::info!(
                            "background repair: {} shards, {} manifests and {} deletion records put back; {} shards still owed",
                            r.blobs_rebuilt,
                            r.manifests_written,
                            r.tombstones_written,
                            r.remaining
                        );
                    }
                    gap = if r.remaining == 0 { Duration::ZERO } else { (gap * 2).clamp(policy.settle, policy.every) };
                }
                Err(e) => {
                    tracing::warn!("background repair failed (tried again later): {e}");
                    gap = (gap * 2).clamp(policy.settle, policy.every);
                }
            }
        }
    }
}
