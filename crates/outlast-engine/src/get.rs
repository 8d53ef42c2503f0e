//! The read path: manifest -> for each run of segments in the range, fetch data shards with
//! one ranged request each (parity only when one is missing or bad) -> check each shard ->
//! decode -> decrypt -> stream out in order.

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use outlast_codec::{
    names, CodecError, DataKey, DecodedSegment, ManifestBody, ObjectManifest, SegmentCodec, StoreKeys, VersionId,
};
use outlast_provider::Provider;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::store::ShardFault;
use crate::{EngineError, GetReport, Progress, Store};

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

pub(crate) async fn get(
    store: &Store,
    name: &str,
    range: Option<Range<u64>>,
    dst: &mut impl GetSink,
    progress: &dyn Progress,
) -> Result<GetReport, EngineError> {
    let entry = store.index.get(name)?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
    let manifest = store.open_manifest(&entry)?;
    let ManifestBody::Object(om) = manifest.body else {
        return Err(EngineError::NotFound(name.to_string()));
    };
    let layout = om.layout()?;
    let codec = SegmentCodec::new(layout, DataKey::from_bytes(om.data_key), manifest.stamp.vid, store.keys.check_seed);
    if let Some(r) = &range {
        if r.start >= om.size && om.size > 0 {
            return Err(EngineError::Range { name: name.to_string(), start: r.start, size: om.size });
        }
    }
    let range = range.unwrap_or(0..om.size);
    let range = range.start.min(om.size)..range.end.min(om.size);
    // An empty object still has one sealed segment: read it, so that even an empty get proves
    // the providers hold this version.
    let segments = if om.size == 0 { 0..1 } else { layout.segments_for(range.clone()) };
    let holders: Vec<Option<&Provider>> = om.placement.iter().map(|p| store.provider(&p.provider)).collect();
    // Shards the put could not write (or scrub found damaged) are repair debt: not asked for
    // unless nothing else is left.
    let recorded: HashSet<(String, String)> =
        store.index.blobs_of(&manifest.stamp.vid)?.into_iter().map(|b| (b.provider, b.blob)).collect();
    let usable: Vec<bool> = holders.iter().map(|h| h.is_some_and(|p| p.state().is_usable())).collect();
    let faults = Mutex::new(Vec::new());
    let run_len = store.config.coding.read_run_segments.map_or(RUN_SEGMENTS, u64::from);
    let reader = RunReader {
        name,
        om: &om,
        codec: &codec,
        holders: &holders,
        faults: &faults,
        keys: &store.keys,
        vid: manifest.stamp.vid,
        recorded: &recorded,
        usable: &usable,
        index: &store.index,
        noted: Mutex::default(),
    };

    // Fetching and decoding run ahead while the output is written: both halves are polled
    // together, so a slow destination does not stall the fetches (and the reverse).
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let fetcher = async {
        let mut runs =
            futures::stream::iter(runs(&layout, segments.clone(), run_len)).map(|r| reader.read_run(r)).buffered(READ_AHEAD);
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
        dst.finish().await.map_err(|e| EngineError::io("writing the output", e))?;
        Ok::<_, EngineError>(report)
    };
    let ((), mut report) = tokio::try_join!(fetcher, writer)?;
    report.faults = std::mem::take(&mut *faults.lock().expect("faults lock"));
    // One line per provider, not per segment: a provider that is gone fails every read.
    let mut by_provider: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
    for f in &report.faults {
        tracing::debug!(provider = %f.provider, object = name, segment = f.segment, shard = f.shard, "{}", f.reason);
        by_provider.entry(&f.provider).or_insert((0, &f.reason)).0 += 1;
    }
    for (provider, (count, first)) in by_provider {
        tracing::warn!(provider, object = name, "{count} shard reads failed or were rejected; first: {first}");
    }
    Ok(report)
}

/// Reads runs of consecutive segments of one part: one ranged request per shard per run.
struct RunReader<'a> {
    name: &'a str,
    om: &'a ObjectManifest,
    codec: &'a SegmentCodec,
    holders: &'a [Option<&'a Provider>],
    faults: &'a Mutex<Vec<ShardFault>>,
    keys: &'a StoreKeys,
    vid: VersionId,
    recorded: &'a HashSet<(String, String)>,
    usable: &'a [bool],
    index: &'a crate::index::Index,
    /// (shard, part) blobs whose presence was already reported to the provider's health.
    noted: Mutex<HashSet<(usize, u32)>>,
}

/// Splits `segments` into runs of at most `run_len` that never cross a part boundary.
fn runs(layout: &outlast_codec::Layout, segments: Range<u64>, run_len: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut s = segments.start;
    while s < segments.end {
        let part_end = (layout.part_of(s) as u64 + 1) * layout.segments_per_part as u64;
        let end = (s + run_len).min(part_end).min(segments.end);
        out.push(s..end);
        s = end;
    }
    out
}

