//! The index: each name's current version and every blob the store references, so `ls` and
//! `stat` need no provider round-trip, jobs know what is owed and placed where, and gc knows
//! what is garbage.
//!
//! It is a cache (docs/decisions/0001): the sealed manifests on the providers are the durable
//! record. It holds sealed manifest bytes, not their plaintext, so data keys stay sealed at rest.
//!
//! [`Index`] is what the engine asks of any backend; [`sqlite::SqliteIndex`] is the one a
//! state folder holds. A shared backend (PostgreSQL, for gateways on several machines) is
//! another implementation of the same trait and must pass the same behaviour suite
//! (`tests.rs`). Methods are async so that a network backend, and a gateway that serves reads
//! while it commits, never hold an async worker.

mod generation;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use outlast_codec::{CodecError, Layout, ObjectManifest, VersionId, VersionStamp};
use outlast_provider::HealthStats;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

pub use sqlite::SqliteIndex;

/// How long a pending write recorded by schema 3 or older (no expiry, judged by its process
/// alone) is taken as live while a process with its pid runs: past this, the pid was reused.
const LEGACY_PENDING_MAX_AGE_NS: u64 = 24 * 3600 * 1_000_000_000;

/// One row of the object table.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Object name.
    pub name: String,
    /// Current version.
    pub stamp: VersionStamp,
    /// Plaintext size.
    pub size: u64,
    /// Content type.
    pub content_type: Option<String>,
    /// Entity tag: hex MD5 of the plaintext where the put took it (S3), else hex BLAKE3.
    pub etag: String,
    /// The sealed manifest, as stored on the providers.
    pub sealed_manifest: Vec<u8>,
    /// Where its shards are and their geometry, in the clear beside the sealed manifest, so
    /// that jobs learn placement without opening every manifest (`None` for rows written
    /// before schema 5, and for tombstones: then the manifest says).
    pub placed: Option<Placed>,
}

/// An object version's geometry and placement: what jobs ask of a manifest most often, kept
/// beside it. Not secret to the local operator (sizes and provider names); the data key and
/// checks stay sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// Plaintext size.
    pub size: u64,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Data shards per segment.
    pub k: u16,
    /// Shards per segment.
    pub n: u16,
    /// Segments per part blob.
    pub segments_per_part: u32,
    /// Shard `i` of every segment lives on `providers[i]`.
    pub providers: Vec<String>,
}

impl Placed {
    /// What `om` says of its geometry and placement.
    pub fn of(om: &ObjectManifest) -> Placed {
        Placed {
            size: om.size,
            segment_size: om.segment_size,
            k: om.k,
            n: om.n,
            segments_per_part: om.segments_per_part,
            providers: om.placement.iter().map(|p| p.provider.clone()).collect(),
        }
    }

    /// The version's geometry.
    pub fn layout(&self) -> Result<Layout, CodecError> {
        Ok(Layout::new(self.size, self.segment_size, self.k, self.n)?.with_segments_per_part(self.segments_per_part))
    }
}

/// A blob the store references (or, while pending, is writing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// Provider name.
    pub provider: String,
    /// Blob name.
    pub blob: String,
    /// Blob size in bytes.
    pub size: u64,
}

/// The index record of a write intent (`intent.rs`): a write in progress, or one that crashed,
/// whose blobs are garbage unless it commits.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    /// Version being written.
    pub vid: VersionId,
    /// Random id of the intent's holder, which alone may renew it (empty for records from
    /// schema 3 or older).
    pub owner: String,
    /// Holding process on this machine, 0 if none: when it is gone the intent is dead before
    /// its expiry.
    pub pid: u32,
    /// When it started.
    pub started_ns: u64,
    /// Past this (local clock), the intent is dead unless renewed; 0 for records from schema
    /// 3 or older, judged by their process alone.
    pub expires_ns: u64,
    /// gc took it for dead: it can never commit, and its record goes once its blobs are gone.
    pub claimed: bool,
    /// Blobs it may have written.
    pub blobs: Vec<BlobRef>,
}

impl PendingWrite {
    /// Whether its holder may still commit it, at `now_ns`.
    pub fn is_live(&self, now_ns: u64) -> bool {
        if self.claimed {
            return false;
        }
        let holder_alive = self.pid == 0 || process_alive(self.pid);
        if self.expires_ns == 0 {
            return self.pid != 0 && holder_alive && now_ns.saturating_sub(self.started_ns) < LEGACY_PENDING_MAX_AGE_NS;
        }
        holder_alive && now_ns < self.expires_ns
    }
}

