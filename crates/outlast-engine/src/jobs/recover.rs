//! Recover: rebuilds the local index from what the providers hold, so that a lost, copied or
//! outdated state folder never cuts a user off from data that sits intact on the providers.
//!
//! Every provider's manifests are listed and every copy is read and opened (a copy that does
//! not open under its own name, corrupt or swapped in, counts for nothing). Of one version's
//! copies the highest placement revision is current; of one name's versions the greatest
//! stamp wins, tombstones included, so a deleted name stays deleted and a provider that went
//! back to an older version (rolled back, stale) can neither bring it back nor hide the newer
//! one while one honest holder answers. Only blobs found by listing are recorded: what a
//! placement names but no listing showed is debt, which scrub and `providers` report and repair
//! pays. Names are taken in by batches, each batch one index transaction (a name is never
//! half taken in), so a recovery killed part-way keeps what it committed and is simply run
//! again; on a healthy store it changes nothing.
//!
//! It costs one request per manifest copy (`benches/recover.rs`: 500,000 copies of 10^5
//! objects in 136 s on local folders); the roadmap's packed manifests bring that to a few
//! requests per thousand objects.

use futures::StreamExt;
use outlast_codec::{names, Manifest, ManifestBody};
use serde::Serialize;

use super::kit::context::JobContext;
use crate::error::EngineError;
use crate::index::{Adopted, BlobRef, IndexEntry, Placed, Recovered};
use crate::jobs::status::Phase;
use crate::progress::{Progress, Unit};
use crate::scratch::listed::{ListedStage, Shape};
use crate::scratch::recovery::{RecoveryStage, Staged, StagedCopy};
use crate::store::Store;

/// Manifest copies read at once.
const READ_CONCURRENCY: usize = 16;
/// Recovered names taken into the index per transaction.
const ADOPT_BATCH: usize = 500;

/// What a recovery found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// Manifest copies read.
    pub copies_read: u64,
    /// Copies that did not open under their name (corrupt, swapped in, another store's).
    pub copies_rejected: u64,
    /// Copies of an older placement revision than another copy of the same version.
    pub copies_stale: u64,
    /// Names whose current version is an object.
    pub objects: u64,
    /// Names whose current version is a deletion.
    pub deleted: u64,
    /// Names the index did not know, now recorded.
    pub added: u64,
    /// Names whose recorded version was older (or had an older placement), now updated.
    pub updated: u64,
    /// Names the index already had right.
    pub unchanged: u64,
    /// Providers that could not be listed: the view may be incomplete, and a rerun is safe.
    pub unreachable: Vec<String>,
    /// The caller asked the recovery to stop: names were taken in by whole batches (or none,
    /// if it stopped while reading copies); running it again takes in the rest.
    pub stopped: bool,
}

impl Store {
    /// Rebuilds the index from the providers' manifests (see the module documentation).
    pub async fn recover(&self, progress: &dyn Progress) -> Result<RecoverReport, EngineError> {
        let cx = JobContext::start("recover", progress, None);
        let report = self.recover_run(&cx).await;
        cx.finish();
        report
    }

