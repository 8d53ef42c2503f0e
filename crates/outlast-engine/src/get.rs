//! The read path: manifest -> for each segment in the range, fetch data shards (parity only
//! when one is missing or bad) -> check each shard -> decode -> decrypt -> stream out in order.

use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use outlast_codec::{names, CodecError, DataKey, ManifestBody, ObjectManifest, SegmentCodec, StoreKeys, VersionId};
use outlast_provider::Provider;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::store::ShardFault;
use crate::{EngineError, GetReport, Progress, Store};

/// Segments fetched and decoded ahead of the writer.
const READ_AHEAD: usize = 4;

pub(crate) async fn get<W: AsyncWrite + Unpin + Send>(
    store: &Store,
    name: &str,
    range: Option<Range<u64>>,
    mut dst: W,
    progress: &dyn Progress,
) -> Result<GetReport, EngineError> {
    let entry = store.index.get(name)?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
    let manifest = store.open_manifest(&entry)?;
    let ManifestBody::Object(om) = manifest.body else {
        return Err(EngineError::NotFound(name.to_string()));
    };
    let layout = om.layout()?;
    let codec = SegmentCodec::new(layout, DataKey::from_bytes(om.data_key), manifest.stamp.vid, store.keys.check_seed);
    let range = range.unwrap_or(0..om.size);
    let range = range.start.min(om.size)..range.end.min(om.size);
    let holders: Vec<Option<&Provider>> = om.placement.iter().map(|p| store.provider(&p.provider)).collect();
    let faults = Mutex::new(Vec::new());
    let reader = SegmentReader {
        name,
        om: &om,
        codec: &codec,
        holders: &holders,
        faults: &faults,
        keys: &store.keys,
        vid: manifest.stamp.vid,
    };

    // Fetching and decoding run ahead while the output is written: both halves are polled
    // together, so a slow destination does not stall the fetches (and the reverse).
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let fetcher = async {
        let mut segments =
            futures::stream::iter(layout.segments_for(range.clone())).map(|s| reader.read_segment(s)).buffered(READ_AHEAD);
        while let Some(seg) = segments.next().await {
            if tx.send(seg?).await.is_err() {
                break;
            }
        }
        drop(tx);
        Ok::<_, EngineError>(())
    };
    let writer = async {
        let mut report = GetReport::default();
        while let Some((s, decoded)) = rx.recv().await {
            report.degraded_segments += decoded.reconstructed as u64;
            let seg_range = layout.segment_range(s);
            let from = range.start.max(seg_range.start) - seg_range.start;
            let to = range.end.min(seg_range.end) - seg_range.start;
            let part = &decoded.plaintext[from as usize..to as usize];
            dst.write_all(part).await.map_err(|e| EngineError::io("writing the output", e))?;
            report.bytes += part.len() as u64;
            progress.advance(part.len() as u64);
        }
        dst.flush().await.map_err(|e| EngineError::io("writing the output", e))?;
        Ok::<_, EngineError>(report)
    };
    let ((), mut report) = tokio::try_join!(fetcher, writer)?;
    report.faults = std::mem::take(&mut *faults.lock().expect("faults lock"));
    for f in &report.faults {
        tracing::warn!(provider = %f.provider, object = name, segment = f.segment, shard = f.shard, "{}", f.reason);
    }
    Ok(report)
}

struct SegmentReader<'a> {
    name: &'a str,
    om: &'a ObjectManifest,
    codec: &'a SegmentCodec,
    holders: &'a [Option<&'a Provider>],
    faults: &'a Mutex<Vec<ShardFault>>,
    keys: &'a StoreKeys,
    vid: VersionId,
}

impl SegmentReader<'_> {
    fn fault(&self, segment: u64, shard: usize, reason: String) {
        let provider = self.om.placement[shard].provider.clone();
        self.faults.lock().expect("faults lock").push(ShardFault { provider, segment, shard, reason });
    }

    async fn fetch(&self, s: u64, shards: &mut [Option<Bytes>], which: Range<usize>) {
        let layout = self.codec.layout();
        let off = layout.shard_offset(s);
        let want = off..off + layout.shard_len(s) as u64;
        let fetches = which.map(|i| {
            let want = want.clone();
            async move {
                let blob = names::shard_blob(self.keys, &self.vid, i as u16, layout.part_of(s));
                let r = match self.holders[i] {
                    Some(p) => p.read_range(&blob, want).await.map_err(|e| e.to_string()),
                    None => Err(format!("provider `{}` is not in the configuration", self.om.placement[i].provider)),
                };
                (i, r)
            }
        });
        for (i, r) in join_all(fetches).await {
            match r {
                Ok(b) => shards[i] = Some(b),
                Err(e) => self.fault(s, i, e),
            }
        }
        for bad in self.codec.bad_shards(s, shards, self.om.segment_checks(s)) {
            if shards[bad].is_some() {
                self.fault(s, bad, "shard failed its integrity check (corrupt or truncated)".into());
            }
            shards[bad] = None;
        }
    }

    async fn read_segment(&self, s: u64) -> Result<(u64, outlast_codec::DecodedSegment), EngineError> {
        let (k, n) = (self.om.k as usize, self.om.n as usize);
        let mut shards: Vec<Option<Bytes>> = vec![None; n];
        self.fetch(s, &mut shards, 0..k).await;
        let mut next = k;
        loop {
            let good = shards.iter().filter(|s| s.is_some()).count();
            if good >= k || next >= n {
                break;
            }
            let upto = (next + (k - good)).min(n);
            self.fetch(s, &mut shards, next..upto).await;
            next = upto;
        }
        let codec = self.codec.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let d = codec.decode(s, &shards);
            (d, shards)
        })
        .await
        .expect("decode task panicked");
        match decoded {
            (Ok(d), _) => {
                if let Some(liar) = d.liar {
                    self.fault(s, liar, "shard passed its check but failed authentication".into());
                }
                Ok((s, d))
            }
            (Err(CodecError::NotEnoughShards { good, needed, .. }), _) => {
                let detail = self
                    .faults
                    .lock()
                    .expect("faults lock")
                    .iter()
                    .filter(|f| f.segment == s)
                    .map(|f| format!("{}: {}", f.provider, f.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(EngineError::Unreadable { name: self.name.to_string(), segment: s, good, needed, detail })
            }
            (Err(e), _) => Err(e.into()),
        }
    }
}
