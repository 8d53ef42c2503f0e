//! Composite versions on local folders (decision 0008): an object made of other objects'
//! versions reads whole and by ranges across part boundaries, refuses parts that changed,
//! survives the loss of the state folder, gets its manifest back on a provider that missed
//! it, and is never collected while current.

use crate::common;

use std::path::PathBuf;

use common::*;
use outlast_codec::VersionId;
use outlast_engine::progress::NoProgress;
use outlast_engine::{ByteRange, CompositeOptions, EngineError, Precondition, PutOptions, RepairOptions, Store};

const PARTS: [usize; 3] = [300_001, 0, 70_000];

/// Puts the parts (MD5 on, as the S3 face puts them) and returns their entries and bytes.
async fn parts(store: &Store, prefix: &str) -> (Vec<outlast_engine::index::IndexEntry>, Vec<u8>) {
    let mut entries = Vec::new();
    let mut whole = Vec::new();
    for (i, len) in PARTS.iter().enumerate() {
        let d = data(*len, i as u8 + 1);
        let name = format!(".outlast/parts/{prefix}/{i}");
        store
            .put(&name, &d[..], PutOptions { md5: outlast_engine::BodyMd5::Hash, ..Default::default() }, &NoProgress)
            .await
            .unwrap();
        entries.push(store.current(&name).await.unwrap().unwrap());
        whole.extend_from_slice(&d);
    }
    (entries, whole)
}

fn opts(origin: VersionId, precondition: Precondition) -> CompositeOptions {
    let put = PutOptions {
        content_type: Some("video/mp4".into()),
        metadata: vec![("who".into(), "me".into())],
        precondition,
        md5: outlast_engine::BodyMd5::Skip,
    };
    CompositeOptions { put, origin, fence: None }
}

async fn range(store: &Store, name: &str, r: ByteRange) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(name, Some(r), &mut out, &NoProgress).await.unwrap();
    out
}

#[tokio::test]
async fn a_composite_reads_whole_and_by_ranges_across_its_parts() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let (entries, whole) = parts(&store, "u1").await;
    let origin = VersionId::generate();
    let e = store.commit_composite("b/movie", &entries, opts(origin, Precondition::Absent)).await.unwrap();
    let vid = e.stamp.vid;
    assert_ne!(vid, origin, "a composite takes a fresh id, claimed under its origin");
    assert_eq!(store.composites_claimed(&origin).await.unwrap(), Some(vec![vid]));
    assert_eq!(e.size, whole.len() as u64);
    assert!(e.etag.ends_with("-3"), "{}", e.etag);
    assert_eq!(get(&store, "b/movie").await.unwrap(), whole);
    for (a, b) in [(0u64, 10u64), (299_990, 300_010), (300_000, 300_002), (369_999, 370_001), (5, 370_001)] {
        let want = &whole[a as usize..(b as usize).min(whole.len())];
        assert_eq!(range(&store, "b/movie", ByteRange::Span(a..b)).await, want, "{a}..{b}");
    }
    assert_eq!(range(&store, "b/movie", ByteRange::Last(20)).await, &whole[whole.len() - 20..]);
    let info = store.stat("b/movie").await.unwrap();
    let stat = store.describe(&store.current("b/movie").await.unwrap().unwrap()).unwrap();
    assert_eq!((info.size, info.etag.clone()), (whole.len() as u64, e.etag.clone()));
    assert_eq!((stat.parts, stat.metadata), (3, vec![("who".to_string(), "me".to_string())]));
    assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
    assert!(store.is_current(&vid).await.unwrap());

    // Put-if-absent is decided at the commit, as for a put. The attempt, from the same origin,
    // had a manifest name of its own: deleting it left the current composite's alone.
    let again = store.commit_composite("b/movie", &entries, opts(origin, Precondition::Absent)).await;
    assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");
    let claimed = store.composites_claimed(&origin).await.unwrap().unwrap();
    assert_eq!((claimed.len(), claimed[0]), (2, vid), "{claimed:?}");
    assert!(!store.composite_may_live(&claimed[1]).await.unwrap(), "the loser's manifest is gone everywhere");
    let manifest = outlast_codec::names::manifest_blob(&f.key.store_keys(), &vid);
    for i in 0..3 {
        assert!(f.provider_dir(i).join(&manifest).is_file(), "provider {i} still holds the winner's manifest");
    }
    assert_eq!(get(&store, "b/movie").await.unwrap(), whole);

    // gc leaves a current composite's manifest and its parts alone.
    gc(&store, 0).await;
    assert_eq!(get(&store, "b/movie").await.unwrap(), whole);
}