    async fn recover_run(&self, cx: &JobContext<'_>) -> Result<RecoverReport, EngineError> {
        let progress = &cx.job;
        progress.phase(Phase::Listing);
        let mut report = RecoverReport::default();
        // What each provider holds, by listing, staged on disk (every blob of every provider).
        let mut stage = ListedStage::new()?;
        // Providers listed whole (by position): only they have blob rows replaced.
        let mut listed: Vec<usize> = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            match stage.take_listing(i, p).await?.failed.first() {
                None => listed.push(i),
                Some(e) => {
                    tracing::warn!(provider = p.name(), "cannot list: {e}");
                    report.unreachable.push(p.name().to_string());
                }
            }
        }
        stage.seal()?;
        let mut copies_listed = 0;
        for &i in &listed {
            copies_listed += stage.count(i, Shape::Manifest)?;
        }
        progress.set_unit(Unit::Items("manifest copies"));
        progress.set_total(copies_listed);
        progress.phase(Phase::Working);
        // Read and open every copy listed whole; a stage keeps the highest revision of each
        // version as they come.
        let copies_stage = RecoveryStage::new()?;
        let copies =
            stage.pages(Some(Shape::Manifest)).rows().filter(|copy| copy.as_ref().map_or(true, |b| listed.contains(&b.provider)));
        let mut reads = futures::stream::iter(copies)
            .map(|copy| async move {
                let copy = copy?;
                let blob = copy.name();
                let provider = self.providers[copy.provider].name().to_string();
                // The listing gave the size: a ranged read spares the stat a whole read makes.
                let bytes = self.providers[copy.provider].read_range(&blob, 0..copy.size).await.map_err(|e| e.to_string());
                Ok::<_, EngineError>((provider, blob, bytes))
            })
            .buffer_unordered(READ_CONCURRENCY);
        let mut batch = Vec::with_capacity(ADOPT_BATCH);
        while let Some(read) = reads.next().await {
            // Asked to stop while copies come in: nothing is taken in from a partial view.
            if progress.stop_requested() {
                report.stopped = true;
                return Ok(report);
            }
            let (provider, blob, bytes) = read?;
            progress.advance(1);
            let Ok(bytes) = bytes else { continue };
            report.copies_read += 1;
            match Manifest::open(&self.keys, &blob, &bytes) {
                Ok(m) if names::manifest_blob(&self.keys, &m.stamp.vid) == blob => {
                    let (name, stamp, revision, sealed) = (m.name, m.stamp, m.revision, bytes.to_vec());
                    batch.push(StagedCopy { blob, provider, name, stamp, revision, sealed });
                }
                _ => report.copies_rejected += 1,
            }
            if batch.len() >= ADOPT_BATCH {
                Self::stage(&copies_stage, &mut batch, &mut report)?;
            }
        }
        Self::stage(&copies_stage, &mut batch, &mut report)?;
        drop(reads);
        // The newest version of each name wins, deletions included; taken in a batch per
        // transaction: one sync to disk per batch, and a recovery killed part-way keeps what
        // it committed (a rerun takes in the rest).
        let listed_names: Vec<String> = listed.iter().map(|&i| self.providers[i].name().to_string()).collect();
        let mut after: Option<String> = None;
        loop {
            if progress.stop_requested() {
                report.stopped = true;
                break;
            }
            let newest = copies_stage.staged_newest(after.as_deref(), ADOPT_BATCH)?;
            let Some(last) = newest.last() else { break };
            after = Some(last.name.clone());
            let mut versions = Vec::with_capacity(newest.len());
            for staged in newest {
                // Staged copies opened under their own name as they were read.
                let manifest = Manifest::open(&self.keys, &staged.blob, &staged.sealed)?;
                match &manifest.body {
                    ManifestBody::Object(_) | ManifestBody::Composite(_) => report.objects += 1,
                    ManifestBody::Tombstone => report.deleted += 1,
                }
                versions.push(self.recovered_version(&manifest, staged.sealed, &staged.holders, (&stage, &listed))?);
            }
            for adopted in self.index.adopt_all(&versions, &listed_names).await? {
                match adopted {
                    Adopted::New => report.added += 1,
                    Adopted::Newer | Adopted::Updated => report.updated += 1,
                    Adopted::Same | Adopted::Older => report.unchanged += 1,
                }
            }
        }
        if !report.unreachable.is_empty() {
            tracing::warn!(
                "{} could not be listed: this recovery's view may be incomplete; run it again once they answer (it is safe)",
                report.unreachable.join(", ")
            );
        }
        Ok(report)
    }

    /// Stages a batch of copies read (and empties it), counting the stale ones.
    fn stage(stage: &RecoveryStage, batch: &mut Vec<StagedCopy>, report: &mut RecoverReport) -> Result<(), EngineError> {
        for staged in stage.stage_copies(batch)? {
            match staged {
                Staged::Held => {}
                Staged::Stale => report.copies_stale += 1,
                Staged::Replaced(holders) => report.copies_stale += holders,
            }
        }
        batch.clear();
        Ok(())
    }

    /// The index entry of a recovered version, with the blobs of it that listings found.
    fn recovered_version(
        &self,
        m: &Manifest,
        sealed: Vec<u8>,
        holders: &[String],
        (listings, listed): (&ListedStage, &[usize]),
    ) -> Result<Recovered, EngineError> {
        let vid = m.stamp.vid;
        let manifest_blob = names::manifest_blob(&self.keys, &vid);
        let mut blobs: Vec<BlobRef> = holders
            .iter()
            .map(|p| BlobRef { provider: p.clone(), blob: manifest_blob.clone(), size: sealed.len() as u64 })
            .collect();
        let placed = match &m.body {
            ManifestBody::Object(om) => Some(Placed::of(om)),
            ManifestBody::Tombstone | ManifestBody::Composite(_) => None,
        };
        let (size, content_type, etag, tombstone) = match &m.body {
            ManifestBody::Tombstone => (0, None, String::new(), true),
            // Its manifest is all it holds, and it lives on every provider: each copy counts.
            ManifestBody::Composite(c) => (c.size, c.content_type.clone(), c.etag(), false),
            ManifestBody::Object(om) => {
                let layout = om.layout()?;
                for (i, place) in om.placement.iter().enumerate() {
                    // A provider no longer configured was not listed: all it holds is debt.
                    // Nor was one that could not be listed whole: its rows stay as they are.
                    let Some(at) = self.providers.iter().position(|p| p.name() == place.provider) else { continue };
                    if !listed.contains(&at) {
                        continue;
                    }
                    for part in 0..layout.part_count() {
                        let blob = names::shard_blob(&self.keys, &vid, i as u16, part);
                        // Found whole by listing; the rest is debt for repair.
                        if listings.size_of(at, Shape::Shard, &blob)? == Some(layout.part_blob_len(part)) {
                            blobs.push(BlobRef { provider: place.provider.clone(), blob, size: layout.part_blob_len(part) });
                        }
                    }
                }
                // A holder of the manifest that the placement does not name (a move's source
                // that missed the rewrite) keeps no row: its copy is garbage.
                blobs.retain(|r| r.blob != manifest_blob || om.placement.iter().any(|p| p.provider == r.provider));
                (om.size, om.content_type.clone(), om.etag(), false)
            }
        };
        let entry =
            IndexEntry { name: m.name.clone(), stamp: m.stamp, size, content_type, etag, sealed_manifest: sealed, placed };
        Ok(Recovered { entry, blobs, tombstone })
    }
}

impl Store {
    /// A cheap hint for `ls` and `stat`: whether the index is empty while a provider holds
    /// manifests (a lost or copied state folder). One short listing, only when the index holds
    /// nothing at all.
    pub async fn index_looks_lost(&self) -> Result<bool, EngineError> {
        if self.index.has_versions().await? {
            return Ok(false);
        }
        for p in self.providers.iter().filter(|p| p.state().is_usable()) {
            if let Ok(some) = p.list_some(names::MANIFEST_PREFIX, 1).await {
                return Ok(!some.is_empty());
            }
        }
        Ok(false)
    }
}
