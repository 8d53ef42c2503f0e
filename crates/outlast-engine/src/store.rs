//! The store: one configuration, one key, its providers and its index.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use outlast_codec::{names, Manifest, ManifestBody, MasterKey, StoreKeys, VersionId, VersionStamp};
use outlast_provider::{HealthState, HealthStats, Provider};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::index::{BlobRef, Index, IndexEntry};
use crate::{keyfile, ByteRange, Config, EngineError, GetSink, Progress, Unopened, WriteSink};

/// How long cleanup deletes wait for a provider that does not answer.
const DELETE_PATIENCE: Duration = Duration::from_secs(5);

/// Longest object name accepted (the S3 limit).
pub const MAX_NAME_LEN: usize = 1024;

/// An open store.
pub struct Store {
    pub(crate) config: Config,
    pub(crate) keys: Arc<StoreKeys>,
    pub(crate) providers: Vec<Provider>,
    pub(crate) index: Arc<Index>,
    /// Operations each provider had seen when the store was opened (to tell which ones this
    /// process touched).
    baseline: Vec<u64>,
    /// When long puts take leases and how long gc honours them.
    pub(crate) lease_timing: crate::lease::LeaseTiming,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Health is advice for the next command: not worth a long wait on a busy index.
        let saved = self.index.within(std::time::Duration::from_secs(1), || self.save_health());
        if let Err(e) = saved {
            if matches!(e, EngineError::IndexBusy) {
                // The command's own result says so if it matters; the next one saves.
                tracing::debug!("provider health not saved: {e}");
                return;
            }
            tracing::warn!("could not save provider health: {e}");
        }
    }
}

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

/// Known blobs a probe stats per provider: enough to tell "all gone" from one lost blob.
const PROBE_BLOBS: usize = outlast_provider::health::TERMINATED_AFTER as usize;
/// What a probe of a provider holding nothing of ours asks for (never written).
const PROBE_NAME: &str = "outlast-probe";

/// Up to `count` items spread over `items` (first, last and between).
fn operations(h: &HealthStats) -> u64 {
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

/// What a put may set besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// MIME type.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: Vec<(String, String)>,
}

/// What a put did.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    /// Object name.
    pub name: String,
    /// Plaintext bytes stored.
    pub size: u64,
    /// Hex BLAKE3 of the plaintext.
    pub etag: String,
    /// Version id (hex).
    pub version: String,
    /// Shards made durable (of n).
    pub shards_written: usize,
    /// Providers whose shard is missing: repair debt.
    pub missing: Vec<String>,
}

/// A fault seen while reading, attributed to a provider.
#[derive(Debug, Clone, Serialize)]
pub struct ShardFault {
    /// Provider.
    pub provider: String,
    /// Segment index.
    pub segment: u64,
    /// Shard index.
    pub shard: usize,
    /// What went wrong.
    pub reason: String,
}

/// What a get did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GetReport {
    /// Plaintext bytes written out.
    pub bytes: u64,
    /// Segments that needed parity.
    pub degraded_segments: u64,
    /// Bytes received from providers (shards, including any fetched in vain).
    pub fetched: u64,
    /// Shard requests sent.
    pub requests: u64,
    /// Of those, spares sent because an answer was late (hedging).
    pub hedged: u64,
    /// Every fault, attributed.
    pub faults: Vec<ShardFault>,
}

/// One object as `ls` and `stat` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    /// Name.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// MIME type.
    pub content_type: Option<String>,
    /// Hex BLAKE3 of the plaintext.
    pub etag: String,
    /// Version id (hex).
    pub version: String,
    /// When the version was written (ns since the Unix epoch).
    pub modified_ns: u64,
    /// User metadata (`stat` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    /// Provider of each shard (`stat` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
    /// Coding parameters (`stat` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coding: Option<(u16, u16)>,
}

