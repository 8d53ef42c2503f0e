//! Recover on local folders: the index rebuilt from the providers' manifests after the state
//! folder is lost, over an old index restored from a backup, with providers down, and with a
//! provider that lies (corrupt copies, old versions planted back).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{EngineError, Store};

/// Puts, overwrites and removes; returns what the store should hold and the removed names.
async fn fill(store: &Store) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut model = BTreeMap::new();
    for i in 0..12u8 {
        let d = data(1000 + i as usize * 20_011, i);
        put(store, &format!("o{i}"), &d).await.unwrap();
        model.insert(format!("o{i}"), d);
    }
    for i in 0..4u8 {
        let d = data(5000 + i as usize, 100 + i);
        put(store, &format!("o{i}"), &d).await.unwrap(); // overwritten
        model.insert(format!("o{i}"), d);
    }
    let mut removed = Vec::new();
    for i in 8..11u8 {
        store.remove(&format!("o{i}")).await.unwrap();
        model.remove(&format!("o{i}"));
        removed.push(format!("o{i}"));
    }
    (model, removed)
}

async fn check(store: &Store, model: &BTreeMap<String, Vec<u8>>, removed: &[String]) {
    let listed: Vec<String> = store.list("").await.unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
    for (name, want) in model {
        assert_eq!(&get(store, name).await.unwrap(), want, "{name}");
    }
    for name in removed {
        assert!(matches!(get(store, name).await, Err(EngineError::NotFound(_))), "{name} came back");
    }
}

fn state(f: &Fixture) -> PathBuf {
    f.root.join(".outlast")
}

#[tokio::test]
async fn a_lost_state_folder_is_rebuilt_from_the_providers() {
    let f = Fixture::new(2, 3);
    let (model, removed) = fill(&f.store().await).await;
    let before: Vec<_> =
        f.store().await.list("").await.unwrap().into_iter().map(|o| (o.name, o.size, o.etag, o.version)).collect();
    std::fs::remove_dir_all(state(&f)).unwrap();
    let store = f.store().await;
    assert!(store.list("").await.unwrap().is_empty());
    let r = store.recover(&NoProgress).await.unwrap();
    assert_eq!((r.objects, r.deleted, r.added), (9, 3, 12), "{r:?}");
    let after: Vec<_> = store.list("").await.unwrap().into_iter().map(|o| (o.name, o.size, o.etag, o.version)).collect();
    assert_eq!(after, before);
    check(&store, &model, &removed).await;
    // Nothing is owed: every blob was found by listing.
    assert!(store.owed().await.unwrap().is_empty(), "{:?}", store.owed().await.unwrap());
    // Again: nothing changes.
    let again = store.recover(&NoProgress).await.unwrap();
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 12), "{again:?}");
}

#[tokio::test]
async fn an_old_index_restored_from_a_backup_is_brought_up_to_date() {
    let f = Fixture::new(2, 3);
    let backup = f.root.join("backup");
    {
        let store = f.store().await;
        put(&store, "early", &data(3000, 1)).await.unwrap();
        put(&store, "changed", &data(3000, 2)).await.unwrap();
        put(&store, "gone", &data(3000, 3)).await.unwrap();
    }
    copy_dir(&state(&f), &backup);
    let store = f.store().await;
    put(&store, "changed", &data(4000, 4)).await.unwrap();
    put(&store, "late", &data(4000, 5)).await.unwrap();
    store.remove("gone").await.unwrap();
    drop(store);
    std::fs::remove_dir_all(state(&f)).unwrap();
    copy_dir(&backup, &state(&f));
    let store = f.store().await;
    let r = store.recover(&NoProgress).await.unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (1, 2, 1), "{r:?}");
    let model: BTreeMap<String, Vec<u8>> =
        [("changed", data(4000, 4)), ("early", data(3000, 1)), ("late", data(4000, 5))].map(|(n, d)| (n.to_string(), d)).into();
    check(&store, &model, &["gone".to_string()]).await;
}

#[tokio::test]
async fn a_lying_provider_neither_resurrects_old_versions_nor_hides_new_ones() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    put(&store, "kept", &data(3000, 1)).await.unwrap();
    put(&store, "deleted", &data(3000, 2)).await.unwrap();
    // Keep p0's copies of these first versions, to plant them back later.
    let old: Vec<(PathBuf, Vec<u8>)> = manifests(&f, 0).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    put(&store, "kept", &data(3000, 3)).await.unwrap();
    store.remove("deleted").await.unwrap();
    drop(store);
    // p0 goes back to what it held before (a restored snapshot), and corrupts a current copy.
    for (path, bytes) in &old {
        std::fs::write(path, bytes).unwrap();
    }
    let current = manifests(&f, 0).into_iter().find(|p| !old.iter().any(|(o, _)| o == p)).unwrap();
    let mut bytes = std::fs::read(&current).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&current, bytes).unwrap();
    std::fs::remove_dir_all(state(&f)).unwrap();
    let store = f.store().await;
    let r = store.recover(&NoProgress).await.unwrap();
    assert!(r.copies_rejected >= 1, "{r:?}");
    let model: BTreeMap<String, Vec<u8>> = [("kept".to_string(), data(3000, 3))].into();
    check(&store, &model, &["deleted".to_string()]).await;
    // What p0 corrupted is debt, not a copy counted on.
    assert!(!store.owed().await.unwrap().is_empty());
}

#[tokio::test]
async fn with_a_provider_down_recover_says_its_view_may_be_incomplete_and_a_rerun_completes_it() {
    let f = Fixture::new(2, 3);
    let (model, removed) = fill(&f.store().await).await;
    std::fs::remove_dir_all(state(&f)).unwrap();
    let store = f.store_with(&[2]).await;
    let r = store.recover(&NoProgress).await.unwrap();
    assert_eq!(r.unreachable, ["p2"], "{r:?}");
    check(&store, &model, &removed).await;
    drop(store);
    let store = f.store().await;
    let r = store.recover(&NoProgress).await.unwrap();
    assert!(r.unreachable.is_empty() && r.updated + r.unchanged == 12, "{r:?}");
    assert!(store.owed().await.unwrap().is_empty(), "{:?}", store.owed().await.unwrap());
}

fn manifests(f: &Fixture, i: u16) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(f.provider_dir(i).join("m")).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A face that asks for it (the S3 gateway) gets the MD5 of the body as the ETag, kept in the
/// manifest, so a recovered index shows the same ETag; other puts keep the BLAKE3.
#[tokio::test]
async fn an_md5_etag_is_kept_in_the_manifest_and_survives_recovery() {
    use md5::Digest;
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let body = data(5_000_000, 7);
    let opts = outlast_engine::PutOptions { md5: outlast_engine::BodyMd5::Hash, ..Default::default() };
    let put = store.put("with-md5", &body[..], opts, &NoProgress).await.unwrap();
    assert_eq!(put.etag, hex::encode(md5::Md5::digest(&body)));
    let plain = store.put("plain", &body[..], Default::default(), &NoProgress).await.unwrap();
    assert_eq!(plain.etag, blake3::hash(&body).to_hex().to_string());
    drop(store);
    std::fs::remove_dir_all(state(&f)).unwrap();
    let store = f.store().await;
    store.recover(&NoProgress).await.unwrap();
    assert_eq!(store.stat("with-md5").await.unwrap().etag, put.etag);
    assert_eq!(store.stat("plain").await.unwrap().etag, plain.etag);
    assert_eq!(get(&store, "with-md5").await.unwrap(), body);
}
