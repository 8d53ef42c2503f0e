//! Evacuation: moves every shard off a provider that is leaving, without its cooperation if
//! need be. While it answers, each of its blobs is read once, checked and copied (egress equal
//! to what it holds); a blob it cannot serve intact is rebuilt from the others. Once all of an
//! object's blobs are on the new provider, the object's manifest is rewritten with the new
//! placement (a higher revision, same name) and the switch is committed to the index; then the
//! old copies are deleted. Every step is recorded as it lands, so a killed evacuation resumes.
//! New writes avoid a provider being evacuated.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use outlast_codec::{names, Layout, Manifest, ManifestBody, ObjectManifest, VersionId};
use serde::Serialize;

use super::kit::breaker::Breaker;
use super::kit::context::JobContext;
use super::kit::copies::CopyVerdict;
use crate::error::{EngineError, ProviderFailure};
use crate::index::{BlobRef, IndexEntry, Placed, ShardMove};
use crate::jobs::status::{JobError, JobErrorKind, Phase};
use crate::progress::Progress;
use crate::shards::{runs, ReadScope, ShardReader};
use crate::store::Store;
use crate::unopened::Unopened;

/// Segments rebuilt per round of ranged reads when a blob must be rebuilt.
const REBUILD_RUN_SEGMENTS: u64 = 4;

/// What an evacuation did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EvacuateReport {
    /// The provider emptied.
    pub from: String,
    /// The provider that took its shards.
    pub to: String,
    /// Objects that had a shard on `from` when this run started (as far as it counted, when it
    /// was stopped while counting).
    pub objects: u64,
    /// Objects whose shard now lives on `to`.
    pub objects_moved: u64,
    /// Shard blobs copied from `from` (read once, checked, written).
    pub blobs_copied: u64,
    /// Shard blobs rebuilt from the other providers (`from` did not serve them intact).
    pub blobs_rebuilt: u64,
    /// Bytes of the blobs copied.
    pub bytes_copied: u64,
    /// Bytes read from `from`.
    pub bytes_read_from_source: u64,
    /// Bytes read from the other providers to rebuild.
    pub bytes_read_from_others: u64,
    /// Bytes written to `to`.
    pub bytes_written: u64,
    /// Bytes read from the source per byte copied (1.00 when every blob was copied once).
    pub egress_ratio: Option<f64>,
    /// Moved blobs read back from `to` and checked at the end.
    pub verified: u64,
    /// Objects skipped because their manifest does not open with this store's key.
    pub unopened: Unopened,
    /// Objects that still have a shard on `from` (run again, or see `errors`).
    pub remaining: u64,
    /// What went wrong, one each.
    pub errors: Vec<JobError>,
    /// The caller asked the run to stop ([`Progress::stop_requested`]): the moves in flight
    /// were finished, the rest still wait (counted in `remaining`), and tombstones were not
    /// copied. Running the evacuation again goes on.
    pub stopped: bool,
}

impl EvacuateReport {
    /// Adds the counts and errors of one object's move.
    fn absorb(&mut self, o: EvacuateReport) {
        self.objects_moved += o.objects_moved;
        self.blobs_copied += o.blobs_copied;
        self.blobs_rebuilt += o.blobs_rebuilt;
        self.bytes_copied += o.bytes_copied;
        self.bytes_read_from_source += o.bytes_read_from_source;
        self.bytes_read_from_others += o.bytes_read_from_others;
        self.bytes_written += o.bytes_written;
        self.verified += o.verified;
        self.errors.extend(o.errors);
    }
}

/// Objects moved at once, as long as their buffers fit in [`JOB_BUFFER_BYTES`]. Each move is
/// a few latency-bound steps: across 20 ms links 16 moved 87-93 objects/s against 62-63 with 8
/// (survive bench, 600 objects); on this machine's local disks, where every step is an fsync,
/// 90-95 against 108-114.
const EVACUATE_CONCURRENCY: usize = 16;

/// One object version with a shard on the provider being emptied.
struct Move {
    entry: IndexEntry,
    om: ObjectManifest,
    shard: usize,
}

