//! Codec throughput beside its parts, in one run: memcpy, AES-256-GCM alone, Reed-Solomon
//! alone, the shard checks, and the whole pipeline (seal + split + encode + checks, and back),
//! healthy and with n - k shards missing, on one core and on two; and the rebuilding of lost
//! data shards by the direct solve beside the library's decoder.
//!
//! `cargo bench -p outlast-codec --bench pipeline`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use outlast_codec::{DataKey, Layout, SegmentCodec, VersionId};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

const SEG: usize = 4 * 1024 * 1024;
const K: u16 = 4;
const N: u16 = 6;

fn input() -> Vec<u8> {
    (0..SEG).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect()
}

fn codec() -> SegmentCodec {
    let layout = Layout::new(SEG as u64 * 64, SEG as u32, K, N).unwrap();
    SegmentCodec::new(layout, DataKey::generate(), VersionId::generate(), 7)
}

fn baselines(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Bytes(SEG as u64));
    let mut dst = vec![0u8; SEG];
    g.bench_function("memcpy", |b| b.iter(|| dst.copy_from_slice(black_box(&data))));
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let mut buf = data.clone();
    g.bench_function("aes-256-gcm (ring)", |b| {
        b.iter(|| key.seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut buf).unwrap())
    });
    let shard = SEG / K as usize;
    g.bench_function("reed-solomon encode 4+2", |b| {
        b.iter(|| outlast_codec::erasure::encode_parity(K as usize, N as usize, shard, black_box(&data)).unwrap())
    });
    g.bench_function("reed-solomon encode 4+2, library's one-shot encode()", |b| {
        b.iter(|| reed_solomon_simd::encode(K as usize, (N - K) as usize, black_box(data.chunks_exact(shard))).unwrap())
    });
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("reed-solomon encode 4+2, 1 MiB", |b| {
        b.iter(|| outlast_codec::erasure::encode_parity(K as usize, N as usize, 1 << 18, black_box(&data[..1 << 20])).unwrap())
    });
    g.throughput(Throughput::Bytes(SEG as u64));
    g.bench_function("xxh3-128", |b| b.iter(|| xxhash_rust::xxh3::xxh3_128_with_seed(black_box(&data), 7)));
    g.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(&data))));
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let data = input();
    let codec = codec();
    let encoded = codec.encode(0, &data).unwrap();
    let healthy: Vec<Option<Bytes>> = encoded.shards.iter().cloned().map(Some).collect();
    let mut degraded = healthy.clone();
    degraded[0] = None;
    degraded[2] = None;
    let checks = encoded.checks.clone();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(SEG as u64));
    g.bench_function("encode 1 core", |b| b.iter(|| codec.encode(0, black_box(&data)).unwrap()));
    g.bench_function("decode healthy 1 core", |b| {
        b.iter(|| {
            assert!(codec.bad_shards(0, &healthy, &checks).is_empty());
            codec.decode(0, black_box(&healthy)).unwrap()
        })
    });
    g.bench_function("decode 2 of 6 missing 1 core", |b| {
        b.iter(|| {
            assert!(codec.bad_shards(0, &degraded, &checks).is_empty());
            codec.decode(0, black_box(&degraded)).unwrap()
        })
    });
    g.throughput(Throughput::Bytes(2 * SEG as u64));
    g.bench_function("encode 2 cores", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let h = s.spawn(|| codec.encode(0, &data).unwrap());
                codec.encode(0, &data).unwrap();
                h.join().unwrap();
            })
        })
    });
    g.bench_function("decode healthy 2 cores", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let h = s.spawn(|| codec.decode(0, &healthy).unwrap());
                codec.decode(0, &healthy).unwrap();
                h.join().unwrap();
            })
        })
    });
    g.finish();
}

/// Rebuilding lost data shards of a 1 MiB segment: the direct solve beside the library's
/// decoder, per geometry and number of lost data shards.
fn reconstruct(c: &mut Criterion) {
    let mut g = c.benchmark_group("reconstruct 1 MiB");
    g.throughput(Throughput::Bytes(1 << 20));
    for (k, n, lost) in [(4usize, 6usize, 1usize), (4, 6, 2), (10, 14, 1), (10, 14, 2), (10, 14, 4), (16, 24, 6), (16, 24, 8)] {
        let len = (1usize << 20).div_ceil(k).next_multiple_of(2);
        let data: Vec<u8> = input().into_iter().cycle().take(k * len).collect();
        let parity = outlast_codec::erasure::encode_parity(k, n, len, &data).unwrap();
        let at_hand: Vec<(usize, &[u8])> =
            (lost..k).map(|i| (i, &data[i * len..(i + 1) * len])).chain((0..lost).map(|j| (k + j, &parity[j][..]))).collect();
        let mut out = vec![0u8; k * len];
        outlast_codec::erasure::reconstruct_data(k, n, len, &at_hand, &mut out).unwrap();
        assert!(out == data);
        g.bench_function(format!("{k}+{} {lost} lost, library", n - k), |b| {
            b.iter(|| outlast_codec::erasure::reconstruct_data_by_library(k, n, len, black_box(&at_hand), &mut out).unwrap())
        });
        g.bench_function(format!("{k}+{} {lost} lost, reconstruct_data", n - k), |b| {
            b.iter(|| outlast_codec::erasure::reconstruct_data(k, n, len, black_box(&at_hand), &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = baselines, pipeline, reconstruct
}
criterion_main!(benches);
