//! Multipart uploads (decision 0008): an upload is a record under [`UPLOADS`] that outlives
//! requests and processes; each part attempt is an ordinary object under [`PARTS`], written as
//! its body streams in; completing commits the key as a composite of the chosen attempts,
//! whose version id the engine claims under the upload id on the providers.
//!
//! The record moves open -> completing -> gone, each step conditional on the version seen, so
//! that of a complete, an abort and an expiry racing on one upload exactly one proceeds, and
//! parts are let go only once no composite can come to name them: when the record is gone and
//! no composite the providers' claims list for the upload may live, by this index or by the
//! providers ([`Store::composites_claimed`], [`Store::composite_may_live`]), and no composite
//! current in this index names them. Parts are let go through tombstones (`Store::remove`):
//! the blobs then go by the engine's own rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outlast_codec::VersionId;
use outlast_engine::index::IndexEntry;
use outlast_engine::progress::NoProgress;
use outlast_engine::{BodyMd5, CompositeOptions, EngineError, Fence, ObjectInfo, Precondition, PutOptions, Store, WriteSink};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::records::now_ns;

/// Prefix of upload records: `.outlast/upload/ID`.
pub const UPLOADS: &str = ".outlast/upload/";
/// Prefix of part attempts: `.outlast/part/ID/NNNNN/ATTEMPT`.
pub const PARTS: &str = ".outlast/part/";
/// How long abandoned uploads are kept by default.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a complete may take between marking its record and committing: past this a
/// record still marked is taken for a complete that died, and the upload is let go.
const COMPLETE_PATIENCE: Duration = Duration::from_secs(3600);
/// How many uploads' claimed composites a gateway keeps in memory (about 100 bytes each).
const REMEMBERED_UPLOADS: usize = 100_000;
/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: i32 = 10_000;
/// Smallest part but the last, as S3 has it.
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// What an upload is for, kept from its creation to its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Bucket and key the upload completes to.
    pub bucket: String,
    pub key: String,
    /// Content type and user metadata given at creation.
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// When it was created (ns since the Unix epoch, this gateway's clock).
    pub created_ns: u64,
    /// When a complete marked it; `None` while parts may still come.
    #[serde(default)]
    pub completing_ns: Option<u64>,
}

/// One upload as its record holds it, with the record's index entry (its version is what
/// the next step of the record is conditional on).
pub struct Upload {
    pub id: VersionId,
    pub entry: IndexEntry,
    pub record: UploadRecord,
}

/// Why a step of an upload could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such upload (never, aborted, expired, completed, or for another key).
    #[error("the upload does not exist (it may have been aborted, completed or expired)")]
    NoSuchUpload,
    /// The parts listed are not in ascending order.
    #[error("the parts are not listed in ascending order")]
    PartOrder,
    /// A listed part was not uploaded, or not with that ETag.
    #[error("part {0} was not uploaded with the ETag given")]
    Part(i32),
    /// A part other than the last is smaller than S3 allows.
    #[error("part {0} is smaller than 5 MiB and is not the last")]
    TooSmall(i32),
    /// No part listed.
    #[error("a complete must list at least one part")]
    NoParts,
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a complete answers: the ETag and size of the version it made, and its index entry
/// while that version is current.
#[derive(Debug, Clone)]
pub struct Completed {
    /// S3's `MD5-of-MD5s-N` of the parts, as the client checks it.
    pub etag: String,
    /// Bytes of the object made.
    pub size: u64,
    /// `None` when a newer write of the key, running at the same time, committed first: the
    /// complete took effect just before it and was replaced, as S3 has it.
    pub entry: Option<IndexEntry>,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Uploads past their age, aborted.
    pub expired: u64,
    /// Completes that died after their commit, finished.
    pub finished: u64,
    /// Part attempts let go.
    pub parts_removed: u64,
}

/// The uploads of one store.
pub struct Uploads {
    store: Arc<Store>,
    expiry: Duration,
    /// The composites last found claimed for an upload whose parts they keep: while one is
    /// current in the index, the sweep need not ask the providers again.
    claimed: Mutex<HashMap<VersionId, Vec<VersionId>>>,
}

/// The upload id a client sees: the upload's id in hex.
pub fn upload_id(id: &VersionId) -> String {
    id.to_hex()
}

/// The id in `s`, if it is one.
pub fn parse_upload_id(s: &str) -> Option<VersionId> {
    let bytes = hex::decode(s).ok()?;
    Some(VersionId(bytes.try_into().ok()?))
}