/// Whether process `pid` runs on this machine (true where that cannot be told).
fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if proc.is_dir() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// A version recovered from the providers, as [`Index::adopt_all`] takes it in.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The version (a tombstone's entry if `tombstone`).
    pub entry: IndexEntry,
    /// Its blobs found by listing.
    pub blobs: Vec<BlobRef>,
    /// Whether it is a deletion.
    pub tombstone: bool,
}

/// What the index records on one provider, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCount {
    /// Blobs of any kind.
    pub blobs: u64,
    /// Shard blobs among them.
    pub shards: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What [`Index::adopt_all`] did with a recovered version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The name was not known: recorded.
    New,
    /// It replaced an older version of the name.
    Newer,
    /// The same version, now with a newer manifest revision.
    Updated,
    /// The same version as recorded (its blob rows refreshed from the listing).
    Same,
    /// The index knows a newer version of the name: nothing changed.
    Older,
}

/// Rows jobs take from the index at once.
pub const PAGE: usize = 1000;

/// How long a command waits for another one (from the same state folder) to finish writing
/// the index before it gives up with [`EngineError::IndexBusy`].
pub const BUSY_WAIT: Duration = Duration::from_secs(10);

/// What the engine asks of an index. Writes that decide something (a commit, a claim, a move)
/// are one transaction each and say in their result whether they took effect; nothing here
/// trusts a value read by an earlier call.
#[async_trait]
pub trait Index: Send + Sync {
    // Write intents (`intent.rs`): begun before any blob is written, ended by a commit or
    // after their blobs are gone, claimed by gc once dead.

    /// Records that a write of `p.vid` started, before any blob is written.
    async fn begin_pending(&self, p: &PendingWrite) -> Result<(), EngineError>;
    /// Pushes the expiry of `owner`'s pending write of `vid` to `expires_ns`: false if gc
    /// claimed it (or it is gone), and then it can never commit.
    async fn renew_pending(&self, vid: &VersionId, owner: &str, expires_ns: u64) -> Result<bool, EngineError>;
    /// Adds blobs to a pending write before they are written (the next part of a stream).
    async fn add_pending_blobs(&self, vid: &VersionId, more: &[BlobRef]) -> Result<(), EngineError>;
    /// Forgets a pending write (after it committed, or after its blobs were removed).
    async fn end_pending(&self, vid: &VersionId) -> Result<(), EngineError>;
    /// Lets go of a write that gave up with blobs it could not remove: no holder and expired,
    /// so the next gc claims it at once rather than after its expiry.
    async fn release_pending(&self, vid: &VersionId) -> Result<(), EngineError>;
    /// Takes over the record `seen` of a write that is no longer live, so that its blobs can
    /// be removed: true if this caller claimed it (the write can then never commit). A holder
    /// that renewed it since `seen` was read keeps it. The record stays, marked, until its
    /// blobs are gone ([`Index::end_pending`]): a gc that cannot delete them all tries again.
    async fn claim_pending(&self, seen: &PendingWrite) -> Result<bool, EngineError>;
    /// All pending writes.
    async fn pending(&self) -> Result<Vec<PendingWrite>, EngineError>;

    // Versions.

