//! Property tests of the codec: any k of n shards rebuild every segment, and every kind of
//! tampering is detected.

use bytes::Bytes;
use outlast_codec::check::ShardCheck;
use outlast_codec::{
    CodecError, DataKey, Layout, Manifest, ManifestBody, MasterKey, ObjectManifest, SegmentCodec, ShardPlacement, VersionId,
    VersionStamp,
};
use proptest::prelude::*;

const SEED: u64 = 0x5eed;

struct Coded {
    codec: SegmentCodec,
    key: DataKey,
    vid: VersionId,
    shards: Vec<Vec<Bytes>>,
    checks: Vec<Vec<ShardCheck>>,
}

fn encode_object(data: &[u8], segment_size: u32, k: u16, n: u16) -> Coded {
    let layout = Layout::new(data.len() as u64, segment_size, k, n).unwrap();
    let (key, vid) = (DataKey::generate(), VersionId::generate());
    let codec = SegmentCodec::new(layout, key.clone(), vid, SEED);
    let mut shards = Vec::new();
    let mut checks = Vec::new();
    for s in 0..layout.segment_count() {
        let r = layout.segment_range(s);
        let e = codec.encode(s, &data[r.start as usize..r.end as usize]).unwrap();
        assert_eq!(e.shards.len(), n as usize);
        assert!(e.shards.iter().all(|sh| sh.len() == layout.shard_len(s)));
        shards.push(e.shards);
        checks.push(e.checks);
    }
    Coded { codec, key, vid, shards, checks }
}

fn decode_segment(c: &Coded, s: u64, missing: &[usize]) -> Result<Vec<u8>, CodecError> {
    let mut present: Vec<Option<Bytes>> = c.shards[s as usize].iter().cloned().map(Some).collect();
    for &m in missing {
        present[m] = None;
    }
    for b in c.codec.bad_shards(s, &present, &c.checks[s as usize]) {
        present[b] = None;
    }
    c.codec.decode(s, &present).map(|d| d.plaintext.to_vec())
}

fn params() -> impl Strategy<Value = (u16, u16, u32)> {
    (1u16..6, 1u16..4, prop_oneof![Just(16u32), Just(64), Just(1000), Just(4096)]).prop_map(|(k, m, seg)| (k, k + m, seg))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_k_of_n_rebuild_every_segment(
        (k, n, seg) in params(),
        len in 0usize..20_000,
        fill in any::<u8>(),
        missing_seed in any::<u64>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(fill)).collect();
        let c = encode_object(&data, seg, k, n);
        let layout = *c.codec.layout();
        let mut out = Vec::new();
        for s in 0..layout.segment_count() {
            // Drop a pseudo-random set of exactly n-k shards (a different one per segment).
            let mut idx: Vec<usize> = (0..n as usize).collect();
            let mut x = missing_seed ^ s.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for i in (1..idx.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                idx.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let missing = &idx[..(n - k) as usize];
            out.extend(decode_segment(&c, s, missing).unwrap());
        }
        prop_assert_eq!(out, data);
    }

    #[test]
    fn rebuild_restores_any_lost_shards_byte_for_byte_without_the_data_key(
        (k, n, seg) in params(),
        len in 0usize..12_000,
        lost_seed in any::<u64>(),
        lost_count in any::<prop::sample::Index>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
        let c = encode_object(&data, seg, k, n);
        // A codec with another data key: rebuilding must not need the right one.
        let blind = SegmentCodec::new(*c.codec.layout(), DataKey::generate(), c.vid, SEED);
        let lost_n = 1 + lost_count.index((n - k) as usize);
        let mut idx: Vec<usize> = (0..n as usize).collect();
        let mut x = lost_seed | 1;
        for i in (1..idx.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            idx.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut lost = idx[..lost_n].to_vec();
        lost.sort_unstable();
        for s in 0..c.codec.layout().segment_count() {
            let mut present: Vec<Option<Bytes>> = c.shards[s as usize].iter().cloned().map(Some).collect();
            for &i in &lost {
                present[i] = None;
            }
            let rebuilt = blind.rebuild(s, &present, &c.checks[s as usize], &lost).unwrap();
            for (r, &i) in rebuilt.iter().zip(&lost) {
                prop_assert_eq!(r, &c.shards[s as usize][i]);
            }
        }
    }

    #[test]
    fn tampered_shard_is_detected_and_worked_around(
        (k, n, seg) in params(),
        len in 1usize..10_000,
        which in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut c = encode_object(&data, seg, k, n);
        let s = 0usize;
        let i = which.index(n as usize);
        let mut shard = c.shards[s][i].to_vec();
        let b = byte.index(shard.len());
        shard[b] ^= 0x01;
        c.shards[s][i] = Bytes::from(shard);
        let present: Vec<Option<Bytes>> = c.shards[s].iter().cloned().map(Some).collect();
        prop_assert_eq!(c.codec.bad_shards(0, &present, &c.checks[s]), vec![i]);
        // Even if the check were fooled, the segment AEAD catches the lie and names the liar.
        let d = c.codec.decode(0, &present);
        let layout = c.codec.layout();
        let in_sealed_bytes = i * layout.shard_len(0) + b < layout.segment_sealed_len(0);
        if i < k as usize && in_sealed_bytes {
            let d = d.unwrap();
            prop_assert_eq!(d.liar, Some(i));
            prop_assert_eq!(&d.plaintext[..], &data[..layout_len(&c, 0)]);
        } else if i < k as usize {
            // Only zero padding was changed: the plaintext is unaffected (the check above
            // still flags the shard for repair).
            let d = d.unwrap();
            prop_assert_eq!(&d.plaintext[..], &data[..layout_len(&c, 0)]);
        } else {
            // A bad parity shard is not used by a healthy read at all.
            prop_assert_eq!(d.unwrap().liar, None);
        }
    }

    #[test]
    fn segment_from_another_object_or_position_is_rejected(
        (k, n, _seg) in params(),
        extra in 0usize..100,
    ) {
        let seg = 64u32;
        let len = 3 * seg as usize + extra;
        let data = vec![7u8; len];
        let a = encode_object(&data, seg, k, n);
        let b = encode_object(&data, seg, k, n);
        // Swap all of segment 0 from object b into object a.
        let swapped: Vec<Option<Bytes>> = b.shards[0].iter().cloned().map(Some).collect();
        let res = a.codec.decode(0, &swapped);
        prop_assert!(matches!(res, Err(CodecError::SegmentAuth { segment: 0 })), "{:?}", res.map(|d| d.liar));
        // Reorder: segment 1's shards presented as segment 2 (same length when extra == 0).
        if extra == 0 {
            let moved: Vec<Option<Bytes>> = a.shards[1].iter().cloned().map(Some).collect();
            prop_assert!(a.codec.decode(2, &moved).is_err());
        }
    }
}

fn layout_len(c: &Coded, s: u64) -> usize {
    c.codec.layout().segment_plain_len(s)
}

#[test]
fn edges_around_segment_size() {
    let seg = 1024u32;
    for len in [0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 3 * 1024] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let c = encode_object(&data, seg, 3, 5);
        let mut out = Vec::new();
        for s in 0..c.codec.layout().segment_count() {
            out.extend(decode_segment(&c, s, &[0, 4]).unwrap());
        }
        assert_eq!(out, data, "len {len}");
    }
}

