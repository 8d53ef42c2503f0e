//! Evacuation on local folders: from a provider that still answers (copied once, egress 1.00x)
//! and from one that is gone (rebuilt), verified, with reads and writes going on.

use crate::common;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::Store;
use outlast_provider::Faults;

fn shard_blobs(f: &Fixture, i: u16) -> usize {
    f.blob_files().into_iter().filter(|p| p.starts_with(f.provider_dir(i)) && p.to_string_lossy().contains("/s/")).count()
}

async fn fill(store: &Store) -> Vec<(String, Vec<u8>)> {
    let objects: Vec<(String, Vec<u8>)> =
        (0..3u8).map(|i| (format!("o{i}"), data(4 * SEG as usize * (i as usize + 1) + 17, i))).collect();
    for (name, d) in &objects {
        put(store, name, d).await.unwrap();
    }
    objects
}

#[tokio::test]
async fn evacuating_a_live_provider_copies_each_blob_once_and_moves_placement() {
    let f = Fixture::new(2, 4).with_spare(1);
    let objects = {
        let store = f.store_with(&[4]).await; // the spare p4 is out of reach while writing: p0..p3 hold everything
        fill(&store).await
    };
    let store = f.store().await;
    let held = shard_blobs(&f, 1);
    assert!(held > 0);

    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects, r.objects_moved, r.blobs_rebuilt, r.remaining), (3, 3, 0, 0), "{r:?}");
    assert_eq!(r.blobs_copied as usize, held);
    assert_eq!(r.egress_ratio, Some(1.0), "{r:?}");
    assert_eq!(r.verified, r.blobs_copied, "{r:?}");
    assert_eq!(shard_blobs(&f, 1), 0, "p1 still holds shard blobs");
    assert_eq!(shard_blobs(&f, 4), held);
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d);
        assert!(store.stat(name).await.unwrap().placement.contains(&"p4".to_string()));
    }
    // New writes avoid the provider being emptied.
    for i in 0..6 {
        put(&store, &format!("new{i}"), &data(1000, i)).await.unwrap();
        assert!(!store.stat(&format!("new{i}")).await.unwrap().placement.contains(&"p1".to_string()));
    }
    // p4 now holds a shard of every object: it cannot take p0's too (one provider, one shard).
    let blocked = store.evacuate("p0", "p4", &NoProgress).await.unwrap();
    assert_eq!((blocked.objects_moved, blocked.remaining), (0, blocked.objects), "{blocked:?}");
    assert!(blocked.errors.iter().all(|e| e.to_string().contains("already holds")), "{blocked:?}");
    // Running it again finds nothing on p1; p1 can go: everything reads without it and one more.
    assert_eq!(store.evacuate("p1", "p4", &NoProgress).await.unwrap().objects, 0);
    drop(store);
    std::fs::remove_dir_all(f.provider_dir(1)).unwrap();
    std::fs::remove_dir_all(f.provider_dir(2)).unwrap();
    let store = f.store().await;
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
}

#[tokio::test]
async fn evacuating_a_vanished_provider_rebuilds_its_shards_from_the_others() {
    // 2-of-3 plus a spare: every object has a shard on each of p0..p2, none on p3.
    let f = Fixture::new(2, 3).with_spare(1);
    let objects = {
        let store = f.store_with(&[3]).await; // p3 unusable while writing: placement uses p0..p2
        fill(&store).await
    };
    std::fs::remove_dir_all(f.provider_dir(2)).unwrap();
    let store = f.store().await;
    let r = store.evacuate("p2", "p3", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.blobs_copied, r.remaining), (3, 0, 0), "{r:?}");
    assert!(r.blobs_rebuilt > 0 && r.verified == r.blobs_rebuilt, "{r:?}");
    assert_eq!(r.bytes_read_from_source, 0);
    drop(store);
    // p3 now carries what p2 held: read with p0 gone too.
    std::fs::remove_dir_all(f.provider_dir(0)).unwrap();
    let store = f.store().await;
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
        assert!(store.stat(name).await.unwrap().placement.contains(&"p3".to_string()));
    }
}

#[tokio::test]
async fn a_holder_that_missed_the_rewritten_manifest_gets_it_from_the_next_repair() {
    let f = Fixture::new(2, 4).with_spare(1);
    let objects = {
        let store = f.store_with(&[4]).await;
        fill(&store).await
    };
    let store = f.store().await;
    // p2 refuses every write while p1's shards move to p4: the new manifest reaches the
    // quorum, not p2, which keeps the old revision.
    store.provider_named("p2").unwrap().set_faults(Faults { error_rate: 1.0, ..Default::default() });
    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.remaining), (3, 0), "{r:?}");
    store.provider_named("p2").unwrap().set_faults(Faults::default());
    let stale_on_p2 = async |name: &str| {
        let e = store.index().get(name).await.unwrap().unwrap();
        let copy = std::fs::read(f.provider_dir(2).join(manifest_blob(&store, name).await)).unwrap();
        copy != e.sealed_manifest
    };
    for (name, _) in &objects {
        assert!(stale_on_p2(name).await, "{name}: p2 was expected to keep the old revision");
        let rows = store.index().blobs_on("p2").await.unwrap();
        let blob = manifest_blob(&store, name).await;
        assert!(!rows.iter().any(|b| b.blob == blob), "{name}: the stale copy is still recorded");
    }
    let rep = store.repair(&outlast_engine::RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((rep.manifests_written, rep.blobs_rebuilt, rep.remaining), (3, 0, 0), "{rep:?}");
    for (name, d) in &objects {
        assert!(!stale_on_p2(name).await, "{name}: repair left the old revision on p2");
        assert_eq!(&get(&store, name).await.unwrap(), d);
    }
}