    /// Makes a new version current in one transaction: the object row (a tombstone if
    /// `tombstone`), its blobs, the end of its pending record (which must still exist and be
    /// unclaimed), once `precondition` holds. Returns the blobs of the version it replaced (now
    /// garbage); [`EngineError::Superseded`] if a concurrent writer already committed a newer
    /// version, [`EngineError::Conflict`] if the precondition does not hold,
    /// [`EngineError::Fenced`] if `fence` does not.
    async fn commit(
        &self,
        entry: &IndexEntry,
        blobs: &[BlobRef],
        tombstone: bool,
        precondition: Precondition,
        fence: Option<&Fence>,
    ) -> Result<Vec<BlobRef>, EngineError>;
    /// Takes in versions recovered from the providers: each with its blobs found by listing
    /// on the providers in `listed`. An older version than the recorded one changes nothing;
    /// the same version takes the newer sealed manifest and its blob rows on `listed`
    /// providers from the listing; a newer one replaces the old row, as a commit would. One
    /// transaction, so a recovery killed part-way leaves each name whole.
    async fn adopt_all(&self, versions: &[Recovered], listed: &[String]) -> Result<Vec<Adopted>, EngineError>;
    /// The current version of `name`, if any.
    async fn get(&self, name: &str) -> Result<Option<IndexEntry>, EngineError>;
    /// Latest stamp known for `name`, live or deleted (new versions must be newer).
    async fn latest_stamp(&self, name: &str) -> Result<Option<u64>, EngineError>;
    /// Whether `vid` is still the current version of its name (an object or a tombstone).
    async fn is_current(&self, vid: &VersionId) -> Result<bool, EngineError>;
    /// Up to `limit` current objects whose names start with `prefix`, in name order, after
    /// `after`: how jobs, `ls` and an S3 listing walk the store without holding every row.
    async fn objects_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<IndexEntry>, EngineError>;
    /// Up to `limit` tombstones in name order after `after`.
    async fn tombstones_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, VersionStamp)>, EngineError>;
    /// The plaintext bytes of every current object (a job's progress total).
    async fn total_size(&self) -> Result<u64, EngineError>;
    /// Whether the index records any version at all, current or deleted.
    async fn has_versions(&self) -> Result<bool, EngineError>;
    /// Switches version `vid` of `name` from the sealed manifest `was` to `now`, in which
    /// `from`'s shards moved: `from`'s blobs of the version are forgotten, and so is every
    /// copy of `manifest_blob` (holders that missed the rewrite keep the old revision: repair
    /// rewrites them); `added` is recorded; one transaction. False (nothing changed) when the
    /// current manifest is no longer `was`.
    async fn move_shards(&self, moved: &ShardMove) -> Result<bool, EngineError>;

    // Blobs: what exists where. A committed version's missing row is repair debt
    // (docs/decisions/0002).

    /// Every blob recorded for version `vid`.
    async fn blobs_of(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError>;
    /// Every blob recorded on `provider` (small stores and tests; jobs walk
    /// [`Index::blobs_on_page`]).
    async fn blobs_on(&self, provider: &str) -> Result<Vec<BlobRef>, EngineError>;
    /// Up to `limit` blobs recorded on `provider`, in name order after `after`.
    async fn blobs_on_page(&self, provider: &str, after: Option<&str>, limit: usize) -> Result<Vec<BlobRef>, EngineError>;
    /// How many blobs are recorded on `provider`, how many are shards, and their bytes.
    async fn count_blobs_on(&self, provider: &str) -> Result<BlobCount, EngineError>;
    /// At most `count` of the blobs recorded on `provider`, spread evenly over them in name
    /// order (a probe of a few, whatever the provider holds).
    async fn sample_blobs_on(&self, provider: &str, count: usize) -> Result<Vec<BlobRef>, EngineError>;
    /// Records a blob written for object version `vid` (a rebuilt or moved shard, a manifest
    /// copy) if the version's current sealed manifest is still `placed_by`, the one it was
    /// written for; returns whether it was recorded (if not, the blob is garbage for gc).
    async fn add_blob(&self, vid: &VersionId, placed_by: &[u8], b: &BlobRef) -> Result<bool, EngineError>;
    /// Records a copy of tombstone `vid` if it is still the current version of its name.
    async fn add_tombstone_copy(&self, vid: &VersionId, b: &BlobRef) -> Result<bool, EngineError>;
    /// Forgets a blob found missing or damaged, so it counts as repair debt; returns whether
    /// it was recorded (a move may have dropped it meanwhile: then it was no loss).
    async fn forget_blob(&self, provider: &str, blob: &str) -> Result<bool, EngineError>;
    /// Forgets each of `blobs` still recorded as given (same size), in one transaction;
    /// returns how many were.
    async fn forget_blobs(&self, blobs: &[BlobRef]) -> Result<u64, EngineError>;
    /// Whether blob name `blob` is referenced on any provider by a committed version, or named
    /// by a write in progress, now. Names do not depend on the provider, so a name recorded
    /// anywhere is live everywhere (two providers may be one location).
    async fn is_name_recorded(&self, blob: &str) -> Result<bool, EngineError>;

    // Garbage this store made and could not delete at once.

    /// Records blobs this store made garbage but could not delete: gc may delete them after
    /// its grace period, while blobs it knows nothing of wait at least its floor.
    async fn note_garbage(&self, blobs: &[BlobRef], since_ns: u64) -> Result<(), EngineError>;
    /// Every (provider, blob) recorded as garbage.
    async fn garbage(&self) -> Result<std::collections::HashSet<(String, String)>, EngineError>;
    /// Forgets a garbage record once its blob is gone.
    async fn forget_garbage(&self, provider: &str, blob: &str) -> Result<(), EngineError>;

    // Providers: evacuation, identity markers, health.

    /// Providers being evacuated, with their targets: new writes are not placed on them.
    async fn draining(&self) -> Result<Vec<(String, String)>, EngineError>;
    /// Marks `provider` as being evacuated to `target`.
    async fn set_draining(&self, provider: &str, target: &str) -> Result<(), EngineError>;
    /// Forgets that `provider` is being evacuated (it was removed from the configuration).
    async fn clear_draining(&self, provider: &str) -> Result<(), EngineError>;
    /// Records that `provider`'s location holds this store's identity marker: from then on a
    /// location without one is not taken for it.
    async fn record_marker(&self, provider: &str, written_ns: u64) -> Result<(), EngineError>;
    /// Whether this index has known `provider` to hold this store's data (a marker or a
    /// blob recorded): an empty location it knew was wiped or replaced.
    async fn knows_provider(&self, provider: &str) -> Result<bool, EngineError>;
    /// Health observations saved by earlier runs, by provider name.
    async fn load_health(&self) -> Result<Vec<(String, HealthStats)>, EngineError>;
    /// Saves health observations for the next run, waiting at most `busy_wait` for another
    /// writer; `stats` names every configured provider, and other providers' rows go.
    async fn save_health(&self, stats: &[(String, HealthStats)], busy_wait: Duration) -> Result<(), EngineError>;
}

