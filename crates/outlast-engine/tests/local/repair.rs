//! Repair on local folders: debt from a put that missed a provider, a wiped provider found by
//! listing, and the rebuilt shards proven good by reading with the others gone.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::RepairOptions;
use outlast_provider::Faults;

#[tokio::test]
async fn repair_pays_the_debt_of_a_put_that_missed_a_provider() {
    let f = Fixture::new(2, 4);
    let d = data(5 * SEG as usize + 100, 1); // two parts per shard
    {
        let store = f.store_with(&[0]).await;
        assert_eq!(put(&store, "x", &d).await.unwrap().missing, ["p0"]);
    }
    let store = f.store().await;
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.objects_in_debt, r.blobs_rebuilt, r.manifests_written, r.remaining), (1, 2, 1, 0), "{r:?}");
    // Reading k shards per byte rebuilt, no more.
    let rebuilt = r.bytes_written
        - store.index().blobs_on("p0").await.unwrap().iter().filter(|b| b.blob.starts_with("m/")).map(|b| b.size).sum::<u64>();
    assert!(r.bytes_read <= 2 * rebuilt, "read {} to rebuild {rebuilt}", r.bytes_read);
    // Nothing is owed any more, and nothing present was rewritten.
    let again = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((again.objects_in_debt, again.bytes_written, again.bytes_read), (0, 0, 0), "{again:?}");
    // The rebuilt shards are good: read with two of the other three providers gone.
    let placement = store.stat("x").await.unwrap().placement;
    drop(store);
    let others: Vec<u16> = placement.iter().filter(|p| *p != "p0").take(2).map(|p| p[1..].parse().unwrap()).collect();
    for i in &others {
        std::fs::remove_dir_all(f.provider_dir(*i)).unwrap();
    }
    assert_eq!(get(&f.store().await, "x").await.unwrap(), d);
}

#[tokio::test]
async fn repair_finds_a_wiped_provider_by_listing_and_rebuilds_it() {
    let f = Fixture::new(2, 4);
    let objects: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("o{i}"), data(40_000 * (i + 1), i as u8))).collect();
    let store = f.store().await;
    for (name, d) in &objects {
        put(&store, name, d).await.unwrap();
    }
    let before = f.blob_files().into_iter().filter(|p| p.starts_with(f.provider_dir(3))).count();
    std::fs::remove_dir_all(f.provider_dir(3)).unwrap();
    store.reset_provider("p3").await.unwrap(); // taken back on purpose
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!(r.blobs_found_lost as usize, before, "{r:?}");
    assert_eq!(r.remaining, 0, "{r:?}");
    assert_eq!(r.blobs_rebuilt + r.manifests_written, before as u64);
    // p3 holds everything again: read with two others gone.
    drop(store);
    std::fs::remove_dir_all(f.provider_dir(0)).unwrap();
    std::fs::remove_dir_all(f.provider_dir(1)).unwrap();
    let store = f.store().await;
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
}

#[tokio::test]
async fn repair_below_k_says_what_is_still_owed_and_changes_nothing_else() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    put(&store, "x", &data(100_000, 3)).await.unwrap();
    for i in 0..3 {
        std::fs::remove_dir_all(f.provider_dir(i)).unwrap();
    }
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert!(r.remaining > 0 && !r.errors.is_empty(), "{r:?}");
    assert_eq!(r.blobs_rebuilt, 0, "{r:?}");
}

#[tokio::test]
async fn the_rate_limit_holds() {
    let f = Fixture::new(2, 4);
    let d = data(6 * SEG as usize, 4);
    {
        let store = f.store_with(&[1]).await;
        put(&store, "x", &d).await.unwrap();
    }
    let store = f.store().await;
    let started = std::time::Instant::now();
    let rate = 100_000; // bytes per second; about 200 KB of shards to rebuild
    let r = store.repair(&RepairOptions { limit_rate: Some(rate) }, &NoProgress).await.unwrap();
    let elapsed = started.elapsed();
    let shard_bytes: u64 =
        store.index().blobs_on("p1").await.unwrap().iter().filter(|b| b.blob.starts_with("s/")).map(|b| b.size).sum();
    assert_eq!(r.blobs_rebuilt, 2);
    // A lower bound only (the pacer sleeps until the bytes written fit the rate).
    assert!(elapsed.as_secs_f64() >= shard_bytes as f64 / rate as f64, "{elapsed:?} for {shard_bytes} bytes");
}

#[tokio::test]
async fn tombstones_are_put_back_on_every_provider_that_lacks_one() {
    let f = Fixture::new(2, 4).with_spare(1);
    {
        let store = f.store_with(&[4]).await; // the spare is out of reach while deleting
        put(&store, "gone", &data(1000, 5)).await.unwrap();
        put(&store, "kept", &data(1000, 6)).await.unwrap();
        store.remove("gone").await.unwrap();
    }
    let tombstone_files = |i: u16| {
        f.blob_files().into_iter().filter(|p| p.starts_with(f.provider_dir(i)) && p.to_string_lossy().contains("/m/")).count()
    };
    assert_eq!(tombstone_files(4), 0);
    std::fs::remove_dir_all(f.provider_dir(1)).unwrap();
    f.store().await.reset_provider("p1").await.unwrap();
    let store = f.store().await;
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    // p1 gets back its tombstone (and "kept"'s manifest and shard); p4 gets the tombstone.
    assert_eq!(r.tombstones_written, 2, "{r:?}");
    assert_eq!(tombstone_files(4), 1);
    let again = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!(again.tombstones_written, 0, "{again:?}");
    assert!(matches!(get(&store, "gone").await, Err(outlast_engine::EngineError::NotFound(_))));
}