#[tokio::test]
async fn a_holder_that_hangs_costs_its_operation_deadline_not_the_evacuation() {
    let f = Fixture::new(2, 4).with_spare(1).with_operation_timeout(0.3);
    let objects = {
        let store = f.store_with(&[4]).await;
        fill(&store).await
    };
    let store = f.store().await;
    // p2 holds a shard of every object and never answers while p1's shards move to p4: each
    // move gives up on p2's manifest copy after the operation deadline.
    store.provider_named("p2").unwrap().set_faults(Faults { hang: true, ..Default::default() });
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), store.evacuate("p1", "p4", &NoProgress))
        .await
        .expect("the evacuation waited for the hanging holder")
        .unwrap();
    assert_eq!((r.objects_moved, r.remaining), (3, 0), "{r:?}");
    assert_eq!(
        r.errors.iter().filter(|e| e.to_string().contains("`p2`") && e.to_string().contains("no answer within")).count(),
        3,
        "{r:?}"
    );
    for (name, _) in &objects {
        let rows = store.index().blobs_on("p2").await.unwrap();
        let blob = manifest_blob(&store, name).await;
        assert!(!rows.iter().any(|b| b.blob == blob), "{name}: p2's copy is recorded though never written");
    }
    store.provider_named("p2").unwrap().set_faults(Faults::default());
    let rep = store.repair(&outlast_engine::RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((rep.manifests_written, rep.remaining), (3, 0), "{rep:?}");
    let scrub = store.scrub(&outlast_engine::ScrubOptions::default(), &NoProgress).await.unwrap();
    assert!(!scrub.found_damage(), "{scrub:?}");
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d);
    }
}

#[tokio::test]
async fn a_source_that_hangs_is_given_up_on_and_its_shards_are_rebuilt() {
    let f = Fixture::new(2, 4).with_spare(1).with_operation_timeout(0.3);
    let objects = {
        let store = f.store_with(&[4]).await;
        fill(&store).await
    };
    let store = f.store().await;
    // p1 takes requests and never answers: each read of it fails after the operation timeout,
    // three such failures stop the run asking it, and the rest is rebuilt from the others.
    store.provider_named("p1").unwrap().set_faults(Faults { hang: true, ..Default::default() });
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), store.evacuate("p1", "p4", &NoProgress))
        .await
        .expect("the evacuation waited for the hanging source")
        .unwrap();
    assert_eq!((r.objects_moved, r.remaining, r.blobs_copied), (3, 0, 0), "{r:?}");
    assert!(r.blobs_rebuilt > 0 && r.verified == r.blobs_rebuilt, "{r:?}");
    assert!(r.errors.iter().any(|e| e.to_string().contains("rebuilding from the others")), "{r:?}");
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d);
        assert!(store.stat(name).await.unwrap().placement.contains(&"p4".to_string()));
    }
}

/// The manifest blob's name of `name`'s current version, from the index.
async fn manifest_blob(store: &Store, name: &str) -> String {
    let vid = store.index().get(name).await.unwrap().unwrap().stamp.vid;
    let rows = store.index().blobs_of(&vid).await.unwrap();
    rows.into_iter().find(|b| b.blob.starts_with("m/")).expect("some holder records the manifest").blob
}

#[tokio::test]
async fn a_move_that_cannot_switch_leaves_no_copy_of_its_manifest_recorded() {
    let f = Fixture::new(2, 4).with_spare(1).with_write_quorum(3);
    let objects = {
        let store = f.store_with(&[4]).await;
        fill(&store).await
    };
    let store = f.store().await;
    // p2 and p3 refuse writes: the rewritten manifest reaches p0 and p4 only, below the write
    // quorum of 3, so nothing switches; p0 now holds a revision the index does not.
    for p in ["p2", "p3"] {
        store.provider_named(p).unwrap().set_faults(Faults { error_rate: 1.0, ..Default::default() });
    }
    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.remaining), (0, 3), "{r:?}");
    for p in ["p2", "p3"] {
        store.provider_named(p).unwrap().set_faults(Faults::default());
    }
    for (name, d) in &objects {
        assert!(store.stat(name).await.unwrap().placement.contains(&"p1".to_string()));
        assert_eq!(&get(&store, name).await.unwrap(), d);
    }
    // p0's copies are debt, not recorded as current: repair puts the current ones back, and a
    // scrub then finds every copy as the index has it.
    let rep = store.repair(&outlast_engine::RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((rep.manifests_written, rep.remaining), (3, 0), "{rep:?}");
    let scrub = store.scrub(&outlast_engine::ScrubOptions::default(), &NoProgress).await.unwrap();
    assert!(!scrub.found_damage(), "{scrub:?}");
    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.remaining, r.blobs_copied), (3, 0, 0), "{r:?}");
}