impl Store {
    /// Moves every shard on `from` to `to`, then reads the moved blobs back from `to` and
    /// checks them. `from` may be gone already, even from the configuration (removed or renamed
    /// by hand while placements still name it): its shards are then rebuilt from the others.
    pub async fn evacuate(&self, from: &str, to: &str, progress: &dyn Progress) -> Result<EvacuateReport, EngineError> {
        if self.provider(to).is_none() {
            return Err(EngineError::UnknownProvider(to.to_string()));
        }
        if self.provider(from).is_none() && self.placed_on(from, None, None).await?.0 == 0 {
            return Err(EngineError::UnknownProvider(from.to_string()));
        }
        if from == to {
            return Err(EngineError::EvacuateOntoItself(from.to_string()));
        }
        let cx = JobContext::start("evacuate", progress, None);
        let report = self.evacuate_run(from, to, &cx).await;
        cx.finish();
        report
    }

    async fn evacuate_run(&self, from: &str, to: &str, cx: &JobContext<'_>) -> Result<EvacuateReport, EngineError> {
        let progress = &cx.job;
        self.index.set_draining(from, to).await?;
        let mut report = EvacuateReport { from: from.into(), to: to.into(), ..Default::default() };
        progress.phase(Phase::Counting);
        let (objects, total) = self.placed_on(from, Some(&mut report.unopened), Some(progress)).await?;
        report.objects = objects;
        progress.set_total(total);
        progress.phase(Phase::Working);
        // Objects move side by side: each is a few small, latency-bound steps (copy, fsync,
        // manifest rewrite, index switch), so one at a time would leave the links idle.
        let (breaker, buffers) = (&cx.breaker, &cx.buffers);
        // Each move owns its `Move`: a closure over borrowed items would make this future
        // impossible to spawn (the compiler cannot prove it `Send` for every lifetime).
        // The moves come as the index's pages do: what is held is a page, not the store.
        let moves = self.index.object_pages("").picked(move |entry| std::future::ready(Ok(self.move_of(entry, from))));
        // Asked to stop: no new move is started; those in flight finish.
        let moves = moves.take_while(|_| std::future::ready(!progress.stop_requested()));
        let outcomes = moves
            .map_ok(|m| async move {
                let m = &m;
                let mut mine = EvacuateReport::default();
                let Some(_admitted) = breaker.admit(to).await else {
                    return Ok(mine); // counted in `remaining`; the reason was reported once
                };
                // A copied blob is read whole; part 0 is the shard's largest.
                let _buffer = buffers.hold(m.om.layout().map_or(0, |l| l.part_blob_len(0))).await;
                let moved = match self.move_shard(m, from, to, breaker, &mut mine, progress).await {
                    Ok(moved) => moved,
                    Err(e) => {
                        let blame = matches!(e, EngineError::Provider(_)).then_some(to);
                        mine.errors.push(JobError::object(&m.entry.name, blame, JobErrorKind::Provider, &e));
                        if blame.is_some() && breaker.record(to, false) {
                            mine.errors.push(Breaker::skipped(to));
                        }
                        false
                    }
                };
                // Ok(false): replaced or removed meanwhile, nothing left to move.
                if moved {
                    mine.objects_moved += 1;
                    if let Err(e) = self.verify_moved(m, to, &mut mine).await {
                        mine.errors.push(JobError::object(&m.entry.name, None, JobErrorKind::Local, e));
                    }
                }
                Ok::<_, EngineError>(mine)
            })
            .try_buffer_unordered(EVACUATE_CONCURRENCY);
        let mut outcomes = std::pin::pin!(outcomes);
        while let Some(mine) = outcomes.try_next().await? {
            progress.errors(&mine.errors);
            report.absorb(mine);
        }
        report.stopped = progress.stop_requested();
        // Tombstones live on every provider: the new one gets any it lacks.
        if !report.stopped {
            progress.phase(Phase::Tombstones);
            let tombstones = self.repair_tombstones(breaker).await?;
            progress.errors(&tombstones.errors);
            report.errors.extend(tombstones.errors);
        }
        report.remaining = self.placed_on(from, None, None).await?.0;
        report.egress_ratio =
            (report.bytes_copied > 0).then(|| report.bytes_read_from_source as f64 / report.bytes_copied as f64);
        if report.remaining == 0 {
            tracing::info!("`{from}` holds no shards any more; it can be removed");
            if self.provider(from).is_none() {
                // Nothing is placed there any more and it is not configured: nothing drains.
                self.index.clear_draining(from).await?;
            }
        }
        Ok(report)
    }

