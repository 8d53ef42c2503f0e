//! The read path: manifest -> for each run of segments in the range, fetch data shards with
//! one ranged request each (parity only when one is missing or bad) -> check each shard ->
//! decode -> decrypt -> stream out in order.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use outlast_codec::{CompositeManifest, DecodedSegment, ManifestBody, ObjectManifest};
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::EngineError;
use crate::index::IndexEntry;
use crate::progress::Progress;
use crate::shards::{runs, ReadScope, ShardFault, ShardReader};
use crate::store::Store;

/// Consecutive segments fetched with one ranged request per shard, unless the config says
/// otherwise. Measured on local folders (1 GiB, 4-of-6), runs of 1, 2 and 4 segments read in
/// about 1.0 s, 1.4-1.9 s and 1.5-2.0 s with peak RSS 180, 250 and 350 MiB.
const RUN_SEGMENTS: u64 = 1;
/// Runs fetched and decoded ahead of the writer.
const READ_AHEAD: usize = 4;

/// Where a get's plaintext goes, in order, a segment's worth at a time. Faces that can take
/// whole buffers (a file written on its own thread, an HTTP body) receive them without a copy;
/// [`WriteSink`] adapts any `AsyncWrite`.
pub trait GetSink: Send {
    /// Takes the next piece of the output.
    fn accept(&mut self, chunk: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Called once after the last piece, before the get reports success.
    fn finish(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// A [`GetSink`] over any `AsyncWrite` (the bytes are copied into the writer).
pub struct WriteSink<W>(pub W);

impl<W: AsyncWrite + Unpin + Send> GetSink for WriteSink<W> {
    async fn accept(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.0.write_all(&chunk).await
    }
    async fn finish(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

/// Discards the plaintext: for reads whose point is the proof that they succeed (the drill).
pub(crate) struct NullSink;

impl GetSink for NullSink {
    async fn accept(&mut self, _chunk: Bytes) -> std::io::Result<()> {
        Ok(())
    }
    async fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands each piece to a receiver, e.g. a thread writing a file with blocking calls, so output
/// and fetching run side by side without copying.
impl GetSink for tokio::sync::mpsc::Sender<Bytes> {
    async fn accept(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.send(chunk).await.map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the output was closed"))
    }
    async fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands each piece to a receiver that also learns of a failure: a face streaming a response
/// body, which must end with an error rather than look complete.
impl GetSink for tokio::sync::mpsc::Sender<Result<Bytes, EngineError>> {
    async fn accept(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.send(Ok(chunk)).await.map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away"))
    }
    async fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which bytes of an object a get reads, resolved against the size of the version actually
/// read (so that "the last N bytes" cannot mix two versions' sizes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// These bytes (the end is clipped to the object's size).
    Span(Range<u64>),
    /// The last N bytes, as an HTTP suffix range has it (all of a smaller object).
    Last(u64),
}

impl From<Range<u64>> for ByteRange {
    fn from(r: Range<u64>) -> Self {
        ByteRange::Span(r)
    }
}

impl ByteRange {
    fn resolve(&self, size: u64) -> Range<u64> {
        match self {
            ByteRange::Span(r) => r.clone(),
            ByteRange::Last(n) => size.saturating_sub(*n)..size,
        }
    }
}

pub(crate) async fn get(
    store: &Store,
    name: &str,
    range: Option<ByteRange>,
    dst: &mut impl GetSink,
    progress: &dyn Progress,
    scope: &ReadScope,
) -> Result<GetReport, EngineError> {
    let entry = store.index.get(name).await?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
    get_version(store, &entry, range, dst, progress, scope).await
}

/// Reads the version `entry` (whatever is current now): a face that has sent its headers for
/// one version must send that version's bytes.
pub(crate) async fn get_version(
    store: &Store,
    entry: &IndexEntry,
    range: Option<ByteRange>,
    dst: &mut impl GetSink,
    progress: &dyn Progress,
    scope: &ReadScope,
) -> Result<GetReport, EngineError> {
    let name = entry.name.as_str();
    let manifest = store.open_manifest(entry)?;
    let size = match &manifest.body {
        ManifestBody::Object(om) => om.size,
        ManifestBody::Composite(c) => c.size,
        ManifestBody::Tombstone => return Err(EngineError::NotFound(name.to_string())),
    };
    let range = range.map(|r| r.resolve(size));
    if let Some(r) = &range {
        if r.start >= size && size > 0 {
            return Err(EngineError::Range { name: name.to_string(), start: r.start, size });
        }
    }
    let range = range.unwrap_or(0..size);
    let range = range.start.min(size)..range.end.min(size);
    let mut report = match &manifest.body {
        ManifestBody::Object(om) => read_object(store, entry, om, range, dst, progress, scope).await?,
        ManifestBody::Composite(c) => read_composite(store, entry, c, range, dst, progress, scope).await?,
        ManifestBody::Tombstone => unreachable!("answered above"),
    };
    dst.finish().await.map_err(|e| EngineError::io("writing the output", e))?;
    // One line per provider, not per segment: a provider that is gone fails every read.
    let mut by_provider: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
    for f in &report.faults {
        tracing::debug!(provider = %f.provider, object = name, segment = f.segment, shard = f.shard, "{}", f.reason);
        by_provider.entry(&f.provider).or_insert((0, &f.reason)).0 += 1;
    }
    for (provider, (count, first)) in by_provider {
        tracing::warn!(provider, object = name, "{count} shard reads failed or were rejected; first: {first}");
    }
    report.faults.shrink_to_fit();
    Ok(report)
}

/// Reads the plaintext bytes `range` (already clipped to its size) of the object version
/// `om` of `entry` into `dst`.
async fn read_object(
    store: &Store,
    entry: &IndexEntry,
    om: &ObjectManifest,
    range: Range<u64>,
    dst: &mut impl GetSink,
    progress: &dyn Progress,
    scope: &ReadScope,
) -> Result<GetReport, EngineError> {
    let name = entry.name.as_str();
    let reader = ShardReader::new(store, name, om, entry.stamp.vid, scope).await?;
    let layout = *reader.codec.layout();
    // An empty object still has one sealed segment: read it, so that even an empty get proves
    // the providers hold this version.
    let segments = if om.size == 0 { 0..1 } else { layout.segments_for(range.clone()) };
    let run_len = store.config.coding.read_run_segments.map_or(RUN_SEGMENTS, u64::from);

    // Fetching and decoding run ahead while the output is written: both halves are polled
    // together, so a slow destination does not stall the fetches (and the reverse).
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let fetcher = async {
        let mut runs =
            futures::stream::iter(runs(&layout, segments.clone(), run_len)).map(|r| read_run(&reader, r)).buffered(READ_AHEAD);
        let tx = tx; // owned by this half: the writer's loop ends when it is dropped
        while let Some(run) = runs.next().await {
            for seg in run? {
                if tx.send(seg).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<_, EngineError>(())
    };
    let writer = async {
        let mut report = GetReport::default();
        while let Some((s, decoded)) = rx.recv().await {
            report.degraded_segments += decoded.reconstructed as u64;
            let seg_range = layout.segment_range(s);
            let from = range.start.max(seg_range.start) - seg_range.start;
            let to = range.end.min(seg_range.end) - seg_range.start;
            let part = decoded.plaintext.slice(from as usize..to as usize);
            let len = part.len() as u64;
            dst.accept(part).await.map_err(|e| EngineError::io("writing the output", e))?;
            report.bytes += len;
            progress.advance(len);
        }
        Ok::<_, EngineError>(report)
    };
    let ((), mut report) = match tokio::try_join!(fetcher, writer) {
        Ok(done) => done,
        // Shards that vanished under a read are most often an overwrite or a removal that
        // finished meanwhile (its gc of the old blobs): say so, not "unreadable".
        Err(e @ EngineError::Unreadable { .. }) => return Err(changed_or(store, entry, e).await),
        Err(e) => return Err(e),
    };
    report.faults = reader.take_faults();
    report.fetched = reader.bytes_read();
    report.requests = reader.requests();
    report.hedged = reader.hedged();
    Ok(report)
}

/// `e`, or [`EngineError::ChangedDuringRead`] if `entry` is no longer the current version of
/// its name.
async fn changed_or(store: &Store, entry: &IndexEntry, e: EngineError) -> EngineError {
    match store.index.get(&entry.name).await {
        Ok(Some(now)) if now.stamp == entry.stamp => e,
        Ok(now) => EngineError::ChangedDuringRead { name: entry.name.clone(), deleted: now.is_none() },
        Err(index) => index,
    }
}

/// Reads the plaintext bytes `range` of the composite version `c` of `entry`: the parts that
/// hold them, one after the other, each the very version the composite names.
async fn read_composite(
    store: &Store,
    entry: &IndexEntry,
    c: &CompositeManifest,
    range: Range<u64>,
    dst: &mut impl GetSink,
    progress: &dyn Progress,
    scope: &ReadScope,
) -> Result<GetReport, EngineError> {
    let mut spans = c.parts_for(range.clone());
    // An empty read still proves the providers hold the version: its first part's one segment.
    if spans.is_empty() {
        spans.push((&c.parts[0], 0..0));
    }
    let mut report = GetReport::default();
    for (part, span) in spans {
        let held = store.index.get(&part.name).await?.filter(|e| e.stamp == part.stamp);
        let gone =
            |reason: &str| EngineError::PartGone { name: entry.name.clone(), part: part.name.clone(), reason: reason.into() };
        let Some(held) = held else {
            return Err(changed_or(store, entry, gone("is no longer the version it names")).await);
        };
        let manifest = store.open_manifest(&held)?;
        let ManifestBody::Object(om) = &manifest.body else {
            return Err(gone("holds no data"));
        };
        let read = match read_object(store, &held, om, span, dst, progress, scope).await {
            Ok(r) => r,
            Err(EngineError::ChangedDuringRead { .. }) => {
                return Err(changed_or(store, entry, gone("changed during the read")).await);
            }
            Err(e) => return Err(e),
        };
        report.absorb(read);
    }
    Ok(report)
}

/// Fetches and decodes one run of segments.
async fn read_run(reader: &ShardReader<'_>, run: Range<u64>) -> Result<Vec<(u64, DecodedSegment)>, EngineError> {
    let codec = reader.codec.clone();
    let decoded = reader.with_shards(run, &[], move |s, shards| codec.decode(s, shards)).await?;
    for (s, d) in &decoded {
        if let Some(liar) = d.liar {
            reader.liar(*s, liar);
        }
    }
    Ok(decoded)
}

impl GetReport {
    /// Adds what the read of one part did.
    fn absorb(&mut self, o: GetReport) {
        self.bytes += o.bytes;
        self.degraded_segments += o.degraded_segments;
        self.fetched += o.fetched;
        self.requests += o.requests;
        self.hedged += o.hedged;
        self.faults.extend(o.faults);
    }
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

impl Store {
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

    /// Reads version `entry` (from [`Store::current`]) as [`Self::get_into`] reads the current
    /// one. If that version was replaced meanwhile and its blobs are gone, this fails rather
    /// than read another version.
    pub async fn get_version_into(
        &self,
        entry: &IndexEntry,
        range: Option<ByteRange>,
        sink: &mut impl GetSink,
        progress: &dyn Progress,
    ) -> Result<GetReport, EngineError> {
        crate::get::get_version(self, entry, range, sink, progress, &Default::default()).await
    }

    /// The bytes of version `entry` (the bytes `range` of it) as a stream, read on a task of
    /// its own. The first piece is waited for, so that a version that cannot be read at all is
    /// an error before a face sends any header; a failure after it is the stream's last item
    /// (a face cuts its body then, never ends it as if whole). Dropping the stream stops the
    /// read.
    pub async fn stream_version(
        self: std::sync::Arc<Self>,
        entry: IndexEntry,
        range: Option<ByteRange>,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, EngineError>>, EngineError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut sink = tx.clone();
            if let Err(e) = self.get_version_into(&entry, range, &mut sink, &crate::progress::NoProgress).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        let first = match rx.recv().await {
            Some(Ok(first)) => Some(first),
            Some(Err(e)) => return Err(e),
            None => None,
        };
        let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(futures::stream::iter(first.map(Ok)).chain(rest).boxed())
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
}
