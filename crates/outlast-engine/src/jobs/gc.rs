//! gc: deletes blobs that no version references.
//!
//! Deleting is the dangerous part, so every deletion is justified by what the providers hold,
//! not only by what this state folder's index knows:
//! - a blob *name* that any current version references (in the index, in a placement, in a
//!   pending write, or in a manifest found on any provider that the index does not know) is
//!   never deleted on *any* provider: names do not depend on the provider, and two configured
//!   providers may be one location (a copied root, a trailing slash);
//! - only names of this format's own shapes are touched (`s/` and `m/` plus 32 hex digits,
//!   and the temporary files of local disks); anything else under a root is left alone;
//! - a blob the index knows is garbage (a crashed write it claimed, a replaced version it could
//!   not delete at the time) goes after the grace period; a blob it knows nothing of may be a
//!   write in progress from another state folder or machine, so it waits at least
//!   [`UNKNOWN_MIN_AGE`], whatever `--grace-secs` says; a write that runs longer keeps a lease
//!   on the providers (`lease.rs`), and every name of its version is kept while it is fresh.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use outlast_codec::{names, Manifest, ManifestBody};
use outlast_provider::{staged_base, staged_target, BlobEntry, Provider};
use serde::Serialize;

use super::kit::context::JobContext;
use super::kit::leases::UNKNOWN_MIN_AGE;
use super::kit::nameset::NameSet;
use crate::error::EngineError;
use crate::jobs::status::{JobError, JobErrorKind, Phase};
use crate::progress::{Progress, Unit};
use crate::scratch::listed::{ListedStage, Shape};
use crate::stamps::now_ns;
use crate::store::Store;
use crate::unopened::Unopened;

/// How gc runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Blobs the index knows to be garbage are deleted once older than this.
    pub grace: Duration,
    /// Report what would be deleted, per provider and why, and change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { grace: Duration::from_secs(3600), dry_run: false }
    }
}

/// Why gc deletes a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcReason {
    /// A blob of a write whose process died before it committed.
    CrashedWrite,
    /// A blob this store made garbage (a replaced version) and could not delete then.
    KnownGarbage,
    /// Referenced by no version on any provider, and older than the floor for unknown blobs.
    Unreferenced,
    /// A local disk's temporary file that no write in progress names.
    StaleTemporary,
    /// A write lease its put stopped renewing long ago.
    DeadLease,
}

impl GcReason {
    /// Words for the report.
    pub fn as_str(self) -> &'static str {
        match self {
            GcReason::CrashedWrite => "a crashed write's blob",
            GcReason::KnownGarbage => "garbage this store left (a replaced version)",
            GcReason::Unreferenced => "referenced by no version",
            GcReason::StaleTemporary => "a temporary file no write in progress names",
            GcReason::DeadLease => "a write lease not renewed for long",
        }
    }
}

/// One deletion gc made (or, in a dry run, would make).
#[derive(Debug, Clone, Serialize)]
pub struct GcDeletion {
    /// Provider.
    pub provider: String,
    /// Blob name.
    pub blob: String,
    /// Size as listed (unknown for a crashed write's blob, which is not listed).
    pub size: Option<u64>,
    /// Why.
    pub why: GcReason,
}

/// What gc did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GcReport {
    /// Whether this was a dry run (nothing deleted; `deletions` is what would have been).
    pub dry_run: bool,
    /// Blobs deleted (in a dry run: that would be).
    pub deleted: u64,
    /// Bytes freed (as listed).
    pub bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace period or the floor.
    pub kept_young: u64,
    /// Unreferenced blobs kept because this run could not see every version on the providers
    /// (a provider not listed, a manifest not read or not opening): such a blob may belong to a
    /// version only the unseen copies name.
    pub kept_unsure: u64,
    /// Names under a provider's root that this format never writes, left alone.
    pub foreign: u64,
    /// Crashed writes cleaned up.
    pub crashed_writes: u64,
    /// Versions found on the providers that the local index does not know (kept).
    pub unknown_versions: u64,
    /// Live lease copies (one per provider) of long writes in progress elsewhere, whose blobs
    /// were kept.
    pub leases: u64,
    /// Each deletion, per provider, with its reason.
    pub deletions: Vec<GcDeletion>,
    /// Errors met (gc goes on past them).
    pub errors: Vec<JobError>,
    /// Objects whose manifest does not open with this store's key: their recorded blobs are
    /// kept.
    pub unopened: Unopened,
    /// The caller asked gc to stop: blobs not yet looked at stay until the next gc (each
    /// deletion is judged on its own, so what was deleted is as justified as in a whole run).
    pub stopped: bool,
}

