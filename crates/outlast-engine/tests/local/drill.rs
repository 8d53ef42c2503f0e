//! The exit drill on local folders: what survives without some providers, proven by reading,
//! with nothing changed.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{DrillReport, EngineError, Store};

async fn drill(store: &Store, without: &[&str]) -> Result<DrillReport, EngineError> {
    let without: Vec<String> = without.iter().map(|s| s.to_string()).collect();
    store.drill(&without, &NoProgress).await
}

async fn recorded_blobs(store: &Store) -> usize {
    let mut n = 0;
    for i in 0..4 {
        n += store.index().blobs_on(&format!("p{i}")).await.unwrap().len();
    }
    n
}

#[tokio::test]
async fn the_drill_reads_everything_without_the_named_providers_and_changes_nothing() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    for i in 0..3u8 {
        put(&store, &format!("o{i}"), &data(100_000 * (i as usize + 1), i)).await.unwrap();
    }
    let files = f.blob_files();
    let blobs = recorded_blobs(&store).await;

    let one = drill(&store, &["p0"]).await.unwrap();
    assert_eq!((one.objects, one.readable, one.min_redundancy_left), (3, 3, Some(1)), "{one:?}");
    assert!(one.lost.is_empty() && one.at_risk.is_empty(), "{one:?}");
    assert_eq!(one.bytes_verified, 600_000);
    let held: u64 = store.index().blobs_on("p0").await.unwrap().iter().map(|b| b.size).sum();
    assert_eq!(one.evacuation.bytes, held);
    assert_eq!(one.evacuation.rebuild_read_bytes, 2 * held);

    let two = drill(&store, &["p0", "p3"]).await.unwrap();
    assert_eq!((two.readable, two.min_redundancy_left, two.at_risk.len()), (3, Some(0), 3), "{two:?}");

    let three = drill(&store, &["p0", "p1", "p3"]).await.unwrap();
    assert_eq!((three.readable, three.lost.len()), (0, 3), "{three:?}");

    // Nothing was changed by any of it.
    assert_eq!(f.blob_files(), files);
    assert_eq!(recorded_blobs(&store).await, blobs);
    assert!(matches!(drill(&store, &["nope"]).await, Err(EngineError::UnknownProvider(_))));
}

#[tokio::test]
async fn the_drill_counts_missing_shards_and_does_not_forget_them() {
    let f = Fixture::new(2, 4);
    let d = data(50_000, 9);
    {
        let store = f.store_with(&[3]).await; // p3 is down: "x" has no shard there
        put(&store, "x", &d).await.unwrap();
    }
    let store = f.store().await;
    put(&store, "y", &d).await.unwrap();
    let r = drill(&store, &["p0"]).await.unwrap();
    assert_eq!(r.readable, 2);
    assert_eq!(r.at_risk, ["x"], "{r:?}");
    let r = drill(&store, &["p0", "p1"]).await.unwrap();
    assert_eq!(r.lost, ["x"], "{r:?}");
    // A blob lost on a remaining provider is read around, and stays recorded: the drill
    // reports, repair and scrub change.
    let blobs = recorded_blobs(&store).await;
    let victim =
        f.blob_files().into_iter().find(|p| p.starts_with(f.provider_dir(2)) && p.to_string_lossy().contains("/s/")).unwrap();
    std::fs::remove_file(victim).unwrap();
    drill(&store, &["p0"]).await.unwrap();
    assert_eq!(recorded_blobs(&store).await, blobs);
}