    /// How many current objects place a shard on `provider` (whether or not it still holds it).
    pub async fn objects_placed_on(&self, provider: &str) -> Result<usize, EngineError> {
        Ok(self.placed_on(provider, None, None).await?.0 as usize)
    }

    /// How many current object versions place a shard on `provider`, and the bytes of those
    /// shards; versions whose manifest does not open count if the index records a blob of
    /// theirs there, and are named in `unopened`, when given.
    /// Stops early (a partial count) once `stop` asks to.
    async fn placed_on(
        &self,
        provider: &str,
        mut unopened: Option<&mut Unopened>,
        stop: Option<&dyn Progress>,
    ) -> Result<(u64, u64), EngineError> {
        let (mut objects, mut bytes) = (0, 0);
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            if stop.is_some_and(|p| p.stop_requested()) {
                break;
            }
            for entry in page {
                // Where unopened manifests need not be named, the placement kept beside the
                // manifest answers without opening it.
                if let (None, Some(placed)) = (&unopened, &entry.placed) {
                    if placed.providers.iter().any(|p| p == provider) {
                        let layout = placed.layout()?;
                        objects += 1;
                        bytes += (0..layout.part_count()).map(|p| layout.part_blob_len(p)).sum::<u64>();
                    }
                    continue;
                }
                // One whose manifest does not open counts where the index records blobs of it:
                // until someone deals with it, the provider is not empty.
                let Some(manifest) = self.open_manifest_or_note(&entry, unopened.as_deref_mut()) else {
                    objects += self.index.blobs_of(&entry.stamp.vid).await?.iter().any(|b| b.provider == provider) as u64;
                    continue;
                };
                let ManifestBody::Object(om) = manifest.body else { continue };
                if om.placement.iter().any(|p| p.provider == provider) {
                    let layout = om.layout()?;
                    objects += 1;
                    bytes += (0..layout.part_count()).map(|p| layout.part_blob_len(p)).sum::<u64>();
                }
            }
        }
        Ok((objects, bytes))
    }

    /// The move of `entry`'s shard on `provider`, if its manifest places one there (and opens).
    fn move_of(&self, entry: IndexEntry, provider: &str) -> Option<Move> {
        let ManifestBody::Object(om) = self.open_manifest_or_note(&entry, None)?.body else { return None };
        let shard = om.placement.iter().position(|p| p.provider == provider)?;
        Some(Move { entry, om, shard })
    }

    /// Moves one object's shard; `Ok(false)` if the version was replaced meanwhile.
    async fn move_shard(
        &self,
        m: &Move,
        from: &str,
        to: &str,
        breaker: &Breaker,
        report: &mut EvacuateReport,
        progress: &dyn Progress,
    ) -> Result<bool, EngineError> {
        let (om, i, vid) = (&m.om, m.shard, m.entry.stamp.vid);
        if let Some(j) = om.placement.iter().position(|p| p.provider == to) {
            return Err(EngineError::State(format!("`{to}` already holds shard {j} of it; pick another target")));
        }
        let to_p = self.provider(to).expect("checked by the caller");
        let cap = (om.n - om.k) as usize;
        let in_domain = om
            .placement
            .iter()
            .enumerate()
            .filter(|(j, p)| *j != i && self.provider(&p.provider).is_some_and(|p| p.domain() == to_p.domain()))
            .count();
        if in_domain + 1 > cap {
            return Err(EngineError::State(format!(
                "`{to}`'s failure domain `{}` would hold more than {cap} of its shards",
                to_p.domain()
            )));
        }
        let layout = om.layout()?;
        let recorded = self.index.recorded_of(&vid).await?;
        let reader = ShardReader::new(self, &m.entry.name, om, vid, &ReadScope::default()).await?;
        let mut added = Vec::new();
        for part in 0..layout.part_count() {
            let blob = names::shard_blob(&self.keys, &vid, i as u16, part);
            let len = layout.part_blob_len(part);
            let blob_ref = BlobRef { provider: to.into(), blob: blob.clone(), size: len };
            if !recorded.has(to, &blob) {
                // A source that keeps failing is not asked again: rebuilding costs reads from
                // the others, waiting for its timeouts on every blob costs far more.
                let copy = match self.provider(from) {
                    Some(p) if recorded.has(from, &blob) && breaker.allows(from) => {
                        match p.read_expecting(&blob, len).await {
                            Ok(bytes) => {
                                breaker.record(from, true);
                                report.bytes_read_from_source += bytes.len() as u64;
                                part_is_intact(om, &layout, i, part, &bytes, self.keys.check_seed).then_some(bytes)
                            }
                            // A lost blob is an answer, not a failing provider.
                            Err(e) if e.is_not_found() => None,
                            Err(e) => {
                                if breaker.record(from, false) {
                                    let mut skipped = Breaker::skipped(from);
                                    skipped.message.push_str("; rebuilding from the others instead");
                                    report.errors.push(skipped);
                                }
                                tracing::debug!("copying from `{from}`: {e}");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                match copy {
                    Some(bytes) => {
                        to_p.write(&blob, bytes).await?;
                        breaker.record(to, true);
                        report.blobs_copied += 1;
                        report.bytes_copied += len;
                    }
                    None => {
                        self.rebuild_part_to(&reader, &layout, i, part, to_p, &blob).await?;
                        breaker.record(to, true);
                        report.blobs_rebuilt += 1;
                    }
                }
                report.bytes_written += len;
                // Recorded at once: a killed evacuation does not move this blob again.
                if !self.index.add_blob(&vid, &m.entry.sealed_manifest, &blob_ref).await? {
                    if !self.index.is_current(&vid).await? {
                        let _ = to_p.delete(&blob).await; // replaced or removed: garbage
                        return Ok(false);
                    }
                    // Another move changed the manifest meanwhile. If it put this very shard
                    // on `to`, the copy there is its (the same bytes); otherwise this one is
                    // garbage. Either way this run has nothing more to do for the object.
                    if self.current_placing(&m.entry.name, &vid, Some(i), to).await?.is_none() {
                        let _ = to_p.delete(&blob).await;
                    }
                    return Err(EngineError::State("its manifest changed during the move; run evacuate again".into()));
                }
            }
            progress.advance(len);
            added.push(blob_ref);
        }
        report.bytes_read_from_others += reader.bytes_read();

        // Rewrite the manifest with the new placement, on every holder of the new placement.
        let mut manifest = self.open_manifest(&m.entry)?;
        manifest.revision += 1;
        let ManifestBody::Object(new_om) = &mut manifest.body else { unreachable!("an object version") };
        new_om.placement[i].provider = to.into();
        let placed = Placed::of(new_om);
        let holders: Vec<String> = new_om.placement.iter().map(|p| p.provider.clone()).collect();
        let manifest_blob = names::manifest_blob(&self.keys, &vid);
        let sealed = Bytes::from(Manifest::seal(&manifest, &self.keys, &manifest_blob));
        // All holders at once: each write is a small durable file, bound by its provider's
        // round trip (and on local disks by an fsync), not by bandwidth. Unlike a put, nobody
        // waits on this: a holder that is slow to answer (an SFTP server's first handshake
        // takes seconds) is waited for, and one that hangs costs its operation deadline.
        let writes = holders.iter().filter_map(|h| self.provider(h)).map(|p| {
            let (blob, sealed) = (&manifest_blob, sealed.clone());
            async move { (p.name(), p.write(blob, sealed).await) }
        });
        let mut written = 0;
        let mut failures = Vec::new();
        for (h, r) in futures::future::join_all(writes).await {
            match r {
                Ok(()) => {
                    written += 1;
                    added.push(BlobRef { provider: h.to_string(), blob: manifest_blob.clone(), size: sealed.len() as u64 });
                }
                Err(e) => {
                    report.errors.push(JobError::object(&m.entry.name, Some(h), JobErrorKind::Provider, &e));
                    failures.push(ProviderFailure::new(h, e.to_string()));
                }
            }
        }
        let quorum = self.config.coding.write_quorum();
        let switched = written >= quorum
            && self
                .index
                .move_shards(&ShardMove {
                    name: m.entry.name.clone(),
                    vid,
                    was: m.entry.sealed_manifest.clone(),
                    now: sealed.to_vec(),
                    from: from.to_string(),
                    manifest_blob: manifest_blob.clone(),
                    added: added.clone(),
                    placed,
                })
                .await?;
        if !switched {
            // Nothing is switched (the copies on `to` stay recorded, so a new run does not
            // move them again), but the holders just written may now hold a manifest the index
            // does not: their copies count as debt, and repair writes the current one back.
            for b in added.iter().filter(|b| b.blob == manifest_blob) {
                self.index.forget_blob(&b.provider, &b.blob).await?;
            }
            if written < quorum {
                return Err(EngineError::Quorum { name: m.entry.name.clone(), ok: written, needed: quorum, failures });
            }
            // Replaced, removed, or moved by another evacuation meanwhile.
            return Err(EngineError::State("its manifest changed during the move; run evacuate again".into()));
        }
        // `from`'s copies are garbage now; it may well be gone, so failures are ignored.
        if let Some(p) = self.provider(from) {
            let garbage: Vec<String> = (0..layout.part_count())
                .map(|part| names::shard_blob(&self.keys, &vid, i as u16, part))
                .chain([manifest_blob])
                .collect();
            futures::future::join_all(garbage.iter().map(|b| p.delete(b))).await;
        }
        Ok(true)
    }

    /// Rebuilds shard `i` of `part` from the other shards and streams it to `to` as `blob`.
    async fn rebuild_part_to(
        &self,
        reader: &ShardReader<'_>,
        layout: &Layout,
        i: usize,
        part: u32,
        to: &outlast_provider::Provider,
        blob: &str,
    ) -> Result<(), EngineError> {
        let mut w = to.writer(blob).await?;
        let segments = layout.part_segments(part);
        for run in runs(layout, segments, REBUILD_RUN_SEGMENTS) {
            let rebuilt = match reader.rebuild_run(run, &[i], &[i]).await {
                Ok(r) => r,
                Err(e) => {
                    w.abort().await;
                    return Err(e);
                }
            };
            for mut shards in rebuilt {
                if let Err(e) = w.write(shards.remove(0)).await {
                    w.abort().await;
                    return Err(e.into());
                }
            }
        }
        Ok(w.close().await?)
    }

    /// Reads the moved blobs back from `to` and checks every segment shard, and the
    /// manifest copies beside them; a blob that fails is dropped from the index (repair
    /// debt) and reported.
    async fn verify_moved(&self, m: &Move, to: &str, report: &mut EvacuateReport) -> Result<(), EngineError> {
        let mut copies = EvacuateReport::default();
        let (shards, manifests) = futures::join!(
            self.verify_shards(m, to, report),
            self.verify_manifest_copies(&m.entry.name, &m.entry.stamp.vid, &mut copies)
        );
        report.absorb(copies);
        shards.and(manifests)
    }

    async fn verify_shards(&self, m: &Move, to: &str, report: &mut EvacuateReport) -> Result<(), EngineError> {
        let (om, i, vid) = (&m.om, m.shard, m.entry.stamp.vid);
        let layout = om.layout()?;
        let p = self.provider(to).expect("checked by the caller");
        for part in 0..layout.part_count() {
            let blob = names::shard_blob(&self.keys, &vid, i as u16, part);
            let good = match p.read_expecting(&blob, layout.part_blob_len(part)).await {
                Ok(bytes) => part_is_intact(om, &layout, i, part, &bytes, self.keys.check_seed),
                Err(e) if e.is_not_found() => false,
                Err(e) => {
                    // Not an answer about the blob: it stays recorded, and a scrub will tell.
                    report.errors.push(JobError::object(
                        &m.entry.name,
                        Some(to),
                        JobErrorKind::Provider,
                        format!("could not read `{blob}` back from `{to}`: {e}"),
                    ));
                    continue;
                }
            };
            if good {
                report.verified += 1;
            } else {
                report.errors.push(JobError::object(
                    &m.entry.name,
                    Some(to),
                    JobErrorKind::ReadBack,
                    format!("blob `{blob}` did not read back intact from `{to}`"),
                ));
                self.index.forget_blob(to, &blob).await?;
            }
        }
        Ok(())
    }

    /// Reads back every manifest copy the index records for `name`'s version `vid` and drops
    /// those that are not the current manifest: a repair that read the manifest just before
    /// the switch may have written the old revision over a new copy (two writers of one name;
    /// the index cannot know which landed last). Repair then writes the current one. Copies
    /// are judged as scrub judges them.
    async fn verify_manifest_copies(&self, name: &str, vid: &VersionId, report: &mut EvacuateReport) -> Result<(), EngineError> {
        let Some(entry) = self.index.get(name).await?.filter(|e| e.stamp.vid == *vid) else { return Ok(()) };
        let revision = self.open_manifest(&entry)?.revision;
        let blob = names::manifest_blob(&self.keys, vid);
        let copies: Vec<_> = self.index.blobs_of(vid).await?.into_iter().filter(|b| b.blob == blob).collect();
        // All at once: each is one small read, and a move waits for them.
        let blob = &blob;
        let reads = futures::future::join_all(copies.iter().map(|b| async move {
            match self.provider(&b.provider) {
                Some(p) => Some(p.read(blob).await),
                None => None,
            }
        }))
        .await;
        for (b, read) in copies.iter().zip(reads) {
            let Some(read) = read else { continue };
            match read {
                Ok(bytes) => {
                    let why = match self.judge_manifest_copy(&entry, revision, blob, &bytes) {
                        CopyVerdict::Current => continue,
                        // Another writer of the name won: a repair that read the manifest
                        // before the switch (older revision), or a rival move (same revision).
                        // A race of ours, so no blame on the provider.
                        CopyVerdict::Stale { .. } => "was overwritten by a concurrent repair or move",
                        CopyVerdict::Newer(_) => "is newer than the index",
                        CopyVerdict::Corrupt => "does not open as this version's manifest",
                    };
                    // Only if the index still holds what was compared: a later move may have
                    // switched it again meanwhile.
                    if self.unchanged(&entry).await? {
                        self.index.forget_blob(&b.provider, blob).await?;
                        report.errors.push(JobError::object(
                            name,
                            Some(&b.provider),
                            JobErrorKind::ReadBack,
                            format!("the manifest copy on `{}` {why}; run repair", b.provider),
                        ));
                    }
                }
                Err(e) if e.is_not_found() => {
                    self.index.forget_blob(&b.provider, blob).await?;
                }
                Err(e) => report.errors.push(JobError::object(
                    name,
                    Some(&b.provider),
                    JobErrorKind::Provider,
                    format!("could not read the manifest back from `{}`: {e}", b.provider),
                )),
            }
        }
        Ok(())
    }
}

/// Whether `bytes` is exactly shard `i`'s blob of `part`, every segment matching its check.
fn part_is_intact(om: &ObjectManifest, layout: &Layout, i: usize, part: u32, bytes: &[u8], seed: u64) -> bool {
    if bytes.len() as u64 != layout.part_blob_len(part) {
        return false;
    }
    layout.part_segments(part).all(|s| {
        let off = layout.shard_offset(s) as usize;
        let shard = &bytes[off..off + layout.shard_len(s)];
        om.segment_checks(s)[i].verifies(seed, shard)
    })
}
