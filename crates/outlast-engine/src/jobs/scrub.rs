//! Scrub: proves that providers still hold what the index says they hold. A listing of each
//! provider finds missing and truncated blobs for certain, reading no blob bytes; ranged reads
//! of segment shards, all of them or a random sample, find silent corruption. Whatever is found
//! is dropped from the index, so `repair` rebuilds it. See docs/ARCHITECTURE.md for the
//! sampling arithmetic.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use outlast_codec::{names, Manifest, ManifestBody, ObjectManifest};
use outlast_provider::{Provider, ProviderError};
use serde::Serialize;

use super::kit::breaker::Breaker;
use super::kit::context::JobContext;
use super::kit::copies::CopyVerdict;
use crate::error::EngineError;
use crate::index::IndexEntry;
use crate::jobs::status::Phase;
use crate::progress::Progress;
use crate::store::Store;
use crate::unopened::Unopened;

/// Shard reads in flight at once.
const SCRUB_CONCURRENCY: usize = 8;

/// Probability of catching a provider that corrupted at least [`DETECT_FRACTION`] of its
/// segment shards, which every sampled round guarantees at least.
pub const DETECT_PROBABILITY: f64 = 0.99;
/// The damage a sampled round is sized to catch with [`DETECT_PROBABILITY`].
pub const DETECT_FRACTION: f64 = 0.01;

/// Segment shards to read from a provider holding `units` of them, for a sample `fraction`:
/// the fraction, but never fewer than it takes to catch [`DETECT_FRACTION`] damage with
/// [`DETECT_PROBABILITY`] (459), nor more than there are.
pub fn sample_size(units: u64, fraction: f64) -> u64 {
    let by_fraction = (units as f64 * fraction.clamp(0.0, 1.0)).ceil() as u64;
    let floor = ((1.0 - DETECT_PROBABILITY).ln() / (1.0 - DETECT_FRACTION).ln()).ceil() as u64;
    by_fraction.max(floor).min(units)
}

/// How a scrub runs.
#[derive(Debug, Clone, Default)]
pub struct ScrubOptions {
    /// Check a random sample of this fraction of each provider's segment shards instead of
    /// all of them (at least `sample_size`).
    pub sample: Option<f64>,
}

/// What a scrub found on one provider.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProviderScrub {
    /// Provider name.
    pub name: String,
    /// Blobs the index records there.
    pub blobs: u64,
    /// Segment shards the index says it holds (after the listing).
    pub shards: u64,
    /// Segment shards read and checked.
    pub shards_checked: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Blobs missing or of the wrong size (from the listing).
    pub missing: u64,
    /// Segment shards that failed their check (or came back short), and manifest copies that
    /// do not open with the store's key (corrupt, or another blob swapped in).
    pub corrupt: u64,
    /// Manifest copies read and checked against the index.
    pub manifests_checked: u64,
    /// Manifest copies that open but are not the current one: an older revision (a provider
    /// that kept or rolled back to a manifest since rewritten by an evacuation), or the same
    /// revision written by a move that lost a race to another.
    pub stale_manifests: u64,
    /// Whether it could be listed and read at all.
    pub error: Option<String>,
}

/// What a scrub found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScrubReport {
    /// Objects whose shards were considered.
    pub objects: u64,
    /// Per provider.
    pub providers: Vec<ProviderScrub>,
    /// What is owed after this scrub, per provider: damage found now and earlier, and shards
    /// puts could not write, until repair (or, for a provider no longer configured,
    /// evacuation) pays it.
    pub owed: Vec<crate::owed::ProviderOwed>,
    /// Manifests on the providers this index does not know: `outlast recover` brings them in.
    pub unknown_manifests: u64,
    /// Objects skipped because their manifest does not open with this store's key.
    pub unopened: Unopened,
    /// The caller asked the scrub to stop: it made the checks counted per provider (of the
    /// `objects` it reached) and no other; what it found is repair debt as usual.
    pub stopped: bool,
}

impl ScrubReport {
    /// Whether this run found anything missing, corrupt or unreachable on a provider (what
    /// repair rebuilds).
    pub fn found_damage(&self) -> bool {
        self.providers.iter().any(|p| p.missing > 0 || p.corrupt > 0 || p.stale_manifests > 0 || p.error.is_some())
    }

