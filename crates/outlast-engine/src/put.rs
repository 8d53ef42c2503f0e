//! The write path: read -> segment -> seal -> encode -> write shard `i` to provider `i`, all
//! providers concurrently, memory bounded by a few segments whatever the object size.
//!
//! Commit rule: the version becomes visible only when its shards are durable on the write
//! quorum, its sealed manifest is on the write quorum too, and the index row is committed. Any
//! failure before that leaves the blobs recorded as a pending write, which the put removes on
//! the way out or `outlast gc` removes after a crash.

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use outlast_codec::check::ShardCheck;
use outlast_codec::{
    names, DataKey, EncodedSegment, Layout, Manifest, ManifestBody, ObjectManifest, SegmentCodec, ShardPlacement, VersionId,
    VersionStamp,
};
use outlast_provider::{BlobWriter, Provider};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::error::{EngineError, ProviderFailure};
use crate::index::{BlobRef, IndexEntry, Placed, Precondition};
use crate::intent::WriteIntent;
use crate::progress::Progress;
use crate::stamps::now_ns;
use crate::store::Store;

/// Encoded segments queued between the reader and the writers: enough to keep both cores and
/// the providers busy, few enough to bound memory.
const PIPELINE_DEPTH: usize = 3;
/// Earlier parts confirmed at once before a commit.
const CONFIRM_CONCURRENCY: usize = 32;
/// How long a failed put waits for blobs still closing before it cleans up.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads up to `len` bytes (less only at the end of the stream) into a buffer of `capacity`,
/// so the codec can seal and split it in place.
async fn read_full<R: AsyncRead + Unpin>(src: &mut R, len: usize, capacity: usize) -> Result<Vec<u8>, EngineError> {
    let mut buf = Vec::with_capacity(capacity.max(len));
    while buf.len() < len {
        let got = (&mut *src)
            .take((len - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| EngineError::io("reading the source", e))?;
        if got == 0 {
            break;
        }
    }
    Ok(buf)
}

pub(crate) async fn put<R: AsyncRead + Unpin + Send>(
    store: &Store,
    name: &str,
    src: R,
    opts: PutOptions,
    progress: &dyn Progress,
) -> Result<PutReport, EngineError> {
    Store::check_name(name)?;
    crate::metadata::check(&opts)?;
    let coding = &store.config.coding;
    let (k, n) = (coding.k as usize, coding.n as usize);
    let stamp = store.next_stamp(name).await?;
    let draining = store.index.draining().await?.into_iter().map(|(p, _)| p).collect();
    // Providers known to be slow hold parity if they must hold anything, and are not waited
    // for once the quorum is in: their shards may become repair debt, but they do not set the
    // pace of every write.
    let slow_names = store.slow_providers();
    let placement = crate::placement::place_new(&store.providers, &draining, &slow_names, &stamp.vid, k, n).ok_or_else(|| {
        let domains: std::collections::HashSet<&str> = store.providers.iter().map(|p| p.domain()).collect();
        EngineError::PlacementImpossible { n, domains: domains.len() }
    })?;
    let manifest_name = names::manifest_blob(&store.keys, &stamp.vid);
    // The manifest's names are known up front; each part's shard names are added before the
    // part is written, so a crash at any point leaves only blobs the pending record names.
    let manifests: Vec<BlobRef> =
        placement.iter().map(|p| BlobRef { provider: p.name().into(), blob: manifest_name.clone(), size: 0 }).collect();
    // A put that runs long keeps a lease on its providers too, so that gc elsewhere leaves its
    // early parts alone (`intent.rs`); a short one never writes it.
    let lease_on = placement.iter().map(|p| (*p).clone()).collect();
    let intent = WriteIntent::begin(store, stamp.vid, manifests, n as u16, lease_on).await?;

    let on_fast = |b: &BlobRef| !slow_names.contains(&b.provider);
    let slow = (0..placement.len()).filter(|&i| slow_names.iter().any(|n| n == placement[i].name())).collect();
    let mut w = VersionWriter {
        store,
        name,
        placement,
        stamp,
        failures: Vec::new(),
        closing: Vec::new(),
        slow,
        abandoned: Vec::new(),
        intent: &intent,
    };
    let written = w.write(src, opts, progress, &manifest_name).await;
    let closing = std::mem::take(&mut w.closing);
    match written {
        Ok((report, garbage)) => {
            intent.finish().await;
            // Garbage on a slow provider is left to gc rather than delay the answer.
            let (now, later): (Vec<BlobRef>, Vec<BlobRef>) = garbage.into_iter().partition(on_fast);
            store.delete_blobs(&now).await;
            store.index.note_garbage(&later, now_ns()).await?;
            Ok(report)
        }
        Err(e) => {
            // Nothing was committed: remove what was written, once no close still in flight can
            // bring a blob back. What cannot be removed now stays recorded, released for the
            // next gc to claim.
            for (_, close) in closing {
                let abort = close.abort_handle();
                if tokio::time::timeout(CLOSE_PATIENCE, close).await.is_err() {
                    abort.abort(); // a hanging provider: its blob stays pending for gc
                }
            }
            intent.abandon(store).await?;
            Err(e)
        }
    }
}

struct VersionWriter<'a> {
    store: &'a Store,
    name: &'a str,
    placement: Vec<&'a Provider>,
    stamp: VersionStamp,
    failures: Vec<ProviderFailure>,
    /// Shards placed on providers known to be slow (no grace after the quorum).
    slow: Vec<usize>,
    /// Shards whose provider did not answer in time.
    abandoned: Vec<usize>,
    /// Shard blobs being closed in the background: (shard index, close task).
    closing: Vec<(usize, tokio::task::JoinHandle<Result<(), outlast_provider::ProviderError>>)>,
    /// This write's intent: its blobs recorded before they are written, its lease if it runs long.
    intent: &'a WriteIntent,
}

