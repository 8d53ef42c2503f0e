//! The write path: read -> segment -> seal -> encode -> write shard `i` to provider `i`, all
//! providers concurrently, memory bounded by a few segments whatever the object size.
//!
//! Commit rule: the version becomes visible only when its shards are durable on the write
//! quorum, its sealed manifest is on the write quorum too, and the index row is committed. Any
//! failure before that leaves the blobs recorded as a pending write, which the put removes on
//! the way out or `outlast gc` removes after a crash.

use bytes::Bytes;
use futures::future::join_all;
use outlast_codec::check::ShardCheck;
use outlast_codec::{names, DataKey, Layout, Manifest, ManifestBody, ObjectManifest, SegmentCodec, ShardPlacement};
use outlast_provider::{BlobWriter, Provider};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::index::{BlobRef, IndexEntry, PendingWrite};
use crate::store::now_ns;
use crate::{EngineError, Progress, PutOptions, PutReport, Store};

/// Encoded segments queued between the reader and the writers: enough to keep both cores and
/// the providers busy, few enough to bound memory.
const PIPELINE_DEPTH: usize = 3;

async fn read_full<R: AsyncRead + Unpin>(src: &mut R, len: usize) -> Result<Vec<u8>, EngineError> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let got = src.read(&mut buf[filled..]).await.map_err(|e| EngineError::io("reading the source", e))?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    buf.truncate(filled);
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
    let coding = &store.config.coding;
    let (k, n) = (coding.k as usize, coding.n as usize);
    let stamp = store.next_stamp(name)?;
    let vid = stamp.vid;
    let placement = crate::placement::place(&store.providers, &vid, k, n).ok_or_else(|| EngineError::Config {
        path: store.config.path.clone(),
        field: "providers.domain".into(),
        message: "no placement satisfies the failure-domain rule".into(),
    })?;
    let shard_names: Vec<String> = (0..n).map(|i| names::shard_blob(&store.keys, &vid, i as u16)).collect();
    let manifest_name = names::manifest_blob(&store.keys, &vid);
    let mut pending_blobs: Vec<BlobRef> = placement
        .iter()
        .zip(&shard_names)
        .map(|(p, b)| BlobRef { provider: p.name().into(), blob: b.clone(), size: 0 })
        .collect();
    pending_blobs.extend(placement.iter().map(|p| BlobRef { provider: p.name().into(), blob: manifest_name.clone(), size: 0 }));
    store.index.begin_pending(&PendingWrite { vid, pid: std::process::id(), started_ns: now_ns(), blobs: pending_blobs.clone() })?;

    let result = write_version(store, name, src, opts, progress, &placement, &shard_names, &manifest_name, stamp).await;
    match result {
        Ok((report, garbage)) => {
            store.delete_blobs(&garbage).await;
            Ok(report)
        }
        Err(e) => {
            // Nothing was committed; remove what was written. Whatever cannot be removed now
            // stays listed as pending for gc.
            if store.delete_blobs(&pending_blobs).await == pending_blobs.len() {
                let _ = store.index.end_pending(&vid);
            }
            Err(e)
        }
    }
}

struct Failures(Vec<String>);