    /// Whether redundancy is owed (found by this run or before it): a scrub that finds nothing
    /// new still does not call such a store healthy.
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Whether the index cannot be the whole story: the providers hold versions it does not
    /// know.
    pub fn index_incomplete(&self) -> bool {
        self.unknown_manifests > 0
    }
}

/// One segment shard to check.
struct Unit {
    provider: usize,
    object: usize,
    shard: usize,
    part: u32,
    segment: u64,
}

impl Store {
    /// Checks the providers against the index; what is damaged becomes repair debt.
    pub async fn scrub(&self, opts: &ScrubOptions, progress: &dyn Progress) -> Result<ScrubReport, EngineError> {
        let cx = JobContext::start("scrub", progress, None);
        let report = self.scrub_run(opts, &cx).await;
        cx.finish();
        report
    }

    async fn scrub_run(&self, opts: &ScrubOptions, cx: &JobContext<'_>) -> Result<ScrubReport, EngineError> {
        let progress = &cx.job;
        progress.phase(Phase::Listing);
        let mut report = ScrubReport {
            providers: self.providers.iter().map(|p| ProviderScrub { name: p.name().into(), ..Default::default() }).collect(),
            ..Default::default()
        };
        let lost = self.find_lost_blobs().await?;
        for (i, p) in self.providers.iter().enumerate() {
            report.providers[i].missing = lost.by_provider.get(p.name()).copied().unwrap_or(0);
            report.providers[i].blobs = self.index.count_blobs_on(p.name()).await?.blobs + report.providers[i].missing;
        }
        for (name, e) in lost.unlisted {
            if let Some(r) = report.providers.iter_mut().find(|r| r.name == name) {
                r.error = Some(e);
            }
        }

        // First the counts per provider (a sample's size depends on them), then the checks a
        // page of objects at a time: what is held at once is one page, whatever the store.
        progress.phase(Phase::Counting);
        let (mut shard_picks, mut manifest_picks) = self.scrub_samplers(opts.sample).await?;
        progress.set_unit(crate::progress::Unit::Items("checks"));
        progress.set_total(shard_picks.iter().chain(&manifest_picks).map(|s| s.want).sum());
        // A provider that hangs costs a few timeouts, not one per blob it holds.
        let breaker = &Breaker::default();
        progress.phase(Phase::Working);
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            let mut objects = Vec::with_capacity(page.len());
            let (mut chosen, mut chosen_manifests) = (Vec::new(), Vec::new());
            for entry in page {
                let Some((om, revision)) = self.scrub_manifest(&entry, &mut report) else { continue };
                let object = objects.len();
                let (manifests, units) = self.checkable(object, &entry, &om).await?;
                for provider in manifests {
                    if manifest_picks[provider].take() {
                        chosen_manifests.push((provider, object));
                    }
                }
                for u in units {
                    report.providers[u.provider].shards += 1;
                    if shard_picks[u.provider].take() {
                        chosen.push(u);
                    }
                }
                objects.push((entry, om, revision));
            }
            report.objects += objects.len() as u64;
            self.check_manifests(chosen_manifests, &objects, &mut report, breaker, progress).await?;
            self.check_shards(chosen, &objects, &mut report, breaker, progress).await?;
            // Asked to stop: the reads under way finished and no new one started (what they
            // found is kept, as in a whole run); the page's other checks wait for the next scrub.
            if progress.stop_requested() {
                report.stopped = true;
                break;
            }
        }
        for r in &report.providers {
            if r.missing > 0 || r.corrupt > 0 || r.stale_manifests > 0 {
                tracing::warn!(
                    provider = r.name,
                    "scrub: {} blobs missing, {} corrupt, {} manifests stale",
                    r.missing,
                    r.corrupt,
                    r.stale_manifests
                );
            }
        }
        report.owed = self.owed().await?;
        report.unknown_manifests = self.unknown_manifests().await?;
        Ok(report)
    }

    /// How many segment shards and manifest copies each provider holds by the index, as
    /// samplers that pick all of them or [`sample_size`] of them.
    async fn scrub_samplers(&self, fraction: Option<f64>) -> Result<(Vec<Sampler>, Vec<Sampler>), EngineError> {
        let count = self.providers.len();
        let (mut shards, mut manifests) = (vec![0u64; count], vec![0u64; count]);
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            for entry in page {
                // Those that do not open are named once, by the checking pass.
                let Some(Manifest { body: ManifestBody::Object(om), .. }) = self.open_manifest_or_note(&entry, None) else {
                    continue;
                };
                let (on, units) = self.checkable(0, &entry, &om).await?;
                on.into_iter().for_each(|p| manifests[p] += 1);
                units.into_iter().for_each(|u| shards[u.provider] += 1);
            }
        }
        let samplers = |counts: Vec<u64>| counts.into_iter().map(|all| Sampler::new(all, fraction)).collect();
        Ok((samplers(shards), samplers(manifests)))
    }

    /// The object manifest of `entry` and its revision, or `None` (counted and named in the
    /// report) when it does not open: one bad manifest must not stop the check of the rest.
    fn scrub_manifest(&self, entry: &IndexEntry, report: &mut ScrubReport) -> Option<(ObjectManifest, u32)> {
        match self.open_manifest_or_note(entry, Some(&mut report.unopened))? {
            Manifest { revision, body: ManifestBody::Object(om), .. } => Some((om, revision)),
            _ => None,
        }
    }

    /// The manifest copies (providers) and segment shards of one object that the index still
    /// records, `object` being its place in the page being checked.
    async fn checkable(
        &self,
        object: usize,
        entry: &IndexEntry,
        om: &ObjectManifest,
    ) -> Result<(Vec<usize>, Vec<Unit>), EngineError> {
        let layout = om.layout()?;
        let recorded = self.index.recorded_of(&entry.stamp.vid).await?;
        let manifest_blob = names::manifest_blob(&self.keys, &entry.stamp.vid);
        let (mut manifests, mut units) = (Vec::new(), Vec::new());
        for (shard, place) in om.placement.iter().enumerate() {
            let Some(provider) = self.providers.iter().position(|p| p.name() == place.provider) else { continue };
            if recorded.has(&place.provider, &manifest_blob) {
                manifests.push(provider);
            }
            for part in 0..layout.part_count() {
                let blob = names::shard_blob(&self.keys, &entry.stamp.vid, shard as u16, part);
                if !recorded.has(&place.provider, &blob) {
                    continue;
                }
                let segments = layout.part_segments(part);
                units.extend(segments.map(|segment| Unit { provider, object, shard, part, segment }));
            }
        }
        Ok((manifests, units))
    }

    /// Reads the chosen segment shards of a page of objects, one ranged read each; what
    /// fails its check is dropped from the index (repair rewrites the part blob it spoils).
    async fn check_shards(
        &self,
        chosen: Vec<Unit>,
        objects: &[(IndexEntry, ObjectManifest, u32)],
        report: &mut ScrubReport,
        breaker: &Breaker,
        progress: &dyn Progress,
    ) -> Result<(), EngineError> {
        let results: Vec<(Unit, u64, Result<bool, String>)> = futures::stream::iter(chosen)
            .take_while(|_| std::future::ready(!progress.stop_requested()))
            .map(|u| async move {
                let (entry, om, _) = &objects[u.object];
                let layout = om.layout().expect("checked when listed");
                let blob = names::shard_blob(&self.keys, &entry.stamp.vid, u.shard as u16, u.part);
                let off = layout.shard_offset(u.segment);
                let len = layout.shard_len(u.segment);
                let p = &self.providers[u.provider];
                let r = guarded(breaker, p, p.read_range(&blob, off..off + len as u64)).await;
                progress.advance(1);
                let check = &om.segment_checks(u.segment)[u.shard];
                let outcome = match r {
                    Ok(body) => Ok(body.len() == len && check.verifies(self.keys.check_seed, &body)),
                    Err(Some(e)) if e.is_not_found() => Ok(false),
                    Err(Some(e)) => Err(e.to_string()),
                    Err(None) => Err(Breaker::skipped(p.name()).message),
                };
                (u, len as u64, outcome)
            })
            .buffer_unordered(SCRUB_CONCURRENCY)
            .collect()
            .await;
        // Damaged segment shards, by the part blob they spoil.
        let mut damaged: BTreeMap<(usize, usize, usize, u32), u64> = BTreeMap::new();
        for (Unit { provider, object, shard, part, .. }, len, outcome) in results {
            let r = &mut report.providers[provider];
            match outcome {
                Ok(good) => {
                    r.shards_checked += 1;
                    r.bytes_read += len;
                    if !good {
                        *damaged.entry((provider, object, shard, part)).or_default() += 1;
                    }
                }
                Err(e) => {
                    r.error.get_or_insert(e);
                }
            }
        }
        for ((provider, object, shard, part), count) in damaged {
            let (entry, _, _) = &objects[object];
            // A blob moved or replaced since the scrub started was deleted on purpose.
            if !self.unchanged(entry).await? {
                continue;
            }
            let blob = names::shard_blob(&self.keys, &entry.stamp.vid, shard as u16, part);
            if self.index.forget_blob(self.providers[provider].name(), &blob).await? {
                report.providers[provider].corrupt += count;
                self.providers[provider].note_corrupt();
            }
        }
        Ok(())
    }

    /// Reads manifest copies (object, by provider) and compares each with the index's: a copy
    /// that is not the current sealed manifest is dropped from the index, so repair rewrites it.
    /// These are what a recovery from the providers alone would read.
    async fn check_manifests(
        &self,
        chosen: Vec<(usize, usize)>,
        objects: &[(IndexEntry, ObjectManifest, u32)],
        report: &mut ScrubReport,
        breaker: &Breaker,
        progress: &dyn Progress,
    ) -> Result<(), EngineError> {
        type Read = ((usize, usize), String, Result<Bytes, Option<ProviderError>>);
        let results: Vec<Read> = futures::stream::iter(chosen)
            .take_while(|_| std::future::ready(!progress.stop_requested()))
            .map(|(provider, object)| async move {
                let blob = names::manifest_blob(&self.keys, &objects[object].0.stamp.vid);
                let p = &self.providers[provider];
                let r = guarded(breaker, p, p.read(&blob)).await;
                progress.advance(1);
                ((provider, object), blob, r)
            })
            .buffer_unordered(SCRUB_CONCURRENCY)
            .collect()
            .await;
        for ((provider, object), blob, r) in results {
            let (entry, _, revision) = &objects[object];
            let out = &mut report.providers[provider];
            if r.as_ref().is_ok_and(|b| b[..] == entry.sealed_manifest[..]) {
                out.manifests_checked += 1;
                out.bytes_read += entry.sealed_manifest.len() as u64;
                continue;
            }
            // Rewritten (moved) or replaced since the scrub started: what it read proves nothing.
            if !self.unchanged(entry).await? {
                continue;
            }
            let bytes = match r {
                Ok(b) => b,
                Err(Some(e)) if e.is_not_found() => {
                    if self.index.forget_blob(&out.name, &blob).await? {
                        out.missing += 1;
                    }
                    continue;
                }
                Err(Some(e)) => {
                    out.error.get_or_insert(e.to_string());
                    continue;
                }
                Err(None) => {
                    out.error.get_or_insert(Breaker::skipped(&out.name).message);
                    continue;
                }
            };
            out.manifests_checked += 1;
            out.bytes_read += bytes.len() as u64;
            match self.judge_manifest_copy(entry, *revision, &blob, &bytes) {
                CopyVerdict::Current => continue,
                CopyVerdict::Stale { blame } => {
                    out.stale_manifests += 1;
                    if blame {
                        self.providers[provider].note_corrupt();
                    }
                }
                CopyVerdict::Newer(found) => {
                    // The index is the stale one here (restored from an old copy?). Nothing is
                    // dropped; this needs a look.
                    out.error
                        .get_or_insert(format!("manifest `{blob}` is revision {found} but the index holds revision {revision}"));
                    continue;
                }
                CopyVerdict::Corrupt => {
                    out.corrupt += 1;
                    self.providers[provider].note_corrupt();
                }
            }
            self.index.forget_blob(&out.name, &blob).await?;
        }
        Ok(())
    }
}

