//! Repair: pays repair debt. A shard blob the index does not record as stored (a put that
//! missed a provider, a blob a read or scrub found lost or damaged) is rebuilt from `k` others
//! and written to its provider; nothing that is present is rewritten. Each rebuilt blob is
//! recorded in the index as soon as it is durable, so a repair killed at any point resumes
//! where it stopped: the next run sees only what is still owed.

use std::collections::HashSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use outlast_codec::{names, Layout, ManifestBody, ObjectManifest, VersionId};
use outlast_provider::{BlobWriter, Provider};
use serde::Serialize;

use super::kit::breaker::Breaker;
use super::kit::context::JobContext;
use super::kit::pacer::Pacer;
use crate::error::EngineError;
use crate::index::{BlobRef, IndexEntry};
use crate::jobs::status::{JobError, JobErrorKind, Phase};
use crate::progress::Progress;
use crate::shards::{runs, ReadScope, ShardReader};
use crate::store::Store;
use crate::unopened::Unopened;

/// Segments rebuilt per round of ranged reads.
const REPAIR_RUN_SEGMENTS: u64 = 4;

/// How a repair may run.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Most bytes written per second (unlimited when `None`).
    pub limit_rate: Option<u64>,
}

/// What a repair did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RepairReport {
    /// Objects examined.
    pub objects: u64,
    /// Objects that owed something.
    pub objects_in_debt: u64,
    /// Shard blobs rebuilt and written.
    pub blobs_rebuilt: u64,
    /// Owed shard blobs found whole and matching their checks where they belong (a provider
    /// that was briefly gone): recorded, not rebuilt.
    pub blobs_found_intact: u64,
    /// Manifest copies written back to shard holders that lacked them.
    pub manifests_written: u64,
    /// Tombstone copies written to providers that lacked them.
    pub tombstones_written: u64,
    /// Bytes written to providers.
    pub bytes_written: u64,
    /// Bytes read from providers to rebuild them.
    pub bytes_read: u64,
    /// Blobs the index recorded that their provider no longer lists (or lists at another
    /// size): found lost by this run's listing, and rebuilt.
    pub blobs_found_lost: u64,
    /// Shard blobs still owed after this run (their provider failed, or too few shards).
    pub remaining: u64,
    /// What went wrong, one each; repair carries on past them.
    pub errors: Vec<JobError>,
    /// Objects skipped because their manifest does not open with this store's key.
    pub unopened: Unopened,
    /// The caller asked the run to stop ([`Progress::stop_requested`]): the objects in flight
    /// were finished, those not reached still owe (not counted in `remaining`), and tombstones
    /// were not looked at. Running repair again goes on.
    pub stopped: bool,
}

impl RepairReport {
    /// Adds what one object's repair did.
    fn absorb(&mut self, o: RepairReport) {
        self.blobs_rebuilt += o.blobs_rebuilt;
        self.blobs_found_intact += o.blobs_found_intact;
        self.manifests_written += o.manifests_written;
        self.tombstones_written += o.tombstones_written;
        self.bytes_written += o.bytes_written;
        self.bytes_read += o.bytes_read;
        self.remaining += o.remaining;
        self.errors.extend(o.errors);
    }
}

/// Objects repaired at once, as long as their buffers fit in [`JOB_BUFFER_BYTES`]: across
/// 20 ms links 16 repaired 120 objects/s against 66 with 8 (survive bench, 600 objects).
const REPAIR_CONCURRENCY: usize = 16;

/// What one object version owes: for each part, the shards to rebuild (a shard holder that
/// lacks the manifest is found afresh when the copies are written).
struct Debt {
    entry: IndexEntry,
    om: ObjectManifest,
    parts: Vec<(u32, Vec<usize>)>,
}

impl Debt {
    fn bytes(&self) -> u64 {
        let layout = self.om.layout().expect("a committed manifest has a valid layout");
        self.parts.iter().map(|(p, shards)| layout.part_blob_len(*p) * shards.len() as u64).sum()
    }

    /// Bytes its repair holds at once: a run of segments' `k` shards read, and those rebuilt.
    fn held_bytes(&self) -> u64 {
        let layout = self.om.layout().expect("a committed manifest has a valid layout");
        let most_owed = self.parts.iter().map(|(_, shards)| shards.len()).max().unwrap_or(0) as u64;
        REPAIR_RUN_SEGMENTS.min(layout.segment_count()) * layout.shard_len(0) as u64 * (layout.k as u64 + most_owed)
    }
}

impl Store {
    /// Rebuilds every shard the index does not record as stored, and puts back manifest copies
    /// that shard holders lack. Safe to interrupt and run again.
    pub async fn repair(&self, opts: &RepairOptions, progress: &dyn Progress) -> Result<RepairReport, EngineError> {
        let cx = JobContext::start("repair", progress, opts.limit_rate);
        let report = self.repair_run(&cx).await;
        cx.finish();
        report
    }