impl Failures {
    fn detail(&self) -> String {
        if self.0.is_empty() {
            "no provider reported an error".into()
        } else {
            self.0.join("; ")
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_version<R: AsyncRead + Unpin + Send>(
    store: &Store,
    name: &str,
    mut src: R,
    opts: PutOptions,
    progress: &dyn Progress,
    placement: &[&Provider],
    shard_names: &[String],
    manifest_name: &str,
    stamp: outlast_codec::VersionStamp,
) -> Result<(PutReport, Vec<BlobRef>), EngineError> {
    let coding = &store.config.coding;
    let (k, n, q) = (coding.k, coding.n, coding.write_quorum());
    let segment_size = coding.segment_size();
    let data_key = DataKey::generate();
    let codec = SegmentCodec::new(Layout::new(0, segment_size, k, n)?, data_key.clone(), stamp.vid, store.keys.check_seed);
    let mut failures = Failures(Vec::new());
    let quorum_err = |ok: usize, f: &Failures| EngineError::Quorum { name: name.into(), ok, needed: q, detail: f.detail() };

    let opened = join_all(placement.iter().zip(shard_names).map(|(p, b)| p.writer(b))).await;
    let mut writers: Vec<Option<BlobWriter>> = opened
        .into_iter()
        .map(|r| r.map_err(|e| failures.0.push(e.to_string())).ok())
        .collect();
    let live = |w: &[Option<BlobWriter>]| w.iter().filter(|w| w.is_some()).count();
    if live(&writers) < q {
        return Err(quorum_err(live(&writers), &failures));
    }

    // Reader: one segment of lookahead tells whether the current one is the last.
    let (tx, mut rx) = mpsc::channel(PIPELINE_DEPTH);
    let reader = async {
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut cur = read_full(&mut src, segment_size as usize).await?;
        for s in 0u64.. {
            let next = if cur.len() == segment_size as usize { read_full(&mut src, segment_size as usize).await? } else { Vec::new() };
            let is_last = next.is_empty();
            hasher.update(&cur);
            size += cur.len() as u64;
            let codec = codec.clone();
            let job = tokio::task::spawn_blocking(move || codec.encode_streaming(s, &cur, is_last).map(|e| (cur.len(), e)));
            if tx.send(job).await.is_err() || is_last {
                break;
            }
            cur = next;
        }
        drop(tx);
        Ok::<_, EngineError>((size, hasher.finalize()))
    };
    let writer = async {
        let mut checks: Vec<ShardCheck> = Vec::new();
        while let Some(job) = rx.recv().await {
            let (plain_len, encoded) = job.await.expect("encode task panicked")?;
            checks.extend_from_slice(&encoded.checks);
            let shards = &encoded.shards;
            let writes = writers.iter_mut().enumerate().filter_map(|(i, w)| {
                w.as_mut().map(|w| {
                    let shard: Bytes = shards[i].clone();
                    async move { (i, w.write(shard).await) }
                })
            });
            for (i, r) in join_all(writes).await {
                if let Err(e) = r {
                    failures.0.push(e.to_string());
                    if let Some(w) = writers[i].take() {
                        w.abort().await;
                    }
                }
            }
            if live(&writers) < q {
                return Err(quorum_err(live(&writers), &failures));
            }
            progress.advance(plain_len as u64);
        }
        Ok(checks)
    };
    let ((size, hash), checks) = tokio::try_join!(reader, writer)?;

    let closes = join_all(writers.into_iter().enumerate().map(|(i, w)| async move {
        match w {
            Some(w) => (i, w.close().await.map_err(|e| e.to_string())),
            None => (i, Err(String::new())),
        }
    }))
    .await;
    let mut durable = vec![false; n as usize];
    for (i, r) in closes {
        match r {
            Ok(()) => durable[i] = true,
            Err(e) if !e.is_empty() => failures.0.push(e),
            Err(_) => {}
        }
    }
    let durable_count = durable.iter().filter(|d| **d).count();
    if durable_count < q {
        return Err(quorum_err(durable_count, &failures));
    }

    let layout = Layout::new(size, segment_size, k, n)?;
    let manifest = Manifest {
        name: name.to_string(),
        stamp,
        body: ManifestBody::Object(ObjectManifest {
            size,
            content_type: opts.content_type.clone(),
            user_metadata: opts.metadata,
            blake3: *hash.as_bytes(),
            md5: None,
            data_key: *data_key.as_bytes(),
            segment_size,
            k,
            n,
            placement: placement
                .iter()
                .zip(shard_names)
                .map(|(p, b)| ShardPlacement { provider: p.name().to_string(), blob: b.clone() })
                .collect(),
            checks,
        }),
    };
    let sealed = Bytes::from(manifest.seal(&store.keys, manifest_name));
    let holders: Vec<usize> = (0..n as usize).filter(|i| durable[*i]).collect();
    let writes = join_all(holders.iter().map(|&i| placement[i].write(manifest_name, sealed.clone()))).await;
    let mut blobs = Vec::new();
    let mut missing = Vec::new();
    for (i, p) in placement.iter().enumerate() {
        if !durable[i] {
            missing.push(p.name().to_string());
        }
    }
    for (&i, r) in holders.iter().zip(writes) {
        let p = placement[i].name().to_string();
        blobs.push(BlobRef { provider: p.clone(), blob: shard_names[i].clone(), size: layout.blob_len() });
        match r {
            Ok(()) => blobs.push(BlobRef { provider: p, blob: manifest_name.to_string(), size: sealed.len() as u64 }),
            Err(e) => failures.0.push(e.to_string()),
        }
    }
    let manifests = blobs.iter().filter(|b| b.blob == manifest_name).count();
    if manifests < q {
        return Err(quorum_err(manifests, &failures));
    }
    let etag = hash.to_hex().to_string();
    let entry = IndexEntry {
        name: name.to_string(),
        stamp,
        size,
        content_type: opts.content_type,
        etag: etag.clone(),
        sealed_manifest: sealed.to_vec(),
    };
    let garbage = store.index.commit(&entry, &blobs, false)?;
    if !missing.is_empty() {
        tracing::warn!(object = name, missing = ?missing, "stored below full redundancy: {}", failures.detail());
    }
    let report = PutReport {
        name: name.to_string(),
        size,
        etag,
        version: stamp.vid.to_hex(),
        shards_written: durable_count,
        missing,
    };
    Ok((report, garbage))
}