/// Runs one read of a scrub unless `breaker` gave up on `p` (then `Err(None)`), and tells the
/// breaker how it went: "not found" is an answer, not a failure.
async fn guarded<T>(
    breaker: &Breaker,
    p: &Provider,
    read: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, Option<ProviderError>> {
    let Some(_admitted) = breaker.admit(p.name()).await else { return Err(None) };
    let r = read.await;
    breaker.record(p.name(), r.as_ref().is_ok() || r.as_ref().is_err_and(ProviderError::is_not_found));
    r.map_err(Some)
}

/// Picks, one at a time as they come, every item of a run or a uniform random sample of
/// [`sample_size`] of them without holding them: selection sampling, each taken with
/// probability (still wanted) / (still to come).
struct Sampler {
    /// Items still to take (all of them, for a full run).
    want: u64,
    /// Items still to come, as counted before the run.
    left: u64,
    every: bool,
}

impl Sampler {
    fn new(all: u64, fraction: Option<f64>) -> Self {
        match fraction {
            None => Sampler { want: all, left: all, every: true },
            Some(f) => Sampler { want: sample_size(all, f), left: all, every: false },
        }
    }

    fn take(&mut self) -> bool {
        if self.every {
            return true;
        }
        // More items than counted (written since): the sample is already whole.
        if self.left == 0 {
            return false;
        }
        let take = rand::Rng::gen_range(&mut rand::thread_rng(), 0..self.left) < self.want;
        self.left -= 1;
        self.want -= take as u64;
        take
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::index::sample;
    use rand::SeedableRng;

    #[test]
    fn the_sample_is_the_fraction_but_never_below_what_catches_one_percent() {
        assert_eq!(sample_size(100, 0.005), 100);
        assert_eq!(sample_size(1_000, 0.005), 459);
        assert_eq!(sample_size(1_000_000, 0.005), 5_000);
        assert_eq!(sample_size(0, 0.5), 0);
        // (1 - 1%)^459 < 1% <= (1 - 1%)^458
        assert!(0.99f64.powi(459) < 0.01 && 0.99f64.powi(458) >= 0.01);
    }

    /// Taken as the items come, the sample is exactly its size, and falls as often on the
    /// last items as on the first.
    #[test]
    fn a_sample_taken_as_items_come_is_its_size_and_even() {
        let (all, rounds) = (10_000u64, 200);
        let mut hits = vec![0u32; all as usize];
        for _ in 0..rounds {
            let mut s = Sampler::new(all, Some(0.01));
            let taken: Vec<u64> = (0..all).filter(|_| s.take()).collect();
            assert_eq!(taken.len() as u64, sample_size(all, 0.01));
            taken.into_iter().for_each(|t| hits[t as usize] += 1);
        }
        let (first, last): (u32, u32) = (hits[..1000].iter().sum(), hits[9000..].iter().sum());
        assert!((first as f64 / last as f64 - 1.0).abs() < 0.2, "first tenth {first}, last tenth {last}");
        let mut every = Sampler::new(3, None);
        assert!((0..5).all(|_| every.take()), "a full run takes everything, even what came since the count");
    }

    /// The arithmetic, checked by simulation: a provider with 100,000 segment shards (about
    /// 100 GB at 1 MiB shards), 1% of them corrupt, sampled at 0.5% of its bytes, is caught
    /// in at least 99% of rounds (expected: 1 - 0.99^500 = 99.3%).
    #[test]
    fn sampling_half_a_percent_catches_one_percent_damage_in_99_percent_of_rounds() {
        let (units, bad) = (100_000usize, 1_000usize);
        let m = sample_size(units as u64, 0.005) as usize;
        assert_eq!(m, 500);
        assert!((m as f64) / (units as f64) <= 0.005);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let rounds = 2_000;
        let mut caught = 0;
        for _ in 0..rounds {
            // Damage a random 1%, then sample as scrub does.
            let damaged: std::collections::HashSet<usize> = sample(&mut rng, units, bad).into_iter().collect();
            if sample(&mut rng, units, m).into_iter().any(|u| damaged.contains(&u)) {
                caught += 1;
            }
        }
        let rate = caught as f64 / rounds as f64;
        assert!(rate >= 0.985, "caught in {rate} of rounds");
    }
}