    async fn repair_run(&self, cx: &JobContext<'_>) -> Result<RepairReport, EngineError> {
        let progress = &cx.job;
        let mut report = RepairReport::default();
        progress.phase(Phase::Listing);
        let lost = self.find_lost_blobs().await?;
        report.blobs_found_lost = lost.by_provider.values().sum();
        report.errors.extend(
            lost.unlisted
                .into_iter()
                .map(|(p, e)| JobError::provider(&p, JobErrorKind::Listing, format!("cannot list `{p}`: {e}"))),
        );
        progress.errors(&report.errors);
        progress.phase(Phase::Counting);
        // What is owed, for the progress total: a pass over the index that keeps nothing.
        let mut total = 0;
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            // Asked to stop while counting: nothing has been written yet.
            if progress.stop_requested() {
                report.stopped = true;
                return Ok(report);
            }
            for entry in page {
                report.objects += 1;
                if let Some(d) = self.debt_of(entry, Some(&mut report.unopened)).await? {
                    report.objects_in_debt += 1;
                    total += d.bytes();
                }
            }
        }
        progress.set_total(total);
        progress.phase(Phase::Working);
        let buffers = &cx.buffers;
        // Then the debts as the pages of the index come: what is held is a page of them and
        // the objects in flight, whatever the store. Objects side by side: paying one
        // object's debt is a few round trips (open, write, close, record, manifest copies), so
        // one at a time leaves a distant provider idle.
        let debts = self.index.object_pages("").picked(|entry| self.debt_of(entry, None));
        // Asked to stop: no new object is started; those in flight finish.
        let debts = debts.take_while(|_| std::future::ready(!progress.stop_requested()));
        let repairs = debts
            .map_ok(|debt| async move {
                let _buffers = buffers.hold(debt.held_bytes()).await;
                let mut mine = RepairReport::default();
                let done = self.repair_object(&debt, &mut RepairRun::new(&mut mine, cx), progress).await;
                done.map(|()| mine)
            })
            .try_buffer_unordered(REPAIR_CONCURRENCY);
        let mut repairs = std::pin::pin!(repairs);
        while let Some(mine) = repairs.try_next().await? {
            progress.errors(&mine.errors);
            report.absorb(mine);
        }
        if progress.stop_requested() {
            report.stopped = true;
            return Ok(report);
        }
        progress.phase(Phase::Tombstones);
        let tombstones = self.repair_tombstones(&cx.breaker).await?;
        progress.errors(&tombstones.errors);
        report.tombstones_written += tombstones.written;
        report.bytes_written += tombstones.bytes;
        report.errors.extend(tombstones.errors);
        if report.remaining > 0 {
            let errors: Vec<String> = report.errors.iter().map(JobError::to_string).collect();
            tracing::warn!("{} shard blobs are still owed: {}", report.remaining, errors.join("; "));
        }
        Ok(report)
    }

    /// What `entry`'s version owes, from the index alone (`owed.rs`).
    async fn debt_of(&self, entry: IndexEntry, unopened: Option<&mut Unopened>) -> Result<Option<Debt>, EngineError> {
        let Some(d) = self.object_debt(&entry, unopened).await? else { return Ok(None) };
        Ok(Some(Debt { entry, om: d.om, parts: d.parts }))
    }

    async fn repair_object(&self, debt: &Debt, run: &mut RepairRun<'_>, progress: &dyn Progress) -> Result<(), EngineError> {
        let vid = debt.entry.stamp.vid;
        let name = &debt.entry.name;
        let reader = ShardReader::new(self, name, &debt.om, vid, &ReadScope::default()).await?;
        let layout = *reader.codec.layout();
        for (part, missing) in &debt.parts {
            let part_len = layout.part_blob_len(*part);
            // Open a writer for each lost shard; one that cannot be opened stays owed.
            // (shard, its writer while alive, bytes written to it)
            let mut writers: Vec<(usize, Option<BlobWriter>, u64)> = Vec::new();
            for &i in missing {
                let provider = &debt.om.placement[i].provider;
                let blob = names::shard_blob(&self.keys, &vid, i as u16, *part);
                let Some(p) = self.provider(provider) else {
                    run.report.errors.push(JobError::object(
                        name,
                        Some(provider),
                        JobErrorKind::NotConfigured,
                        format!("provider `{provider}` is not configured"),
                    ));
                    run.report.remaining += 1;
                    continue;
                };
                let Some(_admitted) = run.breaker.admit(provider).await else {
                    run.report.remaining += 1;
                    continue;
                };
                // A provider that was briefly gone may hold the blob after all: one that is
                // there, whole and matching every check is recorded, not rebuilt.
                match self.holds_intact(p, &blob, &debt.om, &layout, i, *part).await {
                    Ok(true) => {
                        let b = BlobRef { provider: provider.clone(), blob: blob.clone(), size: part_len };
                        if self.record_rebuilt(name, &vid, i, &b).await? == Recorded::Yes {
                            run.breaker.record(provider, true);
                            run.report.blobs_found_intact += 1;
                            progress.advance(part_len);
                            continue;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        run.failed(name, provider, e);
                        run.report.remaining += 1;
                        continue;
                    }
                }
                match p.writer(&blob).await {
                    Ok(w) => writers.push((i, Some(w), 0)),
                    Err(e) => {
                        run.failed(name, provider, e);
                        run.report.remaining += 1;
                    }
                }
            }
            if writers.is_empty() {
                continue;
            }
            let want: Vec<usize> = writers.iter().map(|(i, _, _)| *i).collect();
            let segments = layout.part_segments(*part);
            for segments in runs(&layout, segments, REPAIR_RUN_SEGMENTS) {
                if writers.iter().all(|(_, w, _)| w.is_none()) {
                    break; // every provider owed a shard here has failed: no reading in vain
                }
                let rebuilt = match reader.rebuild_run(segments, &want, missing).await {
                    Ok(r) => r,
                    Err(e) => {
                        run.report.errors.push(JobError::object(name, None, JobErrorKind::Unreadable, e));
                        for (_, w, sent) in &mut writers {
                            if let Some(w) = w.take() {
                                w.abort().await;
                                run.report.remaining += 1;
                                progress.advance(part_len - *sent);
                            }
                        }
                        break;
                    }
                };
                for shards in rebuilt {
                    let mut written = 0u64;
                    // A provider that fails drops out; the others carry on.
                    for ((i, slot, sent), shard) in writers.iter_mut().zip(shards) {
                        let Some(w) = slot else { continue };
                        let len = shard.len() as u64;
                        if let Err(e) = w.write(shard).await {
                            let provider = &debt.om.placement[*i].provider;
                            run.failed(name, provider, e);
                            slot.take().expect("checked above").abort().await;
                            run.report.remaining += 1;
                            progress.advance(part_len - *sent); // it will not be written now
                            continue;
                        }
                        *sent += len;
                        written += len;
                    }
                    run.report.bytes_written += written;
                    progress.advance(written);
                    run.pacer.wrote(written).await;
                }
            }
            for (i, w, _) in writers {
                let Some(w) = w else { continue };
                let provider = debt.om.placement[i].provider.clone();
                let blob = names::shard_blob(&self.keys, &vid, i as u16, *part);
                if let Err(e) = w.close().await {
                    run.failed(name, &provider, e);
                    run.report.remaining += 1;
                    continue;
                }
                run.breaker.record(&provider, true);
                let b = BlobRef { provider: provider.clone(), blob: blob.clone(), size: part_len };
                match self.record_rebuilt(name, &vid, i, &b).await? {
                    Recorded::Yes => {
                        run.report.blobs_rebuilt += 1;
                        // It holds what the store knows it holds again.
                        if let Some(p) = self.provider(&provider) {
                            p.note_known_blob(true);
                        }
                    }
                    Recorded::NotPlaced => {
                        // Replaced, removed, or moved off this provider meanwhile: what was
                        // rebuilt is garbage (a name no current placement uses there).
                        if let Some(p) = self.provider(&provider) {
                            let _ = p.delete(&blob).await;
                        }
                    }
                    Recorded::GaveUp => {
                        // The manifest kept changing under it; the blob is good and placed, and
                        // the next run records it (gc leaves placed names alone).
                        run.report.errors.push(JobError::object(
                            name,
                            None,
                            JobErrorKind::Changed,
                            "its manifest kept changing; run repair again",
                        ));
                        run.report.remaining += 1;
                    }
                }
            }
        }
        run.report.bytes_read += reader.bytes_read();
        self.repair_manifests(name, &vid, run).await
    }

    /// Whether `p` holds `blob`, shard `shard` of part `part`, whole and matching the
    /// manifest's check of every segment in it: `false` (rebuild it) when it is not found, has
    /// the wrong size or fails a check; an error when the provider does not answer.
    async fn holds_intact(
        &self,
        p: &Provider,
        blob: &str,
        om: &ObjectManifest,
        layout: &Layout,
        shard: usize,
        part: u32,
    ) -> Result<bool, outlast_provider::ProviderError> {
        let len = layout.part_blob_len(part);
        match p.stat(blob).await {
            Ok(st) if st.size == len => {}
            Ok(_) => return Ok(false),
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        }
        let bytes = p.read_expecting(blob, len).await?;
        Ok(bytes.len() as u64 == len
            && layout.part_segments(part).all(|s| {
                let at = layout.shard_offset(s) as usize;
                let piece = bytes.get(at..at + layout.shard_len(s));
                piece.is_some_and(|piece| om.segment_checks(s)[shard].verifies(self.keys.check_seed, piece))
            }))
    }

    /// Records shard `shard`'s rebuilt blob `b` of `name`'s version `vid` if the current
    /// manifest still places that shard on `b`'s provider: an evacuation may have moved it
    /// while it was being rebuilt, or moved another shard (then this one still counts).
    async fn record_rebuilt(&self, name: &str, vid: &VersionId, shard: usize, b: &BlobRef) -> Result<Recorded, EngineError> {
        // The compare-and-swap fails only when the manifest changed in between; look again.
        for _ in 0..RECORD_TRIES {
            let Some(entry) = self.current_placing(name, vid, Some(shard), &b.provider).await? else {
                return Ok(Recorded::NotPlaced);
            };
            if self.index.add_blob(vid, &entry.sealed_manifest, b).await? {
                return Ok(Recorded::Yes);
            }
        }
        Ok(Recorded::GaveUp)
    }

    /// Writes the current sealed manifest to the shard holders that lack it (it is what a
    /// recovery from the providers alone reads). Read afresh for each copy: an evacuation may
    /// rewrite it meanwhile, and a copy is recorded only if its bytes are the current ones.
    async fn repair_manifests(&self, name: &str, vid: &VersionId, run: &mut RepairRun<'_>) -> Result<(), EngineError> {
        let Some(entry) = self.index.get(name).await?.filter(|e| e.stamp.vid == *vid) else { return Ok(()) };
        let ManifestBody::Object(om) = self.open_manifest(&entry)?.body else { return Ok(()) };
        let blob = names::manifest_blob(&self.keys, vid);
        let holding: HashSet<String> =
            self.index.blobs_of(vid).await?.into_iter().filter(|b| b.blob == blob).map(|b| b.provider).collect();
        for place in om.placement.iter().filter(|p| !holding.contains(&p.provider)) {
            let provider = &place.provider;
            let Some(p) = self.provider(provider) else { continue };
            let Some(_admitted) = run.breaker.admit(provider).await else { continue };
            let mut wrote_stale = false;
            for _ in 0..RECORD_TRIES {
                let Some(current) = self.current_placing(name, vid, None, provider).await? else { break };
                let sealed = Bytes::from(current.sealed_manifest);
                if let Err(e) = p.write(&blob, sealed.clone()).await {
                    run.failed(name, provider, e);
                    break;
                }
                run.breaker.record(provider, true);
                let size = sealed.len() as u64;
                if self.index.add_blob(vid, &sealed, &BlobRef { provider: provider.clone(), blob: blob.clone(), size }).await? {
                    run.report.manifests_written += 1;
                    run.report.bytes_written += size;
                    wrote_stale = false;
                    break;
                }
                // Rewritten meanwhile (an evacuation): what was just written may have replaced a
                // newer copy. Write the current one again.
                wrote_stale = true;
            }
            if wrote_stale {
                // Whatever another process recorded for this copy may be gone: it is debt.
                self.index.forget_blob(provider, &blob).await?;
            }
        }
        Ok(())
    }
}