fn record_name(id: &VersionId) -> String {
    format!("{UPLOADS}{}", id.to_hex())
}

fn parts_prefix(id: &VersionId) -> String {
    format!("{PARTS}{}/", id.to_hex())
}

/// The upload an attempt's name belongs to.
fn upload_of(name: &str) -> Option<VersionId> {
    name.strip_prefix(PARTS)?.split('/').next().and_then(parse_upload_id)
}

/// The part number of an attempt's name under its upload's prefix.
fn part_number_of(rest: &str) -> Option<i32> {
    rest.split('/').next()?.parse().ok()
}

impl Uploads {
    /// The uploads of `store`; those left open longer than `expiry` are aborted by
    /// [`Self::sweep`].
    pub fn new(store: Arc<Store>, expiry: Duration) -> Self {
        Uploads { store, expiry, claimed: Mutex::new(HashMap::new()) }
    }

    /// How often the gateway sweeps: a quarter of the expiry, between a second and ten
    /// minutes.
    pub fn sweep_interval(&self) -> Duration {
        (self.expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
    }

    /// Records a new upload of `bucket`/`key`; returns its id.
    pub async fn create(&self, record: UploadRecord) -> Result<VersionId, EngineError> {
        let id = VersionId::generate();
        self.put_record(&id, &record, Precondition::Absent).await?;
        Ok(id)
    }

    async fn put_record(&self, id: &VersionId, r: &UploadRecord, precondition: Precondition) -> Result<(), EngineError> {
        let body = serde_json::to_vec(r).expect("records serialize");
        let opts = PutOptions { content_type: Some("application/json".into()), precondition, ..Default::default() };
        self.store.put(&record_name(id), &body[..], opts, &NoProgress).await?;
        Ok(())
    }

    /// The upload `id`, whatever its state.
    pub async fn get(&self, id: &VersionId) -> Result<Option<Upload>, EngineError> {
        let Some(entry) = self.store.current(&record_name(id)).await? else { return Ok(None) };
        let mut sink = WriteSink(Vec::with_capacity(entry.size as usize));
        self.store.get_version_into(&entry, None, &mut sink, &NoProgress).await?;
        let record = serde_json::from_slice(&sink.0)
            .map_err(|e| EngineError::State(format!("the upload record `{}` does not parse: {e}", entry.name)))?;
        Ok(Some(Upload { id: *id, entry, record }))
    }

    /// The upload `id` if its record reads now. One that does not (its providers down, or
    /// replaced through another state folder, so that this index is stale) is passed over:
    /// nothing is decided about an upload whose record cannot be read.
    async fn readable(&self, id: &VersionId) -> Option<Upload> {
        match self.get(id).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(upload = %id.to_hex(), "passed over: its record does not read: {e}");
                None
            }
        }
    }

    /// The upload `id` of `bucket`/`key` while parts may still come to it.
    pub async fn open(&self, bucket: &str, key: &str, id: &str) -> Result<Upload, UploadError> {
        let id = parse_upload_id(id).ok_or(UploadError::NoSuchUpload)?;
        let u = self.get(&id).await?.ok_or(UploadError::NoSuchUpload)?;
        let r = &u.record;
        let expired = now_ns().saturating_sub(r.created_ns) > self.expiry.as_nanos() as u64;
        if r.bucket != bucket || r.key != key || r.completing_ns.is_some() || expired {
            return Err(UploadError::NoSuchUpload);
        }
        Ok(u)
    }

    /// The name a new attempt at part `number` of `u` is written under: later attempts sort
    /// after earlier ones.
    pub fn attempt_name(u: &Upload, number: i32) -> String {
        let nonce: u32 = rand::rngs::OsRng.gen();
        format!("{}{number:05}/{:016x}{nonce:08x}", parts_prefix(&u.id), now_ns())
    }

    /// Every attempt of upload `id`, by part number, oldest first.
    pub async fn attempts(&self, id: &VersionId) -> Result<BTreeMap<i32, Vec<ObjectInfo>>, EngineError> {
        let prefix = parts_prefix(id);
        let mut out: BTreeMap<i32, Vec<ObjectInfo>> = BTreeMap::new();
        for info in self.store.list(&prefix).await? {
            if let Some(n) = part_number_of(&info.name[prefix.len()..]) {
                out.entry(n).or_default().push(info);
            }
        }
        Ok(out)
    }

    /// Completes `u` with `listed` (part number and ETag, in order): the key becomes the
    /// composite of those attempts once `precondition` holds, the other attempts and the
    /// record go.
    pub async fn complete(
        &self,
        u: Upload,
        listed: &[(i32, String)],
        precondition: Precondition,
    ) -> Result<Completed, UploadError> {
        if listed.is_empty() {
            return Err(UploadError::NoParts);
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(UploadError::PartOrder);
        }
        let attempts = self.attempts(&u.id).await?;
        let mut chosen = Vec::with_capacity(listed.len());
        for (i, (number, etag)) in listed.iter().enumerate() {
            // The newest attempt with that ETag: a part sent again with the same bytes is
            // the same part.
            let info = attempts
                .get(number)
                .and_then(|a| a.iter().rev().find(|info| info.etag == *etag))
                .ok_or(UploadError::Part(*number))?;
            if i + 1 < listed.len() && info.size < MIN_PART_SIZE {
                return Err(UploadError::TooSmall(*number));
            }
            let entry = self.store.current(&info.name).await?.ok_or(UploadError::Part(*number))?;
            chosen.push(entry);
        }
        // Mark the record: from here no abort or expiry lets the parts go, and no second
        // complete starts.
        let mut marked = u.record.clone();
        marked.completing_ns = Some(now_ns());
        match self.put_record(&u.id, &marked, Precondition::Current(u.entry.stamp.vid)).await {
            Ok(()) => {}
            Err(EngineError::Conflict(_) | EngineError::Superseded { .. }) => return Err(UploadError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        }
        let marked_entry = self.store.current(&record_name(&u.id)).await?.ok_or(UploadError::NoSuchUpload)?;
        let name = format!("{}/{}", u.record.bucket, u.record.key);
        let opts = CompositeOptions {
            put: PutOptions {
                content_type: u.record.content_type.clone(),
                metadata: u.record.metadata.clone(),
                precondition,
                md5: BodyMd5::Skip,
            },
            origin: u.id,
            // A sweep or abort that removed the record first has let go, or is letting go, of
            // the parts: the composite must not commit then.
            fence: Some(Fence { name: record_name(&u.id), vid: marked_entry.stamp.vid }),
        };
        let unconditional = matches!(precondition, Precondition::Any);
        let committed = match self.store.commit_composite(&name, &chosen, opts).await {
            Ok(e) => {
                self.remember(u.id, vec![e.stamp.vid]);
                e
            }
            // A newer write of the key, running at the same time, committed first. As for a
            // PUT, S3 answers both: this complete took effect just before the newer write,
            // which replaced it, so the upload ends and nothing is left to name its parts. (A
            // conditional complete stays refused: its condition was judged against neither.)
            Err(EngineError::Superseded { size, etag, .. }) if unconditional => {
                self.end_replaced(&u.id, &marked_entry).await;
                return Ok(Completed { etag, size, entry: None });
            }
            // The record was removed (or changed) under the complete: the upload ended.
            Err(EngineError::Fenced(_)) => return Err(UploadError::NoSuchUpload),
            Err(e) => {
                // Nothing was committed: the upload is open again, so the client may retry.
                let reopened = self.put_record(&u.id, &u.record, Precondition::Current(marked_entry.stamp.vid)).await;
                if let Err(r) = reopened {
                    tracing::warn!(upload = %u.id.to_hex(), "could not reopen the upload after a failed complete: {r}");
                }
                return Err(e.into());
            }
        };
        // Committed: what is left is tidying, which a sweep finishes if it fails here.
        let keep: HashSet<String> = chosen.into_iter().map(|e| e.name).collect();
        let tidied = match self.let_go(&u.id, &keep).await {
            Ok(_) => self.remove_record(&u.id, &marked_entry).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = tidied {
            tracing::warn!(upload = %u.id.to_hex(), "completed; its leftovers wait for the next sweep: {e}");
        }
        Ok(Completed { etag: committed.etag.clone(), size: committed.size, entry: Some(committed) })
    }

    /// Ends upload `id`, whose complete was replaced at once by a newer write: its marked
    /// record (`marked`) goes, then its parts once nothing may name them. What fails here is
    /// left to the sweep, which takes a marked record whose composite is not current for a
    /// complete that died.
    async fn end_replaced(&self, id: &VersionId, marked: &IndexEntry) {
        let ended = async {
            if self.remove_record(id, marked).await? && self.free(id, &mut None).await? {
                self.let_go_all(id).await?;
            }
            Ok::<_, EngineError>(())
        };
        if let Err(e) = ended.await {
            tracing::warn!(upload = %id.to_hex(), "completed and replaced; its parts wait for the next sweep: {e}");
        }
    }

    /// Aborts `u`: its record goes, then its parts unless a composite names them.
    pub async fn abort(&self, u: Upload) -> Result<(), UploadError> {
        if u.record.completing_ns.is_some() {
            // A complete is under way (or done): its parts are not the abort's to take.
            return Err(UploadError::NoSuchUpload);
        }
        match self.remove_record(&u.id, &u.entry).await {
            Ok(true) => {}
            Ok(false) => return Err(UploadError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        }
        if self.free(&u.id, &mut None).await? {
            self.let_go_all(&u.id).await?;
        }
        Ok(())
    }

    /// Whether nothing may name upload `id`'s attempts: no composite its claims list, nor the
    /// one whose id is the upload id (its form before claims), may live by this index or by the
    /// providers, and no composite current in this index names one of them (a claim lost
    /// from every provider must not lose a live object). `named` holds the uploads this
    /// index's composites name, read once per sweep.
    async fn free(&self, id: &VersionId, named: &mut Option<Option<HashSet<VersionId>>>) -> Result<bool, EngineError> {
        if self.may_be_claimed(id).await? {
            return Ok(false);
        }
        if named.is_none() {
            *named = Some(self.named_in_index().await?);
        }
        Ok(named.as_ref().and_then(|n| n.as_ref()).is_some_and(|n| !n.contains(id)))
    }

    /// The uploads whose attempts the current composites of this index name; `None` when a
    /// composite's manifest does not open (then nothing is let go).
    async fn named_in_index(&self) -> Result<Option<HashSet<VersionId>>, EngineError> {
        let mut named = HashSet::new();
        // A page of the index at a time, each row read once.
        let mut pages = self.store.index().object_pages("");
        while let Some(page) = pages.next_page().await? {
            // Only a composite has S3's multipart ETag form (`-` and the part count).
            for entry in page.iter().filter(|e| e.etag.contains('-')) {
                match self.store.composite_parts(entry) {
                    Ok(parts) => named.extend(parts.unwrap_or_default().iter().filter_map(|p| upload_of(&p.name))),
                    Err(e) => {
                        tracing::warn!("no upload's parts are let go while `{}` does not open: {e}", entry.name);
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(named))
    }

    /// Whether a composite made from upload `id` may still name its parts: one the providers'
    /// claims list, or the one whose version id is the upload id (how a build before claims
    /// completed, which a claim written since by a retry does not rule out), is current in
    /// this index, or a provider holds it unreplaced, or a provider cannot say.
    async fn may_be_claimed(&self, id: &VersionId) -> Result<bool, EngineError> {
        let known = self.claimed.lock().expect("claims lock").get(id).cloned().unwrap_or_default();
        for vid in &known {
            if self.store.is_current(vid).await? {
                return Ok(true);
            }
        }
        let Some(mut claimed) = self.store.composites_claimed(id).await? else { return Ok(true) };
        claimed.push(*id);
        for vid in &claimed {
            if self.store.composite_may_live(vid).await? {
                self.remember(*id, claimed);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Notes the composites claimed for upload `id`. The map is bounded: past
    /// [`REMEMBERED_UPLOADS`] it starts again empty (the next sweep asks the providers anew).
    fn remember(&self, id: VersionId, composites: Vec<VersionId>) {
        let mut claimed = self.claimed.lock().expect("claims lock");
        if claimed.len() >= REMEMBERED_UPLOADS {
            claimed.clear();
        }
        claimed.insert(id, composites);
    }

    /// Lets go of every attempt of upload `id` (nothing may name them), then of its claim.
    async fn let_go_all(&self, id: &VersionId) -> Result<u64, EngineError> {
        let removed = self.let_go(id, &HashSet::new()).await?;
        self.claimed.lock().expect("claims lock").remove(id);
        self.store.release_claim(id).await;
        Ok(removed)
    }

    /// The current version of `u`'s key if it is a composite of `u`'s attempts: the upload's
    /// complete committed.
    async fn committed(&self, u: &Upload) -> Result<Option<IndexEntry>, EngineError> {
        let name = format!("{}/{}", u.record.bucket, u.record.key);
        let Some(current) = self.store.current(&name).await? else { return Ok(None) };
        let Some(parts) = self.store.composite_parts(&current)? else { return Ok(None) };
        let prefix = parts_prefix(&u.id);
        Ok(parts.iter().all(|p| p.name.starts_with(&prefix)).then_some(current))
    }

    /// Removes the record if it is still at the version `seen`: false if another step took it.
    async fn remove_record(&self, id: &VersionId, seen: &IndexEntry) -> Result<bool, EngineError> {
        match self.store.remove_if(&record_name(id), Precondition::Current(seen.stamp.vid)).await {
            Ok(()) => Ok(true),
            Err(EngineError::Conflict(_) | EngineError::Superseded { .. } | EngineError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes every attempt of upload `id` not in `keep`; returns how many went.
    async fn let_go(&self, id: &VersionId, keep: &HashSet<String>) -> Result<u64, EngineError> {
        let mut removed = 0;
        for info in self.store.list(&parts_prefix(id)).await? {
            if keep.contains(&info.name) {
                continue;
            }
            match self.store.remove(&info.name).await {
                Ok(()) => removed += 1,
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The open uploads of `bucket` whose keys start with `prefix`, by key then creation.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>, EngineError> {
        let mut out = Vec::new();
        for info in self.store.list(UPLOADS).await? {
            let Some(id) = parse_upload_id(&info.name[UPLOADS.len()..]) else { continue };
            let Some(u) = self.readable(&id).await else { continue };
            if u.record.bucket == bucket && u.record.key.starts_with(prefix) && u.record.completing_ns.is_none() {
                out.push(u);
            }
        }
        out.sort_by(|a, b| (&a.record.key, a.record.created_ns).cmp(&(&b.record.key, b.record.created_ns)));
        Ok(out)
    }

    /// Aborts uploads left open past the expiry, finishes completes that died after their
    /// commit, lets go of completes that died before it, and removes attempts that no record
    /// and no current composite account for (a part that arrived after its upload ended, the
    /// parts of a composite since overwritten or deleted).
    pub async fn sweep(&self) -> Result<SweepReport, EngineError> {
        let mut report = SweepReport::default();
        let mut named = None;
        let now = now_ns();
        let age = |t: u64| Duration::from_nanos(now.saturating_sub(t));
        for info in self.store.list(UPLOADS).await? {
            let Some(id) = parse_upload_id(&info.name[UPLOADS.len()..]) else { continue };
            let Some(u) = self.readable(&id).await else { continue };
            let committed = match u.record.completing_ns {
                Some(_) => match self.committed(&u).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(upload = %id.to_hex(), "passed over: its key's current version does not open: {e}");
                        continue;
                    }
                },
                None => None,
            };
            if let Some(current) = committed {
                // Committed, then the complete died: keep what the composite names.
                let keep = self.store.composite_parts(&current)?.unwrap_or_default();
                let keep: HashSet<String> = keep.into_iter().map(|p| p.name).collect();
                report.parts_removed += self.let_go(&id, &keep).await?;
                report.finished += self.remove_record(&id, &u.entry).await? as u64;
                continue;
            }
            let due = match u.record.completing_ns {
                None => age(u.record.created_ns) > self.expiry,
                // A complete that died before its commit.
                Some(at) => age(at) > COMPLETE_PATIENCE,
            };
            if due && self.remove_record(&id, &u.entry).await? {
                report.expired += 1;
                if self.free(&id, &mut named).await? {
                    report.parts_removed += self.let_go_all(&id).await?;
                }
            }
        }
        // Attempts of uploads without a record. The record is looked at before the composite:
        // a complete commits before it removes its record, so a record found gone means any
        // composite of the upload is already current.
        let mut newest: BTreeMap<VersionId, u64> = BTreeMap::new();
        for info in self.store.list(PARTS).await? {
            let Some(id) = upload_of(&info.name) else { continue };
            let t = newest.entry(id).or_default();
            *t = (*t).max(info.modified_ns);
        }
        for (id, newest) in newest {
            // Sent to within the expiry: this index may lack the record of an upload still
            // under way (rebuilt while the record did not read, or reopened elsewhere after a
            // complete failed).
            if age(newest) <= self.expiry || self.store.current(&record_name(&id)).await?.is_some() {
                continue;
            }
            if self.free(&id, &mut named).await? {
                report.parts_removed += self.let_go_all(&id).await?;
            }
        }
        Ok(report)
    }
}
