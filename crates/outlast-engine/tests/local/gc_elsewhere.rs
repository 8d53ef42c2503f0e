//! gc run from a second state folder (a copied config and key, another machine) while a long
//! put is in progress in the first: it must never take the put's early parts, and the put must
//! never acknowledge a version whose early parts are gone.

use crate::common;

use std::time::Duration;

use common::*;
use outlast_engine::{Config, EngineError, LeaseTiming, Store};
use tokio::io::AsyncWriteExt;

/// The same store opened from another state folder, as a copy of the config would be.
async fn second_folder(f: &Fixture) -> Store {
    let text = format!("state_dir = \"second-folder\"\n{}", f.config_text(&[]));
    Store::open_with_key(Config::parse(&text, &f.root.join("outlast.toml")).unwrap(), f.key.clone()).await.unwrap()
}

fn shard_files(f: &Fixture, i: u16) -> usize {
    std::fs::read_dir(f.provider_dir(i).join("s")).map(|d| d.count()).unwrap_or(0)
}

/// Puts `body` as `big` through a pipe, pausing after its first two parts: then backdates its
/// closed parts 20 minutes (a put that has run that long) and runs gc from the second folder.
async fn slow_put_with_gc_elsewhere(
    f: &Fixture,
    writer: &Store,
    body: &[u8],
) -> (Result<outlast_engine::PutReport, EngineError>, outlast_engine::GcReport) {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let other = second_folder(f).await;
    let part = 3 * SEG as usize; // segments_per_part = 3
    let driver = async {
        tx.write_all(&body[..2 * part + 1]).await.unwrap();
        // Part 0 is closed (renamed into place) once part 1 is under way.
        let start = std::time::Instant::now();
        while (0..f.n).any(|i| shard_files(f, i) == 0) {
            assert!(start.elapsed() < Duration::from_secs(20), "the put never closed its first part");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // a lease renewal or two
                                                              // The closed parts look as old as a put that has run 20 minutes (what it is writing
                                                              // now, its temporary files and its lease, are fresh).
        for i in 0..f.n {
            backdate(&f.provider_dir(i).join("s"), 20 * 60);
        }
        let r = gc(&other, 0).await;
        let _ = tx.write_all(&body[2 * part + 1..]).await; // the put may have failed meanwhile
        drop(tx);
        r
    };
    let (put, gc) = tokio::join!(writer.put("big", rx, Default::default(), &outlast_engine::progress::NoProgress), driver);
    (put, gc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_put_keeps_a_lease_that_gc_elsewhere_honours() {
    let f = Fixture::new(2, 3);
    let mut writer = f.store().await;
    writer.set_lease_timing(LeaseTiming {
        after: Duration::from_millis(10),
        renew: Duration::from_millis(100),
        ..Default::default()
    });
    let body = data(10 * 3 * SEG as usize, 1);
    let (put, gc) = slow_put_with_gc_elsewhere(&f, &writer, &body).await;
    assert_eq!((gc.deleted, gc.leases), (0, 3), "{gc:?}"); // one lease copy per provider
    let r = put.unwrap();
    assert!(r.missing.is_empty(), "{r:?}");
    assert_eq!(get(&writer, "big").await.unwrap(), body);
    // The lease is gone with the put.
    assert!((0..f.n).all(|i| std::fs::read_dir(f.provider_dir(i).join("l")).map_or(true, |d| d.count() <= 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_early_parts_vanished_is_never_acknowledged() {
    let f = Fixture::new(2, 3);
    // No lease (a put too short to take one, by its timing): gc elsewhere sees blobs older than
    // its floor that it knows nothing of, and deletes them.
    let mut writer = f.store().await;
    writer.set_lease_timing(LeaseTiming { after: Duration::from_secs(3600), ..Default::default() });
    let body = data(10 * 3 * SEG as usize, 2);
    let (put, gc) = slow_put_with_gc_elsewhere(&f, &writer, &body).await;
    assert!(gc.deleted >= 3, "{gc:?}");
    // The put looks at its early parts before committing: gone, so nothing is acknowledged.
    let err = put.unwrap_err();
    assert!(matches!(err, EngineError::Quorum { ok: 0, .. }), "{err}");
    assert!(err.to_string().contains("no longer holds part 0"), "{err}");
    assert!(matches!(get(&writer, "big").await, Err(EngineError::NotFound(_))));
}

#[tokio::test]
async fn a_lease_protects_by_the_providers_clock_and_a_long_dead_one_is_removed() {
    use outlast_codec::{names, VersionId, WriteLease};
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let keys = f.key.store_keys();
    // A write elsewhere: part 0 of shard 1 on p1, older than gc's floor, and its lease on p0.
    let vid = VersionId::generate();
    let shard = f.provider_dir(1).join(names::shard_blob(&keys, &vid, 1, 0));
    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
    std::fs::write(&shard, b"part 0").unwrap();
    backdate(&f.provider_dir(1).join("s"), 20 * 60);
    let lease_name = names::lease_blob(&keys, &vid);
    let lease = f.provider_dir(0).join(&lease_name);
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    std::fs::write(&lease, WriteLease { vid, n: 3, parts: 1 }.seal(&keys, &lease_name)).unwrap();
    let r = gc(&store, 0).await;
    assert_eq!((r.deleted, r.leases), (0, 1), "{r:?}");
    assert!(shard.exists(), "a fresh lease did not protect its write");
    // The writer died 30 minutes ago: the lease is stale by the provider's clock, and after
    // its time plus the floor it goes too, with the blob it protected.
    backdate(&f.provider_dir(0).join("l"), 30 * 60);
    let r = gc(&store, 0).await;
    assert!(!shard.exists() && !lease.exists(), "{r:?}");
    assert!(r.deletions.iter().any(|d| d.why == outlast_engine::GcReason::DeadLease), "{r:?}");
}

/// Puts `body` as `name` through a pipe that stalls for `stall` half-way, running gc from the
/// writer's own folder during the stall.
async fn stalled_put_with_gc_here(
    writer: &Store,
    name: &str,
    body: &[u8],
    stall: Duration,
) -> (Result<outlast_engine::PutReport, EngineError>, outlast_engine::GcReport) {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let driver = async {
        tx.write_all(&body[..body.len() / 2]).await.unwrap();
        tokio::time::sleep(stall).await;
        let r = gc(writer, 0).await;
        let _ = tx.write_all(&body[body.len() / 2..]).await;
        drop(tx);
        r
    };
    tokio::join!(writer.put(name, rx, Default::default(), &outlast_engine::progress::NoProgress), driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_renews_its_intent_and_one_that_stopped_renewing_can_no_longer_commit() {
    let f = Fixture::new(2, 3);
    let mut writer = f.store().await;
    let body = data(4 * 3 * SEG as usize, 4);
    // Its process lives throughout: only the intent's expiry tells gc whether it is alive.
    let ttl = Duration::from_millis(300);
    writer.set_lease_timing(LeaseTiming { after: Duration::from_secs(3600), renew: Duration::from_millis(50), ttl });
    let (put, r) = stalled_put_with_gc_here(&writer, "renewed", &body, 3 * ttl).await;
    assert_eq!(r.crashed_writes, 0, "{r:?}");
    put.unwrap();
    assert_eq!(get(&writer, "renewed").await.unwrap(), body);
    // A holder that stops renewing (a stopped process, a machine asleep) loses its intent at
    // the expiry: gc removes what it wrote, and the put is refused rather than acknowledged.
    writer.set_lease_timing(LeaseTiming { after: Duration::from_secs(3600), renew: Duration::from_secs(3600), ttl });
    let (put, r) = stalled_put_with_gc_here(&writer, "stalled", &body, 3 * ttl).await;
    assert_eq!(r.crashed_writes, 1, "{r:?}");
    let err = put.unwrap_err();
    assert!(matches!(err, EngineError::State(_)), "{err}");
    assert!(matches!(writer.stat("stalled").await, Err(EngineError::NotFound(_))));
    assert!(writer.index().pending().await.unwrap().is_empty());
    assert_eq!(get(&writer, "renewed").await.unwrap(), body);
}

#[tokio::test]
async fn gc_deletes_nothing_unreferenced_while_a_version_it_cannot_see_may_name_it() {
    use outlast_provider::Faults;
    let f = Fixture::new(2, 3);
    // Written from another folder: this folder's index knows nothing of it.
    let d = data(100_000, 9);
    put(&second_folder(&f).await, "only-there", &d).await.unwrap();
    // Its manifest survives on p0 alone (the other copies were lost), and time has passed.
    for i in 1..3 {
        std::fs::remove_dir_all(f.provider_dir(i).join("m")).unwrap();
    }
    for i in 0..3 {
        backdate(&f.provider_dir(i), 20 * 60);
    }
    let here = f.store().await;
    let p0 = here.provider_named("p0").unwrap();
    p0.verify_identity().await.unwrap();
    let shards = || (0..3).map(|i| shard_files(&f, i)).sum::<usize>();
    let before = shards();
    // p0 lists, but what it returns of the manifest is corrupt: what it names is unknown.
    p0.set_faults(Faults { corrupt: true, ..Default::default() });
    let r = gc(&here, 0).await;
    assert_eq!((r.deleted, r.kept_unsure), (0, before as u64), "{r:?}");
    assert!(r.errors.iter().any(|e| e.to_string().contains("could not be read or opened")), "{r:?}");
    // p0 cannot be listed at all.
    p0.set_faults(Faults { deny: true, ..Default::default() });
    let r = gc(&here, 0).await;
    assert_eq!(r.deleted, 0, "{r:?}");
    assert!(r.errors.iter().any(|e| e.to_string().contains("`p0` could not be listed")), "{r:?}");
    // Honest again: the version is seen, and kept as one the index does not know.
    p0.set_faults(Faults::default());
    let r = gc(&here, 0).await;
    assert_eq!((r.deleted, r.unknown_versions), (0, 1), "{r:?}");
    assert_eq!(shards(), before);
    here.recover(&outlast_engine::progress::NoProgress).await.unwrap();
    assert_eq!(get(&here, "only-there").await.unwrap(), d);
}