impl Store {
    /// Deletes blobs no version references: first those of writes whose process died, then
    /// unreferenced blobs old enough (see the module documentation for the rules).
    pub async fn gc(&self, opts: &GcOptions, progress: &dyn Progress) -> Result<GcReport, EngineError> {
        let cx = JobContext::start("gc", progress, None);
        let report = self.gc_run(opts, &cx).await;
        if let Ok(r) = &report {
            cx.job.errors(&r.errors);
        }
        cx.finish();
        report
    }

    async fn gc_run(&self, opts: &GcOptions, cx: &JobContext<'_>) -> Result<GcReport, EngineError> {
        let progress = &cx.job;
        progress.phase(Phase::Listing);
        let mut report = GcReport { dry_run: opts.dry_run, ..Default::default() };
        let live_pending = self.gc_crashed_writes(opts, &mut report).await?;
        let now = SystemTime::now();
        // List first, then read what is pending, then what is referenced: a write that commits
        // in between is then in one set or the other. Listings go to disk (a store's whole
        // listing is more than a job should hold); local disks' temporary files are few.
        let mut stage = ListedStage::new()?;
        let mut temps: Vec<(usize, BlobEntry)> = Vec::new();
        // Why this run may not see every version on the providers: then nothing unreferenced
        // is deleted, since a blob may belong to a version only the unseen copies name.
        let mut unseen: Vec<String> = Vec::new();
        for (i, prov) in self.providers.iter().enumerate() {
            let taken = stage.take_listing(i, prov).await?;
            report.foreign += taken.foreign;
            for e in taken.failed {
                report.errors.push(JobError::provider(prov.name(), JobErrorKind::Listing, e));
                unseen.push(format!("`{}` could not be listed", prov.name()));
            }
            match prov.staged().await {
                Ok(l) => {
                    for e in l {
                        if is_own_temp(&e.name) {
                            temps.push((i, e));
                        } else {
                            report.foreign += 1;
                        }
                    }
                }
                Err(e) => report.errors.push(JobError::provider(prov.name(), JobErrorKind::Listing, e)),
            }
        }
        stage.seal()?;
        // Names are what is protected, whichever provider they were recorded on.
        // Every name referenced, hashed: a few bytes an object, whatever the store.
        let mut live = live_pending;
        for p in self.index.pending().await? {
            live.extend(p.blobs.iter().map(|b| &b.blob));
        }
        for prov in &self.providers {
            let mut pages = self.index.blob_pages(prov.name());
            while let Some(page) = pages.next_page().await? {
                live.extend(page.iter().map(|b| &b.blob));
            }
        }
        self.placed_names(&mut live, &mut report.unopened).await?;
        // A version whose manifest does not open may place blobs the index no longer records
        // (one a read found missing once, that is back): nothing unreferenced goes this run.
        if !report.unopened.is_empty() {
            unseen.push(format!("{} objects' manifests do not open with this key", report.unopened.count));
        }
        // Long writes in progress elsewhere keep leases on the providers: their names are live
        // while the lease is fresh by the provider's clock. If a provider's leases cannot be
        // read, nothing the index does not know is deleted anywhere this run.
        let leases = self.scan_leases().await;
        report.leases = leases.live;
        live.extend(&leases.protected);
        let leases_unknown = !leases.errors.is_empty();
        report.errors.extend(leases.errors);
        // The index is a cache: a version on the providers that it does not know (a lost or
        // copied state folder) must never be swept. Open every unreferenced manifest; keep it
        // and its shards unless the index knows a newer version of the name.
        let mut judged: HashSet<String> = HashSet::new();
        let mut protected: HashSet<String> = HashSet::new();
        // Copies that could not be read or did not open, unless another copy of the name did.
        // (provider, blob, why, whether it was read at all)
        let mut unopened: Vec<(&str, String, String, bool)> = Vec::new();
        let mut pages = stage.pages(Some(Shape::Manifest));
        while let Some(page) = pages.next_page()? {
            for copy in page {
                let (prov, name) = (&self.providers[copy.provider], copy.name());
                if live.contains(&name) || judged.contains(&name) {
                    continue; // referenced, or another copy of this version already opened
                }
                match self.unknown_version(prov, &name).await {
                    Ok(Unreferenced::Superseded) => {
                        judged.insert(name);
                    }
                    Ok(Unreferenced::Unknown(blobs)) => {
                        judged.insert(name.clone());
                        report.unknown_versions += 1;
                        protected.insert(name);
                        protected.extend(blobs);
                    }
                    Ok(Unreferenced::Unopened(why)) => unopened.push((prov.name(), name, why, true)),
                    Err(why) => unopened.push((prov.name(), name, why, false)),
                }
            }
        }
        // A copy that does not open is junk (a torn write, rot) if its provider returns its own
        // marker intact: then it returns what it stores. Without its key no shard it names can
        // be read, so nothing recoverable goes with it. Otherwise it may be damage on the way.
        let mut honest: HashMap<&str, bool> = HashMap::new();
        for (prov, blob, why, read) in unopened.into_iter().filter(|(_, blob, _, _)| !judged.contains(blob)) {
            if read && !honest.contains_key(prov) {
                let p = self.provider(prov).expect("listed providers are configured");
                honest.insert(prov, self.marker_reads_intact(p).await);
            }
            if !(read && honest[prov]) {
                protected.insert(blob.clone());
                unseen.push(format!("manifest {blob} on `{prov}` could not be read or opened ({why})"));
            }
        }
        if !unseen.is_empty() {
            report.errors.push(JobError::other(
                JobErrorKind::Listing,
                format!(
                    "unreferenced blobs kept this run, since versions may exist that gc could not see: {}",
                    unseen.join("; ")
                ),
            ));
        }
        if report.unknown_versions > 0 {
            tracing::warn!(
                "{} versions on the providers are missing from the local index; gc keeps them (`outlast recover` brings them in)",
                report.unknown_versions
            );
        }
        let sweep = Sweep {
            live,
            protected,
            garbage: self.index.garbage().await?,
            unsure: leases_unknown || !unseen.is_empty(),
            leases_unknown,
            now,
        };
        progress.set_unit(Unit::Items("listed blobs"));
        let mut total = 0;
        for i in 0..self.providers.len() {
            total += stage.count(i, Shape::Shard)? + stage.count(i, Shape::Manifest)?;
        }
        progress.set_total(total);
        progress.phase(Phase::Working);
        let mut pages = stage.pages(None);
        'pages: while let Some(page) = pages.next_page()? {
            for b in page {
                if progress.stop_requested() {
                    report.stopped = true;
                    break 'pages;
                }
                progress.advance(1);
                let entry = BlobEntry { name: b.name(), size: b.size, modified: b.modified };
                self.gc_one(&self.providers[b.provider], entry, opts, &sweep, &mut report).await?;
            }
        }
        if report.stopped {
            return Ok(report);
        }
        for (i, entry) in temps {
            self.gc_one(&self.providers[i], entry, opts, &sweep, &mut report).await?;
        }
        // Leases whose put stopped renewing them long ago (it crashed, or lost its way).
        for (i, blob) in leases.dead {
            let prov = &self.providers[i];
            let deletion =
                GcDeletion { provider: prov.name().to_string(), blob: blob.clone(), size: None, why: GcReason::DeadLease };
            if !opts.dry_run {
                if let Err(e) = prov.delete(&blob).await {
                    report.errors.push(JobError::provider(prov.name(), JobErrorKind::Provider, e));
                    continue;
                }
            }
            report.deleted += 1;
            report.deletions.push(deletion);
        }
        Ok(report)
    }

    /// Deletes one listed blob if the rules let it go (see the module documentation).
    async fn gc_one(
        &self,
        prov: &Provider,
        entry: BlobEntry,
        opts: &GcOptions,
        sweep: &Sweep,
        report: &mut GcReport,
    ) -> Result<(), EngineError> {
        let why = match staged_target(&entry.name) {
            // A temporary file is kept while a write in progress names its blob.
            Some(target)
                if [names::SHARD_PREFIX, names::MANIFEST_PREFIX].iter().any(|p| sweep.live.contains(&format!("{p}{target}"))) =>
            {
                return Ok(())
            }
            Some(_) => GcReason::StaleTemporary,
            None if sweep.live.contains(&entry.name) || sweep.protected.contains(&entry.name) => return Ok(()),
            None if sweep.garbage.contains(&(prov.name().to_string(), entry.name.clone())) => GcReason::KnownGarbage,
            None => GcReason::Unreferenced,
        };
        if (sweep.unsure && why == GcReason::Unreferenced) || (sweep.leases_unknown && why == GcReason::StaleTemporary) {
            report.kept_unsure += 1;
            return Ok(());
        }
        let floor = if why == GcReason::KnownGarbage { opts.grace } else { opts.grace.max(UNKNOWN_MIN_AGE) };
        let age = entry.modified.and_then(|m| sweep.now.duration_since(m).ok());
        if floor > Duration::ZERO && age.is_none_or(|a| a < floor) {
            report.kept_young += 1;
            return Ok(());
        }
        // The snapshots above may be minutes old: a repair, evacuation or write may have
        // recorded this name since (a rebuilt blob keeps an old blob's name).
        if staged_target(&entry.name).is_none() && self.index.is_name_recorded(&entry.name).await? {
            return Ok(());
        }
        if !opts.dry_run {
            if let Err(e) = prov.delete(&entry.name).await {
                report.errors.push(JobError::provider(prov.name(), JobErrorKind::Provider, e));
                return Ok(());
            }
            if why == GcReason::KnownGarbage {
                self.index.forget_garbage(prov.name(), &entry.name).await?;
            }
        }
        report.deleted += 1;
        report.bytes += entry.size;
        report.deletions.push(GcDeletion { provider: prov.name().to_string(), blob: entry.name, size: Some(entry.size), why });
        Ok(())
    }

    /// Cleans up the writes whose holder died or stopped renewing them: claims each one's
    /// pending record first (from then on it can never commit, so removing its blobs cannot
    /// take anything from a committed version), deletes its blobs, and drops the record once
    /// they are all gone. Returns the blob names of the writes still in progress.
    async fn gc_crashed_writes(&self, opts: &GcOptions, report: &mut GcReport) -> Result<NameSet, EngineError> {
        let mut live = NameSet::new();
        let mut temps: HashMap<String, Vec<String>> = HashMap::new();
        for p in self.index.pending().await? {
            // A write whose holder is gone, or that was not renewed in time, crashed.
            if p.is_live(now_ns()) {
                live.extend(p.blobs.iter().map(|b| &b.blob));
                continue;
            }
            if opts.dry_run {
                report.crashed_writes += 1;
                for b in &p.blobs {
                    report.deletions.push(GcDeletion {
                        provider: b.provider.clone(),
                        blob: b.blob.clone(),
                        size: None,
                        why: GcReason::CrashedWrite,
                    });
                }
                // Its blobs are not live, but a dry run must not reach them through the sweep
                // either: report them once.
                live.extend(p.blobs.iter().map(|b| &b.blob));
                continue;
            }
            // The blobs of a claimed write must not outlive it: a recovery would take its
            // manifest for a version. Until they are all gone, the next gc tries again.
            if !self.index.claim_pending(&p).await? {
                continue;
            }
            let mut all_gone = true;
            for b in &p.blobs {
                let Some(prov) = self.provider(&b.provider) else { continue };
                // What it was still writing is a temporary file (local disks), if anything;
                // each provider's are listed once per gc.
                if !temps.contains_key(prov.name()) {
                    let listed = prov.staged().await.unwrap_or_default();
                    temps.insert(prov.name().to_string(), listed.into_iter().map(|t| t.name).collect());
                }
                let names = temps[prov.name()].iter().filter(|t| staged_target(t) == Some(staged_base(&b.blob)));
                for name in std::iter::once(&b.blob).chain(names) {
                    match prov.delete(name).await {
                        Ok(()) => report.deletions.push(GcDeletion {
                            provider: prov.name().to_string(),
                            blob: name.clone(),
                            size: None,
                            why: GcReason::CrashedWrite,
                        }),
                        Err(e) => {
                            all_gone = false;
                            report.errors.push(JobError::provider(prov.name(), JobErrorKind::Provider, e));
                        }
                    }
                }
            }
            if all_gone {
                self.index.end_pending(&p.vid).await?;
                report.crashed_writes += 1;
            }
        }
        Ok(live)
    }

    /// Every blob name the current versions place, recorded or not: a blob a read found missing
    /// once and that is back, a shard being rebuilt, a copy on the target of an evacuation in
    /// progress, a tombstone's copies. gc never deletes these; repair overwrites them.
    ///
    /// A version whose manifest does not open (sealed under another key) places what its
    /// recorded blobs say, under whatever names they have; it is named in `unopened`.
    async fn placed_names(&self, out: &mut NameSet, unopened: &mut Unopened) -> Result<(), EngineError> {
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            for entry in page {
                let manifest = match self.open_manifest(&entry) {
                    Ok(m) => m,
                    Err(e) => {
                        unopened.note(&entry.name, &e);
                        out.extend(self.index.blobs_of(&entry.stamp.vid).await?.iter().map(|b| &b.blob));
                        continue;
                    }
                };
                let vid = &entry.stamp.vid;
                // A composite is its manifest alone (its parts are objects of their own).
                out.insert(&names::manifest_blob(&self.keys, vid));
                let ManifestBody::Object(om) = manifest.body else { continue };
                let layout = om.layout()?;
                for i in 0..om.placement.len() {
                    for part in 0..layout.part_count() {
                        out.insert(&names::shard_blob(&self.keys, vid, i as u16, part));
                    }
                }
            }
        }
        let mut pages = self.index.tombstone_pages();
        while let Some(page) = pages.next_page().await? {
            for (_, stamp) in page {
                out.insert(&names::manifest_blob(&self.keys, &stamp.vid));
            }
        }
        Ok(())
    }

    /// Reads an unreferenced manifest copy and says what it is (`Err`: it could not be read).
    async fn unknown_version(&self, prov: &Provider, blob: &str) -> Result<Unreferenced, String> {
        let bytes = prov.read(blob).await.map_err(|e| e.to_string())?;
        let m = match Manifest::open(&self.keys, blob, &bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Unreferenced::Unopened(format!("does not open: {e}"))),
        };
        let latest = self.index.latest_stamp(&m.name).await.map_err(|e| e.to_string())?;
        if latest.is_some_and(|t| t > m.stamp.time_ns) {
            return Ok(Unreferenced::Superseded);
        }
        let mut shards = Vec::new();
        if let ManifestBody::Object(o) = &m.body {
            let layout = o.layout().map_err(|e| e.to_string())?;
            for i in 0..o.n {
                for part in 0..layout.part_count() {
                    shards.push(names::shard_blob(&self.keys, &m.stamp.vid, i, part));
                }
            }
        }
        Ok(Unreferenced::Unknown(shards))
    }
}