/// What must be current for a commit to take effect: decided inside the commit, so that of two
/// racing conditional writers exactly one wins (S3's If-None-Match and If-Match).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Whatever is current.
    #[default]
    Any,
    /// No current version (none ever, or deleted).
    Absent,
    /// This version is current.
    Current(VersionId),
}

/// A second condition of a commit, judged in the same transaction: the name `name` is still
/// at version `vid`. A face fences a commit on a record of its own (an S3 complete on its
/// upload's record), so that a sweep that removed the record first makes the commit fail,
/// rather than commit a version whose parts that sweep is letting go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The name that must not have changed.
    pub name: String,
    /// Its version when the write began.
    pub vid: VersionId,
}

/// The blobs the index records for one version: what jobs ask of it, shard by shard, is
/// whether a provider holds a name.
#[derive(Debug, Clone, Default)]
pub struct RecordedBlobs(std::collections::HashMap<String, std::collections::HashSet<String>>);

impl RecordedBlobs {
    /// Whether `provider` is recorded as holding `blob`.
    pub fn has(&self, provider: &str, blob: &str) -> bool {
        self.0.get(provider).is_some_and(|names| names.contains(blob))
    }
}

impl FromIterator<BlobRef> for RecordedBlobs {
    fn from_iter<I: IntoIterator<Item = BlobRef>>(blobs: I) -> Self {
        let mut by = std::collections::HashMap::<String, std::collections::HashSet<String>>::new();
        for b in blobs {
            by.entry(b.provider).or_default().insert(b.blob);
        }
        RecordedBlobs(by)
    }
}

/// One evacuation step's change to a version, for [`Index::move_shards`].
#[derive(Debug, Clone)]
pub struct ShardMove {
    /// Object name.
    pub name: String,
    /// The version whose shards moved.
    pub vid: VersionId,
    /// The sealed manifest the move was made from.
    pub was: Vec<u8>,
    /// The sealed manifest that places the moved shards.
    pub now: Vec<u8>,
    /// The provider the shards left.
    pub from: String,
    /// The version's manifest blob name (its copies are rewritten).
    pub manifest_blob: String,
    /// Moved shards and new manifest copies.
    pub added: Vec<BlobRef>,
    /// The placement `now` makes.
    pub placed: Placed,
}

