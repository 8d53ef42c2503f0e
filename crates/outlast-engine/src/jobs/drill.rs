//! The exit drill: "what if these providers vanished now?", answered by reading every object
//! through the ordinary read path with them left out, changing nothing. It reports what would
//! be lost or left one failure from loss, the redundancy left, and what moving off them would
//! cost.

use std::collections::HashSet;
use std::time::Instant;

use outlast_codec::{names, ManifestBody};
use serde::Serialize;

use super::kit::context::JobContext;
use crate::error::EngineError;
use crate::get::NullSink;
use crate::jobs::status::Phase;
use crate::progress::Progress;
use crate::shards::ReadScope;
use crate::store::Store;

/// What the drill found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DrillReport {
    /// The providers left out.
    pub without: Vec<String>,
    /// Objects read.
    pub objects: u64,
    /// Objects read back intact without them.
    pub readable: u64,
    /// Objects that could not be read without them: they would be lost.
    pub lost: Vec<String>,
    /// Objects the drill could not check, with why (a provider error other than too few
    /// shards, say): neither proven readable nor lost. The drill carries on past them.
    pub unchecked: Vec<String>,
    /// Objects readable, but with no shard to spare in some part: one more loss and they go.
    pub at_risk: Vec<String>,
    /// The fewest spare shards any readable object keeps (shards beyond `k`).
    pub min_redundancy_left: Option<u64>,
    /// Plaintext bytes read and verified.
    pub bytes_verified: u64,
    /// Bytes fetched from the remaining providers.
    pub bytes_read: u64,
    /// Seconds the drill took.
    pub seconds: f64,
    /// What an evacuation of the named providers would move.
    pub evacuation: Evacuation,
    /// The caller asked the drill to stop: it covers the objects read before (`objects`).
    pub stopped: bool,
}

/// What moving every shard off the named providers would cost.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Evacuation {
    /// Blobs they hold (shards and manifests).
    pub blobs: u64,
    /// Bytes they hold: what a copy moves while they still answer.
    pub bytes: u64,
    /// Bytes to read from the others to rebuild them once they are gone (`k` per byte).
    pub rebuild_read_bytes: u64,
    /// Seconds a rebuild would take at the read rate this drill measured.
    pub estimated_rebuild_seconds: Option<f64>,
}

impl Store {
    /// Reads every object without `without`, changing nothing, and reports what would survive.
    /// (What the reads observe of the remaining providers' health is kept, as for any read.)
    pub async fn drill(&self, without: &[String], progress: &dyn Progress) -> Result<DrillReport, EngineError> {
        for name in without {
            if self.provider(name).is_none() {
                return Err(EngineError::UnknownProvider(name.clone()));
            }
        }
        let cx = JobContext::start("drill", progress, None);
        let report = self.drill_run(without, &cx).await;
        cx.finish();
        report
    }

    async fn drill_run(&self, without: &[String], cx: &JobContext<'_>) -> Result<DrillReport, EngineError> {
        let progress = &cx.job;
        let started = Instant::now();
        let scope = ReadScope { left_out: without.iter().cloned().collect(), read_only: true };
        progress.set_total(self.index.total_size().await?);
        let mut report = DrillReport { without: without.to_vec(), ..Default::default() };
        let mut k_max = 1u64;
        progress.phase(Phase::Working);
        let mut pages = self.index.object_pages("");
        'pages: while let Some(page) = pages.next_page().await? {
            for entry in page {
                if progress.stop_requested() {
                    report.stopped = true;
                    break 'pages;
                }
                report.objects += 1;
                let manifest = match self.open_manifest(&entry) {
                    Ok(m) => m,
                    Err(e) => {
                        report.unchecked.push(format!("{}: {e}", entry.name));
                        continue;
                    }
                };
                let ManifestBody::Object(om) = &manifest.body else { continue };
                k_max = k_max.max(om.k as u64);
                let spare = self.spare_shards(&entry.stamp.vid, om, &scope.left_out).await?;
                match crate::get::get(self, &entry.name, None, &mut NullSink, progress, &scope).await {
                    Ok(got) => {
                        report.readable += 1;
                        report.bytes_verified += got.bytes;
                        report.bytes_read += got.fetched;
                        report.min_redundancy_left = Some(report.min_redundancy_left.map_or(spare, |m| m.min(spare)));
                        if spare == 0 {
                            report.at_risk.push(entry.name.clone());
                        }
                    }
                    Err(EngineError::Unreadable { .. }) => report.lost.push(entry.name.clone()),
                    Err(e) => report.unchecked.push(format!("{}: {e}", entry.name)),
                }
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        for name in without {
            let on = self.index.count_blobs_on(name).await?;
            report.evacuation.blobs += on.blobs;
            report.evacuation.bytes += on.bytes;
        }
        report.evacuation.rebuild_read_bytes = report.evacuation.bytes * k_max;
        if report.bytes_read > 0 && report.seconds > 0.0 {
            let rate = report.bytes_read as f64 / report.seconds;
            report.evacuation.estimated_rebuild_seconds = Some(report.evacuation.rebuild_read_bytes as f64 / rate);
        }
        if !report.lost.is_empty() {
            tracing::error!("without {}: {} objects would be lost", without.join(", "), report.lost.len());
        }
        Ok(report)
    }

    /// The fewest shards beyond `k` that any part of this version keeps without `left_out`,
    /// counting only shards the index records as stored on a usable provider.
    async fn spare_shards(
        &self,
        vid: &outlast_codec::VersionId,
        om: &outlast_codec::ObjectManifest,
        left_out: &HashSet<String>,
    ) -> Result<u64, EngineError> {
        let layout = om.layout()?;
        let recorded = self.index.recorded_of(vid).await?;
        let mut fewest = u64::MAX;
        for part in 0..layout.part_count() {
            let have = om
                .placement
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    !left_out.contains(&p.provider)
                        && self.provider(&p.provider).is_some_and(|p| p.state().is_usable())
                        && recorded.has(&p.provider, &names::shard_blob(&self.keys, vid, *i as u16, part))
                })
                .count() as u64;
            fewest = fewest.min(have.saturating_sub(om.k as u64));
        }
        Ok(if fewest == u64::MAX { 0 } else { fewest })
    }
}
