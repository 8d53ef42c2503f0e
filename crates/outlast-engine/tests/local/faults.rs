//! Faults injected between the engine and real local folders: hangs cost neither reads nor
//! writes their timeouts, refusals end in "terminated", lies are caught and attributed.

use crate::common;

use std::time::Duration;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::Store;
use outlast_provider::{Faults, HealthState};

/// Fails the test instead of hanging it: these operations must finish without a timeout.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("the operation waited on a hanging provider")
}

fn fault(store: &Store, provider: &str, faults: Faults) {
    store.provider_named(provider).unwrap().set_faults(faults);
}

async fn holder_of_shard(store: &Store, name: &str, shard: usize) -> String {
    store.stat(name).await.unwrap().placement[shard].clone()
}

#[tokio::test]
async fn a_hanging_provider_is_hedged_around_on_reads_and_left_behind_on_writes() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(5 * SEG as usize, 1);
    put(&store, "x", &d).await.unwrap();
    let slow = holder_of_shard(&store, "x", 0).await; // a data shard: asked first
    fault(&store, &slow, Faults { hang: true, ..Default::default() });

    let mut out = Vec::new();
    let report = bounded(store.get("x", None, &mut out, &NoProgress)).await.unwrap();
    assert_eq!(out, d);
    assert!(report.hedged >= 1, "{report:?}");

    // A write goes on at quorum plus a short grace; the hanging provider's shard is debt.
    let r = bounded(put(&store, "y", &d)).await.unwrap();
    if store.stat("y").await.unwrap().placement.contains(&slow) {
        assert_eq!(r.missing, std::slice::from_ref(&slow), "{r:?}");
    }
    fault(&store, &slow, Faults::default());
    assert_eq!(get(&store, "y").await.unwrap(), d);
    bounded(store.remove("y")).await.unwrap();
}

#[tokio::test]
async fn refusals_mark_a_provider_terminated_and_reads_and_writes_carry_on() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(3 * SEG as usize, 2);
    put(&store, "x", &d).await.unwrap();
    let gone = holder_of_shard(&store, "x", 0).await;
    fault(&store, &gone, Faults { deny: true, ..Default::default() });
    for i in 0..3 {
        assert_eq!(get(&store, "x").await.unwrap(), d);
        put(&store, &format!("after{i}"), &d).await.unwrap();
    }
    let h = store.health().into_iter().find(|h| h.name == gone).unwrap();
    assert_eq!(h.state, HealthState::Terminated, "{h:?}");
    assert!(h.reason.contains("refused"), "{h:?}");
    assert_eq!(store.terminated_providers().len(), 1);
    // With exactly n providers configured, new versions still place a shard on the
    // terminated one; the writes succeeded at quorum and read back.
    for i in 0..3 {
        assert_eq!(get(&store, &format!("after{i}")).await.unwrap(), d);
    }
}

#[tokio::test]
async fn truncated_and_corrupted_bodies_are_caught_attributed_and_worked_around() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(4 * SEG as usize + 3, 3);
    put(&store, "x", &d).await.unwrap();
    for (shard, faults) in
        [(0, Faults { truncate: true, ..Default::default() }), (1, Faults { corrupt: true, ..Default::default() })]
    {
        let liar = holder_of_shard(&store, "x", shard).await;
        fault(&store, &liar, faults);
        let mut out = Vec::new();
        let report = store.get("x", None, &mut out, &NoProgress).await.unwrap();
        assert_eq!(out, d, "a lie reached the output");
        assert!(!report.faults.is_empty() && report.faults.iter().all(|f| f.provider == liar), "{:?}", report.faults);
        assert!(report.faults.iter().all(|f| f.reason.contains("integrity")), "{:?}", report.faults);
        fault(&store, &liar, Faults::default());
    }
}

#[tokio::test]
async fn transient_errors_everywhere_but_k_still_read_and_the_failing_provider_is_named() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(2 * SEG as usize, 4);
    put(&store, "x", &d).await.unwrap();
    let flaky = holder_of_shard(&store, "x", 1).await;
    fault(&store, &flaky, Faults { error_rate: 1.0, ..Default::default() });
    for _ in 0..3 {
        assert_eq!(get(&store, "x").await.unwrap(), d);
    }
    let h = store.health().into_iter().find(|h| h.name == flaky).unwrap();
    assert_eq!(h.state, HealthState::Unreachable, "{h:?}");
}

#[tokio::test]
async fn a_shard_owed_to_repair_is_no_fault_of_its_provider_when_asked_as_a_last_resort() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(SEG as usize, 3);
    put(&store, "x", &d).await.unwrap();
    let [owed, liar, slow] =
        [holder_of_shard(&store, "x", 0).await, holder_of_shard(&store, "x", 1).await, holder_of_shard(&store, "x", 2).await];
    // Shard 0's blob is gone and the index knows it (repair debt); shard 1 lies; shard 2 is
    // slow, so the read runs out of recorded shards and asks for shard 0 too.
    let vid = store.index().get("x").await.unwrap().unwrap().stamp.vid;
    let blob =
        store.index().blobs_of(&vid).await.unwrap().into_iter().find(|b| b.provider == owed && b.blob.starts_with("s/")).unwrap();
    store.index().forget_blob(&owed, &blob.blob).await.unwrap();
    std::fs::remove_file(f.root.join(&owed).join(&blob.blob)).unwrap();
    fault(&store, &liar, Faults { corrupt: true, ..Default::default() });
    fault(&store, &slow, Faults { latency: Duration::from_millis(400), ..Default::default() });

    let mut out = Vec::new();
    let report = bounded(store.get("x", None, &mut out, &NoProgress)).await.unwrap();
    assert_eq!(out, d);
    assert!(report.requests >= 4, "shard 0 was not asked for: {report:?}");
    assert!(report.faults.iter().any(|f| f.provider == liar), "{report:?}");
    assert!(report.faults.iter().all(|f| f.provider != owed), "the owed shard was blamed on its provider: {report:?}");
}

/// A holder whose reads lag far behind the others' is asked after them: once its latency is
/// known, reads decode from the others instead of waiting for it, and no hedge is needed.
/// Once it recovers, the reads that also ask it now and then see so, and it is asked first
/// again (its data shard spares the decode).
#[tokio::test]
async fn a_lagging_holder_is_asked_last_and_first_again_once_it_recovers() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(SEG as usize / 2, 7);
    put(&store, "x", &d).await.unwrap();
    let slow = holder_of_shard(&store, "x", 0).await; // a data shard: asked first while healthy
    let read = || async {
        let mut out = Vec::new();
        let report = bounded(store.get("x", None, &mut out, &NoProgress)).await.unwrap();
        assert_eq!(out, d);
        report
    };
    assert_eq!(read().await.degraded_segments, 0, "a healthy read decodes nothing");

    fault(&store, &slow, Faults { latency: Duration::from_millis(100), ..Default::default() });
    for _ in 0..3 {
        read().await; // its latency becomes known
    }
    for _ in 0..10 {
        let report = read().await;
        assert_eq!((report.degraded_segments, report.hedged), (1, 0), "the lagging holder was waited for: {report:?}");
    }

    fault(&store, &slow, Faults::default());
    let mut reads = 0;
    while read().await.degraded_segments == 1 {
        reads += 1;
        assert!(reads < 5000, "the recovered holder was never asked first again");
    }
}