/// Repair and evacuation running at once on the same objects (as two processes could): each
/// records only what the current manifest says, so right afterwards every recorded blob is
/// there and current (a scrub finds no damage), and everything reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_evacuation_at_once_leave_every_recorded_copy_current() {
    let f = Fixture::new(2, 4).with_spare(2);
    let objects: Vec<(String, Vec<u8>)> = (0..8u8).map(|i| (format!("o{i}"), data(3000 + i as usize * 977, i))).collect();
    {
        let store = f.store_with(&[4, 5]).await; // p4 and p5 are spares
        for (name, d) in &objects {
            put(&store, name, d).await.unwrap();
        }
    }
    let store = std::sync::Arc::new(f.store().await);
    for (from, to) in [("p1", "p4"), ("p2", "p5")] {
        // p0 loses everything: repair's listing finds it (shards and manifest copies to
        // rebuild) while the evacuation rewrites the same manifests.
        std::fs::remove_dir_all(f.provider_dir(0)).unwrap();
        store.reset_provider("p0").await.unwrap(); // taken back on purpose, as a user would
        let s = store.clone();
        let repair = tokio::spawn(async move { s.repair(&outlast_engine::RepairOptions::default(), &NoProgress).await });
        let s = store.clone();
        let (from_, to_) = (from.to_string(), to.to_string());
        let evacuate = tokio::spawn(async move { s.evacuate(&from_, &to_, &NoProgress).await });
        let (rep, evac) = (repair.await.unwrap().unwrap(), evacuate.await.unwrap().unwrap());
        assert!(rep.errors.iter().chain(&evac.errors).all(|e| e.to_string().contains("run")), "{rep:?} {evac:?}");
        let scrub = store.scrub(&outlast_engine::ScrubOptions::default(), &NoProgress).await.unwrap();
        assert!(!scrub.found_damage(), "right after moving {from} to {to} during a repair: {scrub:?}");
        // What raced is settled by running both again.
        assert_eq!(store.evacuate(from, to, &NoProgress).await.unwrap().remaining, 0);
        let rep = store.repair(&outlast_engine::RepairOptions::default(), &NoProgress).await.unwrap();
        assert_eq!(rep.remaining, 0, "{rep:?}");
        for (name, d) in &objects {
            assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
        }
    }
}

#[tokio::test]
async fn an_evacuation_whose_target_keeps_refusing_stops_asking_it() {
    let f = Fixture::new(2, 4).with_spare(1);
    let objects = {
        let store = f.store_with(&[4]).await;
        let mut all = fill(&store).await;
        // More objects than are moved at once, so that the breaker has something to save.
        for i in 3..30u8 {
            let d = data(1000 + i as usize, i);
            put(&store, &format!("o{i}"), &d).await.unwrap();
            all.push((format!("o{i}"), d));
        }
        all
    };
    let store = f.store().await;
    let target = store.provider_named("p4").unwrap();
    target.set_faults(Faults { deny: true, ..Default::default() });
    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.remaining), (0, objects.len() as u64), "{r:?}");
    assert_eq!(r.errors.iter().filter(|e| e.to_string().contains("left alone")).count(), 1, "{r:?}");
    // Objects already under way when it gave up may have asked once more each, no more.
    assert!(target.health().denied < objects.len() as u64, "asked {} times", target.health().denied);
    // Nothing moved, everything reads; once it takes writes, the next run moves everything.
    target.set_faults(Faults::default());
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d);
    }
    let r = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.remaining), (objects.len() as u64, 0), "{r:?}");
}

#[tokio::test]
async fn an_evacuation_the_store_cannot_do_is_refused_by_kind_before_anything_moves() {
    let f = Fixture::new(2, 3).with_spare(1);
    let store = f.store().await;
    fill(&store).await;
    let before = f.blob_files();
    let err = store.evacuate("p0", "p0", &NoProgress).await.unwrap_err();
    assert!(matches!(&err, outlast_engine::EngineError::EvacuateOntoItself(p) if p == "p0"), "{err}");
    let err = store.evacuate("ghost", "p3", &NoProgress).await.unwrap_err();
    assert!(matches!(&err, outlast_engine::EngineError::UnknownProvider(p) if p == "ghost"), "{err}");
    let err = store.evacuate("p0", "ghost", &NoProgress).await.unwrap_err();
    assert!(matches!(&err, outlast_engine::EngineError::UnknownProvider(p) if p == "ghost"), "{err}");
    assert_eq!(f.blob_files(), before);
}