/// One provider as `outlast providers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    /// Name.
    pub name: String,
    /// Failure domain.
    pub domain: String,
    /// OpenDAL scheme.
    pub scheme: String,
    /// Whether it answered a probe.
    pub reachable: bool,
    /// The probe's error, if any.
    pub error: Option<String>,
    /// Healthy, slow, unreachable or terminated, from the probe and earlier runs.
    pub state: HealthState,
    /// Why, when not healthy.
    pub reason: String,
    /// Median latency of recent reads, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of recent reads, in milliseconds.
    pub p95_ms: Option<f64>,
    /// Shard blobs the index places there.
    pub shards: u64,
    /// Bytes of all blobs (shards and manifests) the index places there.
    pub bytes: u64,
    /// What it owes (redundancy placed there and not recorded as stored), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owed: Option<crate::owed::ProviderOwed>,
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Store {
    /// Opens the store described by `config`, loading its key file.
    pub fn open(config: Config) -> Result<Store, EngineError> {
        let key = keyfile::load(&config.key_path())?;
        Self::open_with_key(config, key)
    }

    /// Opens the store with a key already in hand; refuses a key whose fingerprint differs from
    /// the one recorded in the config.
    pub fn open_with_key(config: Config, key: MasterKey) -> Result<Store, EngineError> {
        if let Some(expected) = &config.key_fingerprint {
            let found = key.fingerprint();
            if &found != expected {
                let path = config.key_path();
                if keyfile::is_passphrase_file(&path) {
                    return Err(EngineError::WrongPassphrase { path });
                }
                return Err(EngineError::WrongKey { path, found, expected: expected.clone() });
            }
        }
        let patience = config.timeouts.patience();
        let index = Arc::new(Index::open(&config.state_dir())?);
        let keys = Arc::new(key.store_keys());
        let configured = config.providers.iter().map(|s| s.name.clone()).collect();
        let identity = crate::identity::IdentityKit::new(keys.clone(), index.clone(), configured);
        let providers: Vec<Provider> = config
            .providers
            .iter()
            .map(|s| Provider::build_or_unavailable(s).with_patience(patience).with_identity_check(identity.check_for(&s.name)))
            .collect();
        for p in &providers {
            if let Some(e) = p.build_error() {
                tracing::error!(provider = p.name(), "provider unavailable: {e}");
            }
        }
        for (name, stats) in index.load_health()? {
            if let Some(p) = providers.iter().find(|p| p.name() == name) {
                p.restore_health(stats);
            }
        }
        let baseline = providers.iter().map(|p| operations(&p.health())).collect();
        let store = Store { keys, providers, index, config, baseline, lease_timing: Default::default() };
        for h in store.health() {
            if h.state == HealthState::Terminated {
                tracing::error!(provider = h.name, "provider `{}` looked TERMINATED when last used: {}", h.name, h.reason);
            }
        }
        Ok(store)
    }

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

    /// Saves the providers' health observations for the next run (also done on drop).
    pub fn save_health(&self) -> Result<(), EngineError> {
        let stats: Vec<(&str, HealthStats)> = self.providers.iter().map(|p| (p.name(), p.health())).collect();
        self.index.save_health(&stats)
    }

    /// Changes when long puts take leases and how long gc honours them (tests and tools that
    /// cannot wait minutes; the defaults suit everything else).
    pub fn set_lease_timing(&mut self, timing: crate::lease::LeaseTiming) {
        self.lease_timing = timing;
    }

    /// Changes how long providers' identity verdicts stand (tests that cannot wait).
    pub fn set_identity_recheck(&self, recheck: outlast_provider::IdentityRecheck) {
        for p in &self.providers {
            p.set_identity_recheck(recheck);
        }
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The local index (faces that list or report read it directly).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The provider named `name` (faces show it; tests inject faults into it).
    pub fn provider_named(&self, name: &str) -> Option<&Provider> {
        self.provider(name)
    }

    pub(crate) fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name() == name)
    }

    pub(crate) fn check_name(name: &str) -> Result<(), EngineError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(EngineError::Config {
                path: "(command line)".into(),
                field: "NAME".into(),
                message: format!("object names must be 1 to {MAX_NAME_LEN} bytes without NUL"),
            });
        }
        Ok(())
    }

    /// A stamp newer than anything the index knows for `name`.
    pub(crate) fn next_stamp(&self, name: &str) -> Result<VersionStamp, EngineError> {
        let latest = self.index.latest_stamp(name)?.unwrap_or(0);
        Ok(VersionStamp { time_ns: now_ns().max(latest + 1), vid: VersionId::generate() })
    }

    /// Stores `src` under `name`; visible only once durable on the write quorum.
    pub async fn put<R: AsyncRead + Unpin + Send>(
        &self,
        name: &str,
        src: R,
        opts: PutOptions,
        progress: &dyn Progress,
    ) -> Result<PutReport, EngineError> {
        crate::put::put(self, name, src, opts, progress).await
    }

    /// Writes `name` (or the plaintext bytes `range` of it) to `dst`.
    pub async fn get<W: AsyncWrite + Unpin + Send>(
        &self,
        name: &str,
        range: Option<ByteRange>,
        dst: W,
        progress: &dyn Progress,
    ) -> Result<GetReport, EngineError> {
        crate::get::get(self, name, range, &mut WriteSink(dst), progress, &Default::default()).await
    }

    /// Like [`Self::get`], but hands the plaintext over in whole pieces: a sink that writes on
    /// another thread or into a response body saves a copy and a wait per piece.
    pub async fn get_into(
        &self,
        name: &str,
        range: Option<ByteRange>,
        sink: &mut impl GetSink,
        progress: &dyn Progress,
    ) -> Result<GetReport, EngineError> {
        crate::get::get(self, name, range, sink, progress, &Default::default()).await
    }

    fn info(e: &IndexEntry) -> ObjectInfo {
        ObjectInfo {
            name: e.name.clone(),
            size: e.size,
            content_type: e.content_type.clone(),
            etag: e.etag.clone(),
            version: e.stamp.vid.to_hex(),
            modified_ns: e.stamp.time_ns,
            metadata: Vec::new(),
            placement: Vec::new(),
            coding: None,
        }
    }

    /// Objects whose names start with `prefix`, from the index alone.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, EngineError> {
        Ok(self.index.list(prefix)?.iter().map(Self::info).collect())
    }

    pub(crate) fn open_manifest(&self, e: &IndexEntry) -> Result<Manifest, EngineError> {
        let blob = names::manifest_blob(&self.keys, &e.stamp.vid);
        let m = Manifest::open(&self.keys, &blob, &e.sealed_manifest)?;
        if m.name != e.name || m.stamp != e.stamp {
            return Err(outlast_codec::CodecError::ManifestFormat("manifest does not match its index entry".into()).into());
        }
        Ok(m)
    }

    /// `entry`'s manifest, or `None` when it does not open with this store's key (sealed
    /// under another key, a damaged index): a store-wide job names such an object in
    /// `unopened`, skips it and carries on.
    pub(crate) fn open_manifest_or_note(&self, entry: &IndexEntry, unopened: Option<&mut Unopened>) -> Option<Manifest> {
        match self.open_manifest(entry) {
            Ok(m) => Some(m),
            Err(e) => {
                if let Some(unopened) = unopened {
                    unopened.note(&entry.name, &e);
                }
                None
            }
        }
    }

    /// Everything known about `name`, from the index and its sealed manifest.
    pub fn stat(&self, name: &str) -> Result<ObjectInfo, EngineError> {
        let e = self.index.get(name)?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
        let mut info = Self::info(&e);
        if let ManifestBody::Object(o) = self.open_manifest(&e)?.body {
            info.metadata = o.user_metadata;
            info.placement = o.placement.into_iter().map(|p| p.provider).collect();
            info.coding = Some((o.k, o.n));
        }
        Ok(info)
    }

    /// Deletes `name` by committing a tombstone (so recovery keeps it deleted), then removes the
    /// old version's blobs.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        Self::check_name(name)?;
        if self.index.get(name)?.is_none() {
            return Err(EngineError::NotFound(name.to_string()));
        }
        let stamp = self.next_stamp(name)?;
        let manifest = Manifest { name: name.to_string(), stamp, body: ManifestBody::Tombstone, revision: 0 };
        let blob = names::manifest_blob(&self.keys, &stamp.vid);
        let sealed = bytes::Bytes::from(manifest.seal(&self.keys, &blob));
        let targets: Vec<BlobRef> =
            self.providers.iter().map(|p| BlobRef { provider: p.name().into(), blob: blob.clone(), size: 0 }).collect();
        // A tombstone is one small blob per provider: its intent takes no lease.
        let intent = crate::intent::WriteIntent::begin(self, stamp.vid, targets, 0, Vec::new())?;
        let written = self.write_tombstone(name, stamp, &blob, sealed).await;
        intent.finish().await;
        match written {
            Ok(garbage) => {
                self.delete_blobs(&garbage).await;
                Ok(())
            }
            Err(e) => {
                self.abandon_write(&stamp.vid).await?;
                Err(e)
            }
        }
    }

    async fn write_tombstone(
        &self,
        name: &str,
        stamp: VersionStamp,
        blob: &str,
        sealed: bytes::Bytes,
    ) -> Result<Vec<BlobRef>, EngineError> {
        let q = self.config.coding.write_quorum();
        let writes = self.providers.iter().enumerate().map(|(i, p)| (i, p.write(blob, sealed.clone()))).collect();
        // As for a put: a provider known to be slow is not waited for once the quorum is in
        // (its copy is debt that repair pays).
        let slow = self.slow_providers();
        let impatient: Vec<usize> =
            (0..self.providers.len()).filter(|&i| slow.iter().any(|s| s == self.providers[i].name())).collect();
        let out = crate::quorum::gather(writes, q, &impatient).await;
        out.note_write_times(|i| &self.providers[i]);
        let mut written = Vec::new();
        let mut failures: Vec<String> =
            out.abandoned.iter().map(|&i| format!("`{}` did not take the tombstone in time", self.providers[i].name())).collect();
        for (i, r) in out.answered {
            match r {
                Ok(()) => written.push(BlobRef {
                    provider: self.providers[i].name().to_string(),
                    blob: blob.to_string(),
                    size: sealed.len() as u64,
                }),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if written.len() < q {
            return Err(EngineError::Quorum { name: name.into(), ok: written.len(), needed: q, detail: failures.join("; ") });
        }
        let entry = IndexEntry {
            name: name.to_string(),
            stamp,
            size: 0,
            content_type: None,
            etag: String::new(),
            sealed_manifest: sealed.to_vec(),
        };
        self.index.commit(&entry, &written, true)
    }

    /// Removes what an uncommitted write may have left; what cannot be removed now stays
    /// recorded as pending, for gc.
    pub(crate) async fn abandon_write(&self, vid: &VersionId) -> Result<(), EngineError> {
        let pending = self.index.pending_blobs(vid)?;
        if self.delete_blobs(&pending).await == pending.len() {
            self.index.end_pending(vid)?;
        } else {
            self.index.release_pending(vid)?;
        }
        Ok(())
    }

    /// Best-effort deletion, all at once, waiting at most [`DELETE_PATIENCE`] for a provider
    /// that does not answer; what is not deleted is recorded as garbage, which gc removes after
    /// its grace period.
    pub(crate) async fn delete_blobs(&self, blobs: &[BlobRef]) -> usize {
        let results = join_all(blobs.iter().map(|b| async move {
            match self.provider(&b.provider) {
                Some(p) => tokio::time::timeout(DELETE_PATIENCE, p.delete(&b.blob)).await.is_ok_and(|r| r.is_ok()),
                None => false,
            }
        }))
        .await;
        let left: Vec<BlobRef> = blobs.iter().zip(&results).filter(|(_, ok)| !**ok).map(|(b, _)| b.clone()).collect();
        if let Err(e) = self.index.note_garbage(&left, now_ns()) {
            tracing::warn!("could not record {} blobs left to gc: {e}", left.len());
        }
        results.into_iter().filter(|ok| *ok).count()
    }

    /// Each provider: its state, and what the index places there. The probe asks for a few
    /// blobs the store wrote there: a deleted bucket or folder answers "not found" to every
    /// one, which an empty probe could not tell from a healthy provider.
    pub async fn providers(&self) -> Result<Vec<ProviderReport>, EngineError> {
        let (mut held, mut samples) = (Vec::new(), Vec::new());
        for p in &self.providers {
            held.push(self.index.count_blobs_on(p.name())?);
            samples.push(self.index.sample_blobs_on(p.name(), PROBE_BLOBS)?);
        }
        let probes = join_all(self.providers.iter().zip(samples).map(|(p, known)| async move {
            if known.is_empty() {
                return match p.stat(PROBE_NAME).await {
                    Ok(_) => None,
                    Err(e) if e.is_not_found() => None,
                    Err(e) => Some(e.to_string()),
                };
            }
            let mut error = None;
            for b in known {
                match p.stat(&b.blob).await {
                    Ok(_) => p.note_known_blob(true),
                    Err(e) if e.is_not_found() => {
                        p.note_known_blob(false);
                        error.get_or_insert_with(|| format!("blob `{}` it held is gone", b.blob));
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            error
        }))
        .await;
        let health = self.health();
        let mut owed: HashMap<String, crate::owed::ProviderOwed> =
            self.owed()?.into_iter().map(|o| (o.provider.clone(), o)).collect();
        let mut out = Vec::new();
        for (((p, err), blobs), h) in self.providers.iter().zip(probes).zip(held).zip(health) {
            // A provider whose probe failed is never shown healthy.
            let (state, reason) = match &err {
                Some(e) if h.state.is_usable() => (HealthState::Unreachable, e.clone()),
                _ => (h.state, h.reason),
            };
            out.push(ProviderReport {
                name: p.name().to_string(),
                domain: p.domain().to_string(),
                scheme: p.scheme().to_string(),
                reachable: err.is_none() && state.is_usable(),
                error: err,
                state,
                reason,
                p50_ms: h.p50_ms,
                p95_ms: h.p95_ms,
                shards: blobs.shards,
                bytes: blobs.bytes,
                owed: owed.remove(p.name()),
            });
        }
        // Providers the placements still name that the configuration no longer has (removed
        // or renamed by hand): their share is owed until an evacuation rebuilds it elsewhere.
        for (name, o) in owed {
            let why = format!("not in the configuration; `outlast evacuate {name} --to NEW` rebuilds its share elsewhere");
            out.push(ProviderReport {
                name,
                domain: String::new(),
                scheme: String::new(),
                reachable: false,
                error: Some(why.clone()),
                state: HealthState::Unreachable,
                reason: why,
                p50_ms: None,
                p95_ms: None,
                shards: 0,
                bytes: 0,
                owed: Some(o),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