/// Whether a blob repair wrote was recorded.
#[derive(PartialEq, Eq)]
enum Recorded {
    Yes,
    /// The current version no longer places it there: garbage.
    NotPlaced,
    /// The manifest kept changing between looking and recording.
    GaveUp,
}

/// Compare-and-swap attempts before repair leaves a record to its next run.
const RECORD_TRIES: usize = 3;

/// One task of a repair run: what it reports, and the run's write pacing and the providers
/// it has given up on, shared by the tasks running side by side.
pub(crate) struct RepairRun<'a> {
    pub(crate) report: &'a mut RepairReport,
    pacer: &'a Pacer,
    pub(crate) breaker: &'a Breaker,
}

impl<'a> RepairRun<'a> {
    pub(crate) fn new(report: &'a mut RepairReport, cx: &'a JobContext<'_>) -> Self {
        RepairRun { report, pacer: &cx.pacer, breaker: &cx.breaker }
    }

    /// Notes a failure on `provider` while repairing `object`, saying once when the run gives
    /// up on the provider.
    pub(crate) fn failed(&mut self, object: &str, provider: &str, error: impl ToString) {
        self.report.errors.push(JobError::object(object, Some(provider), JobErrorKind::Provider, error));
        if self.breaker.record(provider, false) {
            self.report.errors.push(Breaker::skipped(provider));
        }
    }
}