/// The shard writers of the part being written; `None` for a shard that has failed.
type PartWriters = Vec<Option<BlobWriter>>;

fn live(w: &PartWriters) -> usize {
    w.iter().filter(|w| w.is_some()).count()
}

impl VersionWriter<'_> {
    fn quorum(&self) -> usize {
        self.store.config.coding.write_quorum()
    }

    fn quorum_err(&self, ok: usize) -> EngineError {
        EngineError::Quorum { name: self.name.into(), ok, needed: self.quorum(), failures: self.failures.clone() }
    }

    /// Notes what went wrong with shard `i`'s provider.
    fn fail(&mut self, i: usize, message: impl ToString) {
        self.failures.push(ProviderFailure::new(self.placement[i].name(), message.to_string()));
    }

    fn vid(&self) -> VersionId {
        self.stamp.vid
    }

    /// Tells each provider's health how its part of a write step went.
    fn note_times<T, E>(&self, out: &crate::quorum::Outcome<T, E>) {
        out.note_write_times(|i| self.placement[i]);
    }

    /// Registers part `part`'s blobs as pending, then opens a writer for every shard still alive.
    async fn open_part(&mut self, part: u32, alive: &[bool]) -> Result<PartWriters, EngineError> {
        let keys = &self.store.keys;
        let names: Vec<String> = (0..alive.len()).map(|i| names::shard_blob(keys, &self.stamp.vid, i as u16, part)).collect();
        let refs: Vec<BlobRef> = (0..alive.len())
            .filter(|i| alive[*i])
            .map(|i| BlobRef { provider: self.placement[i].name().into(), blob: names[i].clone(), size: 0 })
            .collect();
        self.intent.covers(part, &refs).await?;
        let opening: Vec<_> = (0..alive.len()).filter(|i| alive[*i]).map(|i| (i, self.placement[i].writer(&names[i]))).collect();
        let out = crate::quorum::gather(opening, self.quorum(), &self.slow).await;
        self.note_times(&out);
        let mut writers: PartWriters = (0..alive.len()).map(|_| None).collect();
        for (i, r) in out.answered {
            match r {
                Ok(w) => writers[i] = Some(w),
                Err(e) => self.fail(i, e.to_string()),
            }
        }
        for i in out.abandoned {
            self.fail(i, format!("`{}` did not open shard {i}'s blob in time", self.placement[i].name()));
            self.abandoned.push(i);
        }
        let ok = live(&writers);
        if ok < self.quorum() {
            abort_all(writers).await;
            return Err(self.quorum_err(ok));
        }
        Ok(writers)
    }

    /// Starts closing the part's writers in the background, so the next part is written while
    /// this one is flushed to stable storage; first waits for the previous part's closes, so at
    /// most one part is in flight. A shard whose blob does not close is dead from then on.
    async fn close_part(&mut self, writers: PartWriters, alive: &mut [bool]) -> Result<(), EngineError> {
        self.finish_closes(alive).await?;
        for (i, w) in writers.into_iter().enumerate() {
            match w {
                Some(w) => self.closing.push((i, tokio::spawn(w.close()))),
                None => alive[i] = false,
            }
        }
        Ok(())
    }

    /// Waits for the closes in flight (a hanging one only for the grace after the quorum);
    /// fails when fewer than the quorum of shards survive.
    async fn finish_closes(&mut self, alive: &mut [bool]) -> Result<(), EngineError> {
        let closing = std::mem::take(&mut self.closing);
        let aborts: Vec<(usize, tokio::task::AbortHandle)> = closing.iter().map(|(i, h)| (*i, h.abort_handle())).collect();
        let out = crate::quorum::gather(closing, self.quorum(), &self.slow).await;
        self.note_times(&out);
        for (i, r) in out.answered {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.fail(i, e.to_string());
                    alive[i] = false;
                }
                Err(e) => {
                    self.fail(i, format!("closing shard {i}: {e}"));
                    alive[i] = false;
                }
            }
        }
        for i in out.abandoned {
            self.fail(i, format!("`{}` did not finish writing shard {i} in time", self.placement[i].name()));
            self.abandoned.push(i);
            alive[i] = false;
            if let Some((_, a)) = aborts.iter().find(|(j, _)| *j == i) {
                a.abort();
            }
        }
        let ok = alive.iter().filter(|a| **a).count();
        if ok < self.quorum() {
            return Err(self.quorum_err(ok));
        }
        Ok(())
    }

    /// Writes one segment's shards to their blobs, all at once; a provider that fails, or
    /// hangs past the grace after the quorum, loses its writer (its shard is missing).
    async fn write_segment(&mut self, writers: &mut PartWriters, encoded: &EncodedSegment) -> Result<(), EngineError> {
        let writes: Vec<_> = writers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| slot.take().map(|w| (i, w)))
            .map(|(i, mut w)| {
                let shard: Bytes = encoded.shards[i].clone();
                (i, async move {
                    match w.write(shard).await {
                        Ok(()) => Ok(w),
                        Err(e) => Err((w, e)),
                    }
                })
            })
            .collect();
        let out = crate::quorum::gather(writes, self.quorum(), &self.slow).await;
        self.note_times(&out);
        for (i, r) in out.answered {
            match r {
                Ok(w) => writers[i] = Some(w),
                Err((w, e)) => {
                    self.fail(i, e.to_string());
                    w.abort().await;
                }
            }
        }
        for i in out.abandoned {
            self.fail(i, format!("`{}` did not take shard {i} in time", self.placement[i].name()));
            self.abandoned.push(i);
        }
        if live(writers) < self.quorum() {
            return Err(self.quorum_err(live(writers)));
        }
        Ok(())
    }

    async fn write<R: AsyncRead + Unpin + Send>(
        &mut self,
        mut src: R,
        opts: PutOptions,
        progress: &dyn Progress,
        manifest_name: &str,
    ) -> Result<(PutReport, Vec<BlobRef>), EngineError> {
        let coding = &self.store.config.coding;
        let n = coding.n;
        let segment_size = coding.segment_size();
        let stream_layout = coding.layout()?;
        let spp = stream_layout.segments_per_part as u64;
        let data_key = DataKey::generate();
        let want_md5 = opts.md5;
        let codec = SegmentCodec::new(stream_layout, data_key.clone(), self.vid(), self.store.keys.check_seed);

        // Reader: one segment of lookahead tells whether the current one is the last. A segment
        // is hashed on a blocking thread while the next one is read, so that the source (for the
        // gateway, a request body checked as it arrives) and the hashes use both cores.
        let (tx, mut rx) = mpsc::channel(PIPELINE_DEPTH);
        let reader = async {
            let md5 = (want_md5 != BodyMd5::Skip).then(<md5::Md5 as md5::Digest>::new);
            let mut hashers = ObjectHashers { blake3: blake3::Hasher::new(), md5 };
            let mut size = 0u64;
            let (seg, cap) = (segment_size as usize, codec.buffer_capacity());
            let mut cur = read_full(&mut src, seg, cap).await?;
            for s in 0u64.. {
                let full = cur.len() == seg;
                let hashing = tokio::task::spawn_blocking(move || {
                    hashers.update(&cur);
                    (hashers, cur)
                });
                let next = if full { read_full(&mut src, seg, cap).await } else { Ok(Vec::new()) };
                (hashers, cur) = hashing.await.expect("hash task panicked");
                let next = next?;
                let is_last = next.is_empty();
                size += cur.len() as u64;
                let codec = codec.clone();
                let plain_len = cur.len();
                let job = tokio::task::spawn_blocking(move || codec.encode_owned(s, cur, is_last).map(|e| (plain_len, e)));
                if tx.send(job).await.is_err() || is_last {
                    break;
                }
                cur = next;
            }
            drop(tx);
            Ok::<_, EngineError>((size, hashers.finish()))
        };
        let mut alive = vec![true; n as usize];
        let writer = async {
            let mut checks: Vec<ShardCheck> = Vec::new();
            let mut writers: PartWriters = Vec::new();
            let mut s = 0u64;
            while let Some(job) = rx.recv().await {
                let (plain_len, encoded) = job.await.expect("encode task panicked")?;
                if s.is_multiple_of(spp) {
                    if s > 0 {
                        self.close_part(std::mem::take(&mut writers), &mut alive).await?;
                    }
                    writers = self.open_part((s / spp) as u32, &alive).await?;
                }
                checks.extend_from_slice(&encoded.checks);
                if let Err(e) = self.write_segment(&mut writers, &encoded).await {
                    abort_all(writers).await;
                    return Err(e);
                }
                progress.advance(plain_len as u64);
                s += 1;
            }
            self.close_part(writers, &mut alive).await?;
            self.finish_closes(&mut alive).await?;
            Ok(checks)
        };
        let ((size, hash), checks) = tokio::try_join!(reader, writer)?;
        if let BodyMd5::Expect(declared) = want_md5 {
            if hash.md5 != Some(declared) {
                return Err(EngineError::BadDigest(self.name.to_string()));
            }
        }
        self.confirm_parts(&Layout { size, ..stream_layout }, &mut alive).await?;
        self.commit(size, hash, checks, data_key, &alive, opts, manifest_name, segment_size).await
    }

    /// Before the commit, asks each provider whether it still holds the earlier parts of its
    /// shard, whole: a put that ran long may have lost them (a gc elsewhere, a provider that
    /// lost data meanwhile). A shard whose blob is gone is missing for the whole version
    /// (repair debt); below the quorum the put fails rather than acknowledge what is not there.
    /// The last part was closed just now and is not asked again.
    async fn confirm_parts(&mut self, layout: &Layout, alive: &mut [bool]) -> Result<(), EngineError> {
        let parts = layout.part_count();
        if parts <= 1 {
            return Ok(());
        }
        let keys = &self.store.keys;
        let asks: Vec<(usize, u32)> =
            (0..alive.len()).filter(|&i| alive[i]).flat_map(|i| (0..parts - 1).map(move |part| (i, part))).collect();
        let placement = &self.placement;
        let vid = self.stamp.vid;
        let answers: Vec<(usize, u32, Result<bool, String>)> = futures::stream::iter(asks)
            .map(|(i, part)| async move {
                let blob = names::shard_blob(keys, &vid, i as u16, part);
                let held = match placement[i].stat(&blob).await {
                    Ok(st) => Ok(st.size == layout.part_blob_len(part)),
                    Err(e) if e.is_not_found() => Ok(false),
                    Err(e) => Err(e.to_string()),
                };
                (i, part, held)
            })
            .buffer_unordered(CONFIRM_CONCURRENCY)
            .collect()
            .await;
        for (i, part, held) in answers {
            if !alive[i] {
                continue;
            }
            let why = match held {
                Ok(true) => continue,
                Ok(false) => format!("`{}` no longer holds part {part} of shard {i} whole", self.placement[i].name()),
                Err(e) => format!("`{}` could not confirm part {part} of shard {i}: {e}", self.placement[i].name()),
            };
            self.fail(i, why);
            alive[i] = false;
        }
        let ok = alive.iter().filter(|a| **a).count();
        if ok < self.quorum() {
            return Err(self.quorum_err(ok));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &mut self,
        size: u64,
        hash: Hashes,
        checks: Vec<ShardCheck>,
        data_key: DataKey,
        alive: &[bool],
        opts: PutOptions,
        manifest_name: &str,
        segment_size: u32,
    ) -> Result<(PutReport, Vec<BlobRef>), EngineError> {
        let coding = &self.store.config.coding;
        let layout = Layout { size, ..coding.layout()? };
        let manifest = Manifest {
            name: self.name.to_string(),
            stamp: self.stamp,
            body: ManifestBody::Object(ObjectManifest {
                size,
                content_type: opts.content_type.clone(),
                user_metadata: opts.metadata,
                blake3: *hash.blake3.as_bytes(),
                md5: hash.md5,
                data_key: *data_key.as_bytes(),
                segment_size,
                k: coding.k,
                n: coding.n,
                segments_per_part: layout.segments_per_part,
                placement: self.placement.iter().map(|p| ShardPlacement { provider: p.name().to_string() }).collect(),
                checks,
            }),
            revision: 0,
        };
        let sealed = Bytes::from(manifest.seal(&self.store.keys, manifest_name));
        let placed = match &manifest.body {
            ManifestBody::Object(om) => Some(Placed::of(om)),
            ManifestBody::Tombstone | ManifestBody::Composite(_) => None,
        };
        let holders: Vec<usize> = (0..alive.len()).filter(|i| alive[*i]).collect();
        let out = crate::quorum::gather(
            holders.iter().map(|&i| (i, self.placement[i].write(manifest_name, sealed.clone()))).collect(),
            self.quorum(),
            &self.slow,
        )
        .await;
        self.note_times(&out);
        let mut answers: Vec<(usize, Result<(), String>)> =
            out.answered.into_iter().map(|(i, r)| (i, r.map_err(|e| e.to_string()))).collect();
        self.abandoned.extend(&out.abandoned);
        answers.extend(
            out.abandoned
                .into_iter()
                .map(|i| (i, Err(format!("`{}` did not take the manifest in time", self.placement[i].name())))),
        );
        let mut blobs = Vec::new();
        for (i, r) in answers {
            let provider = self.placement[i].name().to_string();
            for part in 0..layout.part_count() {
                let blob = names::shard_blob(&self.store.keys, &self.stamp.vid, i as u16, part);
                blobs.push(BlobRef { provider: provider.clone(), blob, size: layout.part_blob_len(part) });
            }
            match r {
                Ok(()) => blobs.push(BlobRef { provider, blob: manifest_name.to_string(), size: sealed.len() as u64 }),
                Err(e) => self.fail(i, e),
            }
        }
        let manifests = blobs.iter().filter(|b| b.blob == manifest_name).count();
        if manifests < self.quorum() {
            return Err(self.quorum_err(manifests));
        }
        let ManifestBody::Object(om) = &manifest.body else { unreachable!("a put writes an object") };
        let etag = om.etag();
        let entry = IndexEntry {
            name: self.name.to_string(),
            stamp: self.stamp,
            size,
            content_type: opts.content_type,
            etag: etag.clone(),
            sealed_manifest: sealed.to_vec(),
            placed,
        };
        // Blobs of shards that failed part-way (say, a full disk) are removed before the commit:
        // after it, a repair may write the same names. Those of providers that did not answer
        // in time, or are known to be slow, are not waited for: the repair that pays the debt
        // overwrites them, or gc sweeps them once the version is replaced.
        let partial: Vec<BlobRef> = self
            .store
            .index
            .pending_blobs(&self.vid())
            .await?
            .into_iter()
            .filter(|p| !blobs.iter().any(|b| b.provider == p.provider && b.blob == p.blob))
            .filter(|p| {
                let i = self.placement.iter().position(|q| q.name() == p.provider);
                i.is_some_and(|i| !self.abandoned.contains(&i) && !self.slow.contains(&i))
            })
            .collect();
        self.store.delete_blobs(&partial).await;
        let garbage = self.intent.commit(&entry, &blobs, false, opts.precondition, None).await?;
        let missing: Vec<String> =
            (0..alive.len()).filter(|i| !alive[*i]).map(|i| self.placement[i].name().to_string()).collect();
        if !missing.is_empty() {
            let why: Vec<&str> = self.failures.iter().map(|f| f.message.as_str()).collect();
            tracing::warn!(object = self.name, missing = ?missing, "stored below full redundancy: {}", why.join("; "));
            self.store.note_debt();
        }
        let report = PutReport {
            name: self.name.to_string(),
            size,
            etag,
            version: self.stamp.vid.to_hex(),
            shards_written: holders.len(),
            missing,
        };
        Ok((report, garbage))
    }
}

