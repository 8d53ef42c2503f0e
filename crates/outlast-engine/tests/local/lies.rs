//! Lies a provider can tell beyond corrupt bytes: a blob swapped in from another object, and
//! reads and writes that go on while an evacuation moves shards underneath them.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;

#[tokio::test]
async fn a_shard_swapped_in_from_another_object_is_caught_and_attributed() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let (a, b) = (data(100_000, 1), data(100_000, 2));
    put(&store, "a", &a).await.unwrap();
    put(&store, "b", &b).await.unwrap();
    // On the provider holding b's first data shard, replace that blob with a's blob of the
    // same size from the same provider: well-formed bytes, wrong object.
    let liar = store.stat("b").await.unwrap().placement[0].clone();
    let dir = f.root.join(&liar);
    let shard_files: Vec<_> =
        f.blob_files().into_iter().filter(|p| p.starts_with(&dir) && p.to_string_lossy().contains("/s/")).collect();
    assert_eq!(shard_files.len(), 2);
    let b_blob = {
        // The blob that b's read fails on once it is swapped is b's; find it by trying.
        let mut found = None;
        for (i, target) in shard_files.iter().enumerate() {
            let other = &shard_files[1 - i];
            let saved = std::fs::read(target).unwrap();
            std::fs::copy(other, target).unwrap();
            let mut out = Vec::new();
            let r = store.get("b", None, &mut out, &NoProgress).await.unwrap();
            assert_eq!(out, b, "a swapped shard reached the output");
            if !r.faults.is_empty() {
                assert!(r.faults.iter().all(|f| f.provider == liar), "{:?}", r.faults);
                found = Some(target.clone());
            }
            std::fs::write(target, saved).unwrap();
        }
        found
    };
    assert!(b_blob.is_some(), "swapping b's shard for a's went unnoticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_go_on_during_an_evacuation() {
    let f = Fixture::new(2, 4).with_spare(1);
    let objects: Vec<(String, Vec<u8>)> = (0..12u8).map(|i| (format!("o{i}"), data(3 * SEG as usize + i as usize, i))).collect();
    {
        let store = f.store_with(&[4]).await;
        for (name, d) in &objects {
            put(&store, name, d).await.unwrap();
        }
    }
    let store = f.store().await;
    let evacuation = store.evacuate("p2", "p4", &NoProgress);
    let traffic = async {
        for round in 0..3u8 {
            for (name, d) in &objects {
                assert_eq!(&get(&store, name).await.unwrap(), d, "{name} during the evacuation");
            }
            put(&store, &format!("new{round}"), &data(5000, round)).await.unwrap();
        }
    };
    let (r, ()) = tokio::join!(evacuation, traffic);
    let r = r.unwrap();
    assert_eq!(r.remaining, 0, "{r:?}");
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d);
        assert!(!store.stat(name).await.unwrap().placement.contains(&"p2".to_string()));
    }
    for round in 0..3u8 {
        assert_eq!(get(&store, &format!("new{round}")).await.unwrap(), data(5000, round));
    }
}