impl dyn Index + '_ {
    /// Objects whose names start with `prefix`, in name order (small stores and tests; jobs
    /// walk `object_pages`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<IndexEntry>, EngineError> {
        let mut all = Vec::new();
        let mut pages = self.object_pages(prefix);
        while let Some(page) = pages.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// The blobs recorded for version `vid`, to ask by provider and name.
    pub async fn recorded_of(&self, vid: &VersionId) -> Result<RecordedBlobs, EngineError> {
        Ok(self.blobs_of(vid).await?.into_iter().collect())
    }

    /// The blobs a pending write may have written.
    pub async fn pending_blobs(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError> {
        Ok(self.pending().await?.into_iter().find(|p| p.vid == *vid).map(|p| p.blobs).unwrap_or_default())
    }

    /// Walks the current object versions a page at a time, in name order.
    pub fn object_pages(&self, prefix: &str) -> ObjectPages<'_> {
        let prefix = prefix.to_string();
        Pages::new(
            move |after| {
                let prefix = prefix.clone();
                Box::pin(async move { self.objects_page(&prefix, after.as_deref(), PAGE).await })
            },
            |e: &IndexEntry| e.name.clone(),
        )
    }

    /// Walks the blobs recorded on `provider` a page at a time, in name order.
    pub fn blob_pages(&self, provider: &str) -> Pages<'_, BlobRef> {
        let provider = provider.to_string();
        Pages::new(
            move |after| {
                let provider = provider.clone();
                Box::pin(async move { self.blobs_on_page(&provider, after.as_deref(), PAGE).await })
            },
            |b: &BlobRef| b.blob.clone(),
        )
    }

    /// Walks the tombstones a page at a time, in name order.
    pub fn tombstone_pages(&self) -> Pages<'_, (String, VersionStamp)> {
        Pages::new(
            move |after| Box::pin(async move { self.tombstones_page(after.as_deref(), PAGE).await }),
            |(name, _): &(String, VersionStamp)| name.clone(),
        )
    }
}

/// A walk over a table in key order, [`PAGE`] rows at a time (see `object_pages`,
/// `blob_pages`, `tombstone_pages`): each page starts after the last key of the one before, so
/// a row committed behind the cursor during the walk is not seen, as if the walk had begun
/// before it, and what is held is a page, whatever the table.
pub struct Pages<'a, T> {
    fetch: Box<FetchAfter<'a, T>>,
    key: fn(&T) -> String,
    after: Option<String>,
    done: bool,
}

/// Reads the page of rows after a key (the first page after none).
type FetchAfter<'a, T> = dyn FnMut(Option<String>) -> BoxFuture<'a, Result<Vec<T>, EngineError>> + Send + 'a;

/// The current object versions, a page at a time.
pub type ObjectPages<'a> = Pages<'a, IndexEntry>;

impl<'a, T> Pages<'a, T> {
    fn new(
        fetch: impl FnMut(Option<String>) -> BoxFuture<'a, Result<Vec<T>, EngineError>> + Send + 'a,
        key: fn(&T) -> String,
    ) -> Self {
        Pages { fetch: Box::new(fetch), key, after: None, done: false }
    }

    /// The next page, or `None` past the last row.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, EngineError> {
        if self.done {
            return Ok(None);
        }
        let page = (self.fetch)(self.after.clone()).await?;
        self.done = page.len() < PAGE;
        self.after = page.last().map(self.key);
        Ok((!page.is_empty()).then_some(page))
    }
}

impl<'a> Pages<'a, IndexEntry> {
    /// What `pick` makes of each row, as a stream that reads the next page only once the
    /// items of the last are taken: a job over the whole store holds a page, not the store.
    pub fn picked<T: 'a, F>(
        self,
        pick: impl FnMut(IndexEntry) -> F + 'a,
    ) -> impl futures::Stream<Item = Result<T, EngineError>> + 'a
    where
        F: std::future::Future<Output = Result<Option<T>, EngineError>> + 'a,
    {
        futures::stream::try_unfold(
            (self, std::collections::VecDeque::new(), pick),
            |(mut pages, mut queue, mut pick)| async move {
                loop {
                    if let Some(item) = queue.pop_front() {
                        return Ok(Some((item, (pages, queue, pick))));
                    }
                    let Some(page) = pages.next_page().await? else { return Ok(None) };
                    for entry in page {
                        queue.extend(pick(entry).await?);
                    }
                }
            },
        )
    }
}