#[test]
fn truncation_and_reordering_are_detected() {
    let seg = 100u32;
    let data = vec![1u8; 300];
    let c = encode_object(&data, seg, 2, 3);
    // A reader told (by a forged size) that the object ends after segment 1 must reject segment 1:
    // it was not sealed as the last one.
    let short = SegmentCodec::new(Layout::new(200, seg, 2, 3).unwrap(), c.key.clone(), c.vid, SEED);
    let seg1: Vec<Option<Bytes>> = c.shards[1].iter().cloned().map(Some).collect();
    assert!(matches!(short.decode(1, &seg1), Err(CodecError::SegmentAuth { segment: 1 })));
    assert!(c.codec.decode(1, &seg1).is_ok());
    // Segment 2's shards presented as segment 1.
    let seg2: Vec<Option<Bytes>> = c.shards[2].iter().cloned().map(Some).collect();
    assert!(c.codec.decode(1, &seg2).is_err(), "segment 2 accepted as segment 1");
    let too_few: Vec<Option<Bytes>> = vec![Some(c.shards[0][0].clone()), None, None];
    assert!(matches!(c.codec.decode(0, &too_few), Err(CodecError::NotEnoughShards { good: 1, needed: 2, .. })));
}

fn sample_manifest() -> Manifest {
    Manifest {
        name: "docs/report.pdf".into(),
        stamp: VersionStamp { time_ns: 42, vid: VersionId::generate() },
        body: ManifestBody::Object(ObjectManifest {
            size: 10,
            content_type: Some("application/pdf".into()),
            user_metadata: vec![("owner".into(), "ada".into())],
            blake3: [1; 32],
            md5: None,
            data_key: [2; 32],
            segment_size: 1024,
            k: 2,
            n: 3,
            segments_per_part: 16,
            placement: (0..3).map(|i| ShardPlacement { provider: format!("p{i}") }).collect(),
            checks: vec![ShardCheck([0; 16]); 3],
        }),
        revision: 0,
    }
}

#[test]
fn manifest_roundtrip_and_tamper() {
    let keys = MasterKey::generate().store_keys();
    let m = sample_manifest();
    let sealed = m.seal(&keys, "m/abc");
    assert_eq!(Manifest::open(&keys, "m/abc", &sealed).unwrap(), m);
    // Every single-byte flip is caught.
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x80;
        assert!(Manifest::open(&keys, "m/abc", &t).is_err(), "flip at {i} accepted");
    }
    // Moved to another name, truncated, or opened with another key: refused.
    assert_eq!(Manifest::open(&keys, "m/abd", &sealed), Err(CodecError::ManifestAuth));
    assert!(Manifest::open(&keys, "m/abc", &sealed[..sealed.len() - 1]).is_err());
    let other = MasterKey::generate().store_keys();
    assert_eq!(Manifest::open(&other, "m/abc", &sealed), Err(CodecError::ManifestAuth));
}

#[test]
fn names_are_opaque_and_distinct() {
    let keys = MasterKey::generate().store_keys();
    let v = VersionId::generate();
    let a = outlast_codec::names::shard_blob(&keys, &v, 0, 0);
    let b = outlast_codec::names::shard_blob(&keys, &v, 1, 0);
    assert_ne!(a, outlast_codec::names::shard_blob(&keys, &v, 0, 1));
    let m = outlast_codec::names::manifest_blob(&keys, &v);
    assert_ne!(a, b);
    assert!(a.starts_with("s/") && m.starts_with("m/"));
    assert!(!a.contains(&v.to_hex()[..8]));
    let other = MasterKey::generate().store_keys();
    assert_ne!(outlast_codec::names::shard_blob(&other, &v, 0, 0), a);
}