/// What an unreferenced manifest copy turned out to be.
enum Unreferenced {
    /// A version older than the one the index knows for its name: garbage.
    Superseded,
    /// A version the index does not know: kept, with these shard names.
    Unknown(Vec<String>),
    /// It did not open (corrupt, torn, or corrupted on the way): what it protects is unknown.
    Unopened(String),
}

/// Whether a listed name is a local disk's temporary file of a blob this format writes
/// (`t/TAG.RANDOM`).
fn is_own_temp(name: &str) -> bool {
    staged_target(name).is_some_and(names::is_tag)
}

/// What the sweep keeps, known before it starts.
struct Sweep {
    /// Every name a current version, a write in progress or a live lease references.
    live: NameSet,
    /// Names of versions found on the providers that the index does not know, and of
    /// manifest copies that could not be judged.
    protected: HashSet<String>,
    /// (provider, blob) this store made garbage and could not delete at the time.
    garbage: HashSet<(String, String)>,
    /// Whether this run may not see every version (nothing unreferenced goes).
    unsure: bool,
    /// Whether some provider's leases could not be read (no temporary file goes either).
    leases_unknown: bool,
    now: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::listed::ListedBlob;

    #[test]
    fn only_our_own_shapes_are_ever_candidates() {
        // What the sweep may consider: a staged shard or manifest, or a temporary file of one.
        let own = |name: &str| {
            let entry = BlobEntry { name: name.into(), size: 1, modified: None };
            ListedBlob::parse(0, &entry).is_some() || is_own_temp(name)
        };
        assert!(own("s/0123456789abcdef0123456789abcdef"));
        assert!(own("m/0123456789abcdef0123456789abcdef"));
        assert!(own("t/0123456789abcdef0123456789abcdef.Ab12xY9z"));
        for stranger in [
            "s/holiday.jpg",
            "m/README",
            "t/0123456789abcdef0123456789abcdef",
            "t/0123456789abcdef0123456789abcdef.",
            "t/notes.txt.swp",
            "s/0123456789abcdef0123456789abcdef/inner",
        ] {
            assert!(!own(stranger), "{stranger}");
        }
    }
}