impl RunReader<'_> {
    fn fault(&self, segment: u64, shard: usize, reason: String) {
        let provider = self.om.placement[shard].provider.clone();
        self.faults.lock().expect("faults lock").push(ShardFault { provider, segment, shard, reason });
    }

    /// The order to ask for the shards of `part`: data shards before parity (a healthy read
    /// decodes nothing), providers in a usable state before the others, shards the index does
    /// not record (repair debt) last of all.
    fn order(&self, part: u32) -> Vec<usize> {
        let n = self.om.n as usize;
        let stored = |i: usize| {
            let blob = names::shard_blob(self.keys, &self.vid, i as u16, part);
            self.recorded.contains(&(self.om.placement[i].provider.clone(), blob))
        };
        let mut order: Vec<(bool, bool, usize)> = (0..n).map(|i| (!stored(i), !self.usable[i], i)).collect();
        order.sort_unstable();
        order.into_iter().map(|(_, _, i)| i).collect()
    }

    /// Fetches shards `which` for every segment of `run` and keeps those that pass their check
    /// in `shards[segment - run.start][shard]`.
    async fn fetch(&self, run: &Range<u64>, shards: &mut [Vec<Option<Bytes>>], which: &[usize]) {
        let layout = self.codec.layout();
        let last = run.end - 1;
        let base = layout.shard_offset(run.start);
        let want = base..layout.shard_offset(last) + layout.shard_len(last) as u64;
        let part = layout.part_of(run.start);
        let fetches = which.iter().map(|&i| {
            let want = want.clone();
            async move {
                let blob = names::shard_blob(self.keys, &self.vid, i as u16, part);
                let r = match self.holders[i] {
                    Some(p) => {
                        let r = p.read_range(&blob, want).await;
                        // Each blob counts once towards the provider's health, however many
                        // segments are read from it.
                        let known = self.recorded.contains(&(p.name().to_string(), blob.clone()))
                            && self.noted.lock().expect("noted lock").insert((i, part));
                        match &r {
                            Ok(_) if known => p.note_known_blob(true),
                            Err(e) if known && e.is_not_found() => {
                                p.note_known_blob(false);
                                // Now repair debt: later reads do not ask for it again.
                                if let Err(e) = self.index.forget_blob(p.name(), &blob) {
                                    tracing::warn!("could not record a lost shard in the index: {e}");
                                }
                            }
                            _ => {}
                        }
                        r.map_err(|e| e.to_string())
                    }
                    None => Err(format!("provider `{}` is not in the configuration", self.om.placement[i].provider)),
                };
                (i, r)
            }
        });
        for (i, r) in join_all(fetches).await {
            for (j, s) in run.clone().enumerate() {
                match &r {
                    Ok(body) => {
                        // A short body yields a short slice, which fails its check below.
                        let off = ((layout.shard_offset(s) - base) as usize).min(body.len());
                        let end = (off + layout.shard_len(s)).min(body.len());
                        shards[j][i] = Some(body.slice(off..end));
                    }
                    Err(e) => self.fault(s, i, e.clone()),
                }
            }
        }
        for (j, s) in run.clone().enumerate() {
            for bad in self.codec.bad_shards(s, &shards[j], self.om.segment_checks(s)) {
                self.fault(s, bad, "shard failed its integrity check (corrupt or truncated)".into());
                if let Some(p) = self.holders[bad] {
                    p.note_corrupt();
                }
                shards[j][bad] = None;
            }
        }
    }

    /// Decodes every segment of the run on the blocking pool.
    async fn decode(&self, run: &Range<u64>, shards: &[Vec<Option<Bytes>>]) -> Vec<(u64, Result<DecodedSegment, CodecError>)> {
        let codec = self.codec.clone();
        let (segments, shards) = (run.clone(), shards.to_vec());
        tokio::task::spawn_blocking(move || segments.zip(shards).map(|(s, sh)| (s, codec.decode(s, &sh))).collect())
            .await
            .expect("decode task panicked")
    }

    async fn read_run(&self, run: Range<u64>) -> Result<Vec<(u64, DecodedSegment)>, EngineError> {
        let (k, n) = (self.om.k as usize, self.om.n as usize);
        let mut shards: Vec<Vec<Option<Bytes>>> = vec![vec![None; n]; (run.end - run.start) as usize];
        let order = self.order(self.codec.layout().part_of(run.start));
        self.fetch(&run, &mut shards, &order[..k]).await;
        // More shards only as far as needed.
        let mut next = k;
        loop {
            let short = shards.iter().map(|seg| k.saturating_sub(seg.iter().flatten().count())).max().unwrap_or(0);
            if short == 0 || next >= n {
                break;
            }
            let upto = (next + short).min(n);
            self.fetch(&run, &mut shards, &order[next..upto]).await;
            next = upto;
        }
        let mut decoded = self.decode(&run, &shards).await;
        if next < n && decoded.iter().any(|(_, d)| matches!(d, Err(CodecError::SegmentAuth { .. }))) {
            // Every shard passed its check, yet the segment failed authentication: one of them
            // lies. Fetch the rest so the codec can leave shards out one at a time to find it.
            self.fetch(&run, &mut shards, &order[next..]).await;
            decoded = self.decode(&run, &shards).await;
        }
        let mut out = Vec::with_capacity(decoded.len());
        for (s, d) in decoded {
            match d {
                Ok(d) => {
                    if let Some(liar) = d.liar {
                        self.fault(s, liar, "shard passed its check but failed authentication".into());
                        if let Some(p) = self.holders[liar] {
                            p.note_corrupt();
                        }
                    }
                    out.push((s, d));
                }
                Err(CodecError::NotEnoughShards { good, needed, .. }) => {
                    let detail = self
                        .faults
                        .lock()
                        .expect("faults lock")
                        .iter()
                        .filter(|f| f.segment == s)
                        .map(|f| format!("{}: {}", f.provider, f.reason))
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(EngineError::Unreadable { name: self.name.to_string(), segment: s, good, needed, detail });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_range_without_crossing_parts() {
        let layout = outlast_codec::Layout::new(100 * 1024, 1024, 2, 3).unwrap().with_segments_per_part(6);
        assert_eq!(runs(&layout, 0..13, 4), vec![0..4, 4..6, 6..10, 10..12, 12..13]);
        assert_eq!(runs(&layout, 5..7, 4), vec![5..6, 6..7]);
        assert_eq!(runs(&layout, 5..8, 1), vec![5..6, 6..7, 7..8]);
        assert!(runs(&layout, 3..3, 4).is_empty());
    }
}