#[tokio::test]
async fn parts_that_changed_are_refused_and_a_part_replaced_later_fails_the_read_cleanly() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let (entries, whole) = parts(&store, "u2").await;
    // A part overwritten after it was read: the composite is not made.
    put(&store, &entries[2].name, b"other").await.unwrap();
    let refused = store.commit_composite("b/x", &entries, opts(VersionId::generate(), Precondition::Any)).await;
    assert!(matches!(refused, Err(EngineError::BadParts { .. })), "{refused:?}");
    assert!(store.current("b/x").await.unwrap().is_none(), "nothing was committed");
    // A composite cannot be a part.
    let fresh = vec![entries[0].clone(), store.current(&entries[2].name).await.unwrap().unwrap()];
    store.commit_composite("b/x", &fresh, opts(VersionId::generate(), Precondition::Any)).await.unwrap();
    let inner = vec![store.current("b/x").await.unwrap().unwrap()];
    let nested = store.commit_composite("b/y", &inner, opts(VersionId::generate(), Precondition::Any)).await;
    assert!(matches!(nested, Err(EngineError::BadParts { .. })), "{nested:?}");

    // A part removed behind the composite's back: the read fails and says which part.
    store.remove(&entries[0].name).await.unwrap();
    let read = get(&store, "b/x").await;
    assert!(matches!(&read, Err(EngineError::PartGone { part, .. }) if *part == entries[0].name), "{read:?}");
    let _ = whole;
}

fn state(f: &Fixture) -> PathBuf {
    f.root.join(".outlast")
}

#[tokio::test]
async fn a_composite_comes_back_with_the_index_and_its_manifest_is_repaired_everywhere() {
    let f = Fixture::new(2, 3).with_write_quorum(2);
    // Provider 2 is down while the composite is committed: its copy is owed.
    let (entries, whole) = parts(&f.store().await, "u3").await;
    let e =
        f.store_with(&[2]).await.commit_composite("b/c", &entries, opts(VersionId::generate(), Precondition::Any)).await.unwrap();
    let vid = e.stamp.vid;
    let store = f.store().await;
    async fn copies_of(s: &Store, vid: &VersionId) -> usize {
        s.index().blobs_of(vid).await.unwrap().len()
    }
    assert_eq!(copies_of(&store, &vid).await, 2);
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert!(r.tombstones_written >= 1, "{r:?}");
    assert_eq!(copies_of(&store, &vid).await, 3, "repair puts the composite on every provider");

    // The state folder is lost: recover brings the composite back, etag and all.
    drop(store);
    std::fs::remove_dir_all(state(&f)).unwrap();
    let store = f.store().await;
    store.recover(&NoProgress).await.unwrap();
    let back = store.current("b/c").await.unwrap().unwrap();
    assert_eq!((back.stamp, back.etag.clone(), back.size), (e.stamp, e.etag.clone(), e.size));
    assert_eq!(get(&store, "b/c").await.unwrap(), whole);
    assert_eq!(copies_of(&store, &vid).await, 3);

    // Overwritten by a plain put: the composite's manifests are garbage and go; the parts
    // are objects of their own and stay until their owner removes them.
    put(&store, "b/c", b"plain").await.unwrap();
    assert_eq!(copies_of(&store, &vid).await, 0);
    assert!(!store.is_current(&vid).await.unwrap());
    assert!(store.current(&entries[0].name).await.unwrap().is_some());
}

#[tokio::test]
async fn whether_a_composite_may_live_is_asked_of_the_providers_too() {
    let f = Fixture::new(2, 3);
    let a = f.store().await;
    let (entries, _) = parts(&a, "u4").await;
    // Nothing anywhere holds a composite with an id never used.
    assert!(!a.composite_may_live(&VersionId::generate()).await.unwrap());
    let origin = VersionId::generate();
    let vid = a.commit_composite("b/m", &entries, opts(origin, Precondition::Any)).await.unwrap().stamp.vid;
    assert!(a.composite_may_live(&vid).await.unwrap());

    // A second state folder whose index does not know the composite: the providers hold its
    // manifest, so it may live.
    let text = format!("state_dir = \"second-folder\"\n{}", f.config_text(&[]));
    let cfg = outlast_engine::Config::parse(&text, &f.root.join("outlast.toml")).unwrap();
    let b = Store::open_with_key(cfg, f.key.clone()).await.unwrap();
    assert!(!b.is_current(&vid).await.unwrap());
    assert_eq!(b.composites_claimed(&origin).await.unwrap(), Some(vec![vid]), "the providers' claim names it");
    assert!(b.composite_may_live(&vid).await.unwrap(), "the providers hold it");
    // Once it is overwritten (and its manifests gone), no index and no provider holds it.
    put(&a, "b/m", b"plain").await.unwrap();
    assert!(!a.composite_may_live(&vid).await.unwrap());
    assert!(!b.composite_may_live(&vid).await.unwrap());
}