#[tokio::test]
async fn gc_never_deletes_a_shard_the_current_placement_names_even_when_the_index_forgot_it() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(150_000, 5);
    put(&store, "x", &d).await.unwrap();
    // A read that once found it missing (a provider mid-restart, say) dropped it from the index.
    let shard = store.index().blobs_on("p0").await.unwrap().into_iter().find(|b| b.blob.starts_with("s/")).unwrap();
    store.index().forget_blob("p0", &shard.blob).await.unwrap();
    let file = f.provider_dir(0).join(&shard.blob);
    assert!(file.exists());
    backdate(&f.root, 30 * 24 * 3600);
    let r = gc(&store, 0).await;
    assert_eq!(r.deleted, 0, "{r:?}");
    assert!(file.exists(), "gc deleted a shard of the current version");
    // Repair finds it there, whole and matching its checks, and records it again.
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.blobs_found_intact, r.blobs_rebuilt, r.remaining), (1, 0, 0), "{r:?}");
    assert!(store.index().blobs_on("p0").await.unwrap().contains(&shard));
    assert_eq!(get(&store, "x").await.unwrap(), d);
}

#[tokio::test]
async fn repair_leaves_a_provider_that_keeps_failing_alone_for_the_rest_of_the_run() {
    let f = Fixture::new(2, 4);
    {
        let store = f.store_with(&[0]).await;
        for i in 0..6u8 {
            put(&store, &format!("o{i}"), &data(20_000, i)).await.unwrap();
        }
    }
    let store = f.store().await;
    let refusing = store.provider_named("p0").unwrap();
    refusing.set_faults(Faults { deny: true, ..Default::default() });
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.objects_in_debt, r.blobs_rebuilt, r.remaining), (6, 0, 6), "{r:?}");
    // Three refusals, then it is not asked again: a dead provider costs its timeouts a few
    // times per run, not once per blob.
    assert_eq!(refusing.health().denied, 3, "{r:?}");
    assert_eq!(r.errors.iter().filter(|e| e.to_string().contains("left alone")).count(), 1, "{r:?}");
    // The next run tries again, and pays the debt once the provider is back.
    refusing.set_faults(Faults::default());
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.blobs_rebuilt, r.manifests_written, r.remaining), (6, 6, 0), "{r:?}");
}

#[tokio::test]
async fn repair_stops_asking_a_provider_that_hangs_after_three_timeouts() {
    let f = Fixture::new(2, 4).with_operation_timeout(0.3);
    {
        let store = f.store_with(&[0]).await;
        for i in 0..48u8 {
            put(&store, &format!("o{i}"), &data(20_000, i)).await.unwrap();
        }
    }
    let store = f.store().await;
    // p0 is owed a shard of every object, takes requests and never answers: each attempt
    // fails after the operation timeout, not after the transport's minutes of retries, and
    // after three failures the run stops asking it: only what was already in flight then
    // (objects are repaired 16 at a time) still fails. Without it, each of the 48 objects
    // would cost two timeouts (its shard and its manifest copy).
    let hanging = store.provider_named("p0").unwrap();
    hanging.set_faults(Faults { hang: true, ..Default::default() });
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), store.repair(&RepairOptions::default(), &NoProgress))
        .await
        .expect("repair waited for the hanging provider")
        .unwrap();
    assert_eq!((r.objects_in_debt, r.blobs_rebuilt, r.remaining), (48, 0, 48), "{r:?}");
    assert!(hanging.health().transient <= 32, "{:?} {r:?}", hanging.health());
    assert_eq!(r.errors.iter().filter(|e| e.to_string().contains("left alone")).count(), 1, "{r:?}");
    assert!(r.errors.iter().any(|e| e.to_string().contains("no answer within")), "{r:?}");
    hanging.set_faults(Faults::default());
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.blobs_rebuilt, r.manifests_written, r.remaining), (48, 48, 0), "{r:?}");
}

#[tokio::test]
async fn a_provider_that_was_briefly_gone_is_checked_not_rewritten_wholesale() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    for i in 0..4u8 {
        put(&store, &format!("o{i}"), &data(150_000, i)).await.unwrap();
    }
    // A listing cut short while p1 restarted made the index forget every shard it holds,
    // though they are all still there; one of them was damaged meanwhile.
    let shards: Vec<_> = store.index().blobs_on("p1").await.unwrap().into_iter().filter(|b| b.blob.starts_with("s/")).collect();
    for b in &shards {
        store.index().forget_blob("p1", &b.blob).await.unwrap();
    }
    let damaged = f.provider_dir(1).join(&shards[0].blob);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((r.blobs_found_intact, r.blobs_rebuilt, r.remaining), (shards.len() as u64 - 1, 1, 0), "{r:?}");
    assert!(r.bytes_written <= shards[0].size, "rewrote more than the damaged blob: {r:?}");
    for i in 0..4u8 {
        assert_eq!(get(&store, &format!("o{i}")).await.unwrap(), data(150_000, i));
    }
}
