//! An object whose manifest in the index does not open with the store's key (sealed under
//! another key, a damaged index) is named and skipped by every store-wide job, which carry on
//! with the rest; nothing of it is deleted.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{RepairOptions, ScrubOptions};

#[tokio::test]
async fn an_object_whose_manifest_does_not_open_is_named_and_skipped_by_every_job() {
    let mut f = Fixture::new(2, 4);
    let store = f.store().await;
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        put(&store, name, &data(3000 + i, i as u8)).await.unwrap();
    }
    drop(store);
    // A fifth provider, empty, to evacuate to.
    f.spare = 1;
    f.mark(4);
    let index = rusqlite::Connection::open(f.root.join(".outlast/index.sqlite")).unwrap();
    let sealed: Vec<u8> = index.query_row("SELECT manifest FROM objects WHERE name = 'b'", [], |r| r.get(0)).unwrap();
    index.execute("UPDATE objects SET manifest = randomblob(length(manifest)) WHERE name = 'b'", []).unwrap();
    // One of a's shards is lost, so that repair has something to do besides.
    let a_shard = f.blob_files().into_iter().find(|p| p.starts_with(f.provider_dir(0)) && p.to_string_lossy().contains("/s/"));
    std::fs::remove_file(a_shard.unwrap()).unwrap();

    let store = f.store().await;
    let scrub = store.scrub(&ScrubOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((scrub.unopened.count, scrub.unopened.names.clone()), (1, vec!["b".to_string()]), "{scrub:?}");
    assert_eq!(scrub.objects, 2, "{scrub:?}");
    assert!(scrub.found_damage(), "a's lost shard: {scrub:?}");
    let sampled = store.scrub(&ScrubOptions { sample: Some(0.01) }, &NoProgress).await.unwrap();
    assert_eq!(sampled.unopened.names, ["b"]);

    let repair = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!(repair.unopened.names, ["b"], "{repair:?}");
    assert_eq!((repair.objects, repair.remaining), (3, 0), "{repair:?}");

    let drill = store.drill(&["p0".to_string()], &NoProgress).await.unwrap();
    assert!(drill.unchecked.iter().any(|u| u.starts_with("b:")), "{drill:?}");
    assert_eq!(drill.readable, 2, "{drill:?}");

    let evacuated = store.evacuate("p0", "p4", &NoProgress).await.unwrap();
    assert_eq!(evacuated.unopened.names, ["b"], "{evacuated:?}");
    // Its shard on p0 stays there: p0 is not called empty.
    assert_eq!(evacuated.remaining, 1, "{evacuated:?}");
    assert_eq!(store.objects_placed_on("p0").await.unwrap(), 1);

    let swept = gc(&store, 0).await;
    assert_eq!(swept.unopened.names, ["b"], "{swept:?}");
    // It cannot tell what b places beyond what the index records: nothing unreferenced goes.
    assert!(swept.errors.iter().any(|e| e.to_string().contains("do not open")), "{swept:?}");
    for (i, name) in ["a", "c"].into_iter().enumerate() {
        assert_eq!(get(&store, name).await.unwrap(), data(3000 + 2 * i, 2 * i as u8));
    }
    // Nothing of b went: with its manifest back, it reads whole.
    drop(store);
    index.execute("UPDATE objects SET manifest = ?1 WHERE name = 'b'", [&sealed]).unwrap();
    let store = f.store().await;
    assert_eq!(get(&store, "b").await.unwrap(), data(3001, 1));
}