async fn abort_all(writers: PartWriters) {
    join_all(writers.into_iter().flatten().map(BlobWriter::abort)).await;
}

/// What a put may set besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// MIME type.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: Vec<(String, String)>,
    /// What must be current for the put to take effect (decided at its commit; if it does
    /// not hold, the put fails with [`EngineError::Conflict`] and leaves nothing behind).
    pub precondition: Precondition,
    /// Whether the body's MD5 is kept in the manifest and shown as the ETag: S3 clients check
    /// a single-part object's ETag against the MD5 of what they sent.
    pub md5: BodyMd5,
}

/// Where a put's MD5 comes from. MD5 is the slowest pass over the bytes and strictly serial,
/// so a put takes it at most once, and only for S3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyMd5 {
    /// None: the ETag is the BLAKE3 the put takes anyway (the CLI).
    #[default]
    Skip,
    /// Hashed as the body streams in.
    Hash,
    /// Hashed, and declared beforehand (`Content-MD5`): a body that does not match fails the
    /// put with [`EngineError::BadDigest`] before its commit, and leaves nothing behind.
    Expect([u8; 16]),
}

/// The hashes of a version's plaintext, taken as it streams in.
struct Hashes {
    blake3: blake3::Hash,
    md5: Option<[u8; 16]>,
}

/// The whole object's hashes, fed segment by segment in order.
struct ObjectHashers {
    blake3: blake3::Hasher,
    md5: Option<md5::Md5>,
}

impl ObjectHashers {
    fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(m) = &mut self.md5 {
            md5::Digest::update(m, bytes);
        }
    }

    fn finish(self) -> Hashes {
        Hashes { blake3: self.blake3.finalize(), md5: self.md5.map(|m| md5::Digest::finalize(m).into()) }
    }
}

/// What a put did.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    /// Object name.
    pub name: String,
    /// Plaintext bytes stored.
    pub size: u64,
    /// Entity tag: hex MD5 of the plaintext where the put took it (S3), else hex BLAKE3.
    pub etag: String,
    /// Version id (hex).
    pub version: String,
    /// Shards made durable (of n).
    pub shards_written: usize,
    /// Providers whose shard is missing: repair debt.
    pub missing: Vec<String>,
}

impl Store {
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
}
