//! Provider health on local folders: a provider whose data vanished is seen as terminated,
//! said so, remembered across runs, and read around; shards a put could not write are not
//! asked for again.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_provider::HealthState;

fn state_of(store: &outlast_engine::Store, name: &str) -> HealthState {
    store.health().into_iter().find(|h| h.name == name).unwrap().state
}

#[tokio::test]
async fn a_provider_whose_blobs_vanished_is_terminated_remembered_and_read_around() {
    let f = Fixture::new(2, 4);
    let objects: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("o{i}"), data(150_000, i))).collect();
    {
        let store = f.store().await;
        for (name, d) in &objects {
            put(&store, name, d).await.unwrap();
        }
        assert!(store.health().iter().all(|h| h.state == HealthState::Healthy));
    }
    // The account ends: everything it held is gone (a deleted bucket, an emptied folder).
    std::fs::remove_dir_all(f.provider_dir(1)).unwrap();
    std::fs::create_dir(f.provider_dir(1)).unwrap();

    let store = f.store().await;
    let reports = store.providers().await.unwrap();
    let p1 = reports.iter().find(|r| r.name == "p1").unwrap();
    assert_eq!(p1.state, HealthState::Terminated, "{p1:?}");
    assert!(!p1.reachable && p1.reason.contains("gone"), "{p1:?}");
    assert!(reports.iter().filter(|r| r.name != "p1").all(|r| r.state == HealthState::Healthy), "{reports:?}");
    assert_eq!(store.terminated_providers().iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["p1"]);

    // Reads carry on from the others, and no longer ask the terminated provider first.
    for (name, d) in &objects {
        let mut out = Vec::new();
        let report = store.get(name, None, &mut out, &NoProgress).await.unwrap();
        assert_eq!(&out, d);
        assert!(report.faults.is_empty(), "{name}: the terminated provider was still asked: {:?}", report.faults);
    }
    drop(store);

    // The next run remembers, without touching the provider.
    let store = f.store().await;
    assert_eq!(state_of(&store, "p1"), HealthState::Terminated);
    assert!(store.terminated_providers().is_empty(), "this run has not used p1 yet");
}

#[tokio::test]
async fn a_few_lost_blobs_are_damage_not_a_terminated_account() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(3 * SEG as usize + SEG as usize / 2, 7); // two parts: 3 segments and 1 (larger than "y")
    put(&store, "x", &d).await.unwrap();
    put(&store, "y", &data(1000, 8)).await.unwrap();
    // Lose a data shard of "x" (both its part blobs; the first is read in two runs of two
    // segments). Each lost blob counts once: it becomes repair debt and is not asked for again.
    let placement = store.stat("x").await.unwrap().placement;
    let holder = &placement[0];
    let dir = f.root.join(holder);
    let mut blobs: Vec<_> =
        f.blob_files().into_iter().filter(|p| p.starts_with(&dir) && p.to_string_lossy().contains("/s/")).collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    for lost in &blobs[blobs.len() - 2..] {
        std::fs::remove_file(lost).unwrap();
    }
    let mut faults = Vec::new();
    for name in ["x", "y", "x", "x"] {
        let mut out = Vec::new();
        faults.push(store.get(name, None, &mut out, &NoProgress).await.unwrap().faults.len());
    }
    assert_eq!(faults, [4, 0, 0, 0], "the lost blobs were asked for again");
    assert_eq!(state_of(&store, holder), HealthState::Healthy, "{:?}", store.health());
}

#[tokio::test]
async fn shards_a_put_could_not_write_are_not_asked_for_on_reads() {
    let f = Fixture::new(2, 4);
    let d = data(2 * SEG as usize, 3);
    {
        let store = f.store_with(&[0]).await; // p0 cannot be built: the put stores 3 of 4 shards
        let r = put(&store, "x", &d).await.unwrap();
        assert_eq!(r.missing, ["p0"]);
    }
    // p0 is back, but holds nothing of "x": the read uses the recorded shards only.
    let store = f.store().await;
    let mut out = Vec::new();
    let report = store.get("x", None, &mut out, &NoProgress).await.unwrap();
    assert_eq!(out, d);
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    let p0_shard = store.stat("x").await.unwrap().placement.iter().position(|p| p == "p0").unwrap();
    let expected = if p0_shard < 2 { 2 } else { 0 };
    assert_eq!(report.degraded_segments, expected, "p0 holds shard {p0_shard}; only a missing data shard needs parity");
    assert_eq!(state_of(&store, "p0"), HealthState::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_overwrites_do_not_blame_the_providers() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(12 * SEG as usize, 1); // 4 parts: a read takes a while
    put(&store, "x", &d).await.unwrap();
    let reads = async {
        for _ in 0..20 {
            // May fail midway: the version it reads is replaced and its blobs deleted.
            let _ = get(&store, "x").await;
        }
    };
    let writes = async {
        for i in 0..20u8 {
            put(&store, "x", &data(12 * SEG as usize, i)).await.unwrap();
        }
    };
    tokio::join!(reads, writes);
    // (Under this load a provider may look slow for a moment; what matters is that no
    // deleted blob of a replaced version was counted against it.)
    for h in store.health() {
        assert_ne!(h.state, HealthState::Terminated, "{h:?}");
        assert_eq!(h.stats.gone, 0, "{h:?}");
    }
}
