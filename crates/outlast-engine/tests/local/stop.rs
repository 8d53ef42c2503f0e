//! Every long job stops at a clean point when asked (what it did stands, nothing is half
//! done, running it again finishes the work), and shows its live status while it runs.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::*;
use outlast_engine::progress::Progress;
use outlast_engine::{GcOptions, LiveStatus, Phase, RepairOptions, ScrubOptions};

/// Asks the job to stop once it has reported `after` units of work, and keeps the status the
/// job showed.
struct StopAfter {
    after: u64,
    done: AtomicU64,
    status: Mutex<Option<LiveStatus>>,
}

impl StopAfter {
    fn new(after: u64) -> Self {
        StopAfter { after, done: AtomicU64::new(0), status: Mutex::new(None) }
    }

    fn status(&self) -> outlast_engine::JobStatus {
        self.status.lock().unwrap().as_ref().expect("the job showed its status").snapshot()
    }
}

impl Progress for StopAfter {
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn stop_requested(&self) -> bool {
        self.done.load(Ordering::Relaxed) >= self.after
    }
    fn watch(&self, status: LiveStatus) {
        *self.status.lock().unwrap() = Some(status);
    }
}

async fn filled(f: &Fixture, objects: u8) -> Vec<(String, Vec<u8>)> {
    let store = f.store().await;
    let mut all = Vec::new();
    for i in 0..objects {
        let d = data(30_000 + i as usize, i);
        put(&store, &format!("o{i:02}"), &d).await.unwrap();
        all.push((format!("o{i:02}"), d));
    }
    all
}

#[tokio::test]
async fn a_drill_asked_to_stop_reads_no_further_and_says_how_far_it_got() {
    let f = Fixture::new(2, 4);
    filled(&f, 6).await;
    let store = f.store().await;
    let asked = StopAfter::new(1);
    let r = store.drill(&["p0".to_string()], &asked).await.unwrap();
    assert!(r.stopped && r.objects >= 1 && r.objects < 6, "{r:?}");
    assert!(r.lost.is_empty(), "{r:?}");
    let status = asked.status();
    assert_eq!((status.job, status.phase), ("drill", Phase::Done));
    let whole = store.drill(&["p0".to_string()], &StopAfter::new(u64::MAX)).await.unwrap();
    assert!(!whole.stopped && whole.objects == 6 && whole.readable == 6, "{whole:?}");
}

#[tokio::test]
async fn a_scrub_asked_to_stop_checks_nothing_more_and_a_new_one_checks_it_all() {
    let f = Fixture::new(2, 4);
    filled(&f, 6).await;
    let store = f.store().await;
    // Asked once a few checks are made, inside the first (and only) page of objects: the reads
    // under way finish and no other starts.
    let r = store.scrub(&ScrubOptions::default(), &StopAfter::new(3)).await.unwrap();
    let checks =
        |r: &outlast_engine::ScrubReport| -> u64 { r.providers.iter().map(|p| p.shards_checked + p.manifests_checked).sum() };
    assert!(r.stopped && !r.found_damage(), "{r:?}");
    assert!((3..48).contains(&checks(&r)), "{} checks of 48: {r:?}", checks(&r));
    let asked = StopAfter::new(u64::MAX);
    let whole = store.scrub(&ScrubOptions::default(), &asked).await.unwrap();
    assert!(!whole.stopped && whole.objects == 6 && !whole.found_damage(), "{whole:?}");
    assert_eq!(checks(&whole), 48, "each object's 4 shards and 4 manifest copies: {whole:?}");
    let status = asked.status();
    assert_eq!((status.job, status.phase, status.unit.as_str()), ("scrub", Phase::Done, "checks"));
    assert_eq!(Some(status.done), status.total, "every check counted");
}

#[tokio::test]
async fn gc_asked_to_stop_deletes_no_further_and_the_next_gc_finishes() {
    let f = Fixture::new(2, 4);
    let objects = filled(&f, 4).await;
    let store = f.store().await;
    // Garbage gc may delete: blobs of a write the index never heard of, old enough.
    let stray: Vec<_> = (0..6u32).map(|i| f.provider_dir(1).join(format!("s/{:032x}", 0xabc0 + i))).collect();
    for s in &stray {
        std::fs::write(s, b"left by a crashed write").unwrap();
    }
    backdate(&f.root, 24 * 3600);
    let opts = GcOptions { grace: std::time::Duration::ZERO, dry_run: false };
    let asked = StopAfter::new(1);
    let r = store.gc(&opts, &asked).await.unwrap();
    assert!(r.stopped, "{r:?}");
    assert!(r.deleted <= 1, "it went on after the stop: {r:?}");
    assert_eq!(asked.status().phase, Phase::Done);
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
    let whole = store.gc(&opts, &StopAfter::new(u64::MAX)).await.unwrap();
    assert!(!whole.stopped, "{whole:?}");
    assert_eq!(r.deleted + whole.deleted, stray.len() as u64, "{r:?} {whole:?}");
    assert!(stray.iter().all(|s| !s.exists()));
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
}

#[tokio::test]
async fn a_recovery_asked_to_stop_while_reading_takes_in_nothing_and_a_rerun_takes_in_all() {
    let f = Fixture::new(2, 4);
    let objects = filled(&f, 5).await;
    std::fs::remove_dir_all(f.root.join(".outlast")).unwrap();
    let store = f.store().await;
    let r = store.recover(&StopAfter::new(1)).await.unwrap();
    assert!(r.stopped && r.added == 0, "{r:?}");
    assert!(store.list("").await.unwrap().is_empty(), "a partial view was taken in");
    let whole = store.recover(&StopAfter::new(u64::MAX)).await.unwrap();
    assert!(!whole.stopped && whole.added == 5, "{whole:?}");
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
}

#[tokio::test]
async fn a_repair_shows_its_phase_work_and_errors_by_provider_while_it_runs() {
    let f = Fixture::new(2, 4);
    {
        let store = f.store_with(&[0]).await;
        for i in 0..3u8 {
            put(&store, &format!("o{i}"), &data(20_000, i)).await.unwrap();
        }
    }
    let store = f.store().await;
    store.provider_named("p0").unwrap().set_faults(outlast_provider::Faults { deny: true, ..Default::default() });
    let asked = StopAfter::new(u64::MAX);
    let r = store.repair(&RepairOptions::default(), &asked).await.unwrap();
    assert_eq!(r.remaining, 3, "{r:?}");
    let status = asked.status();
    assert_eq!((status.job, status.phase), ("repair", Phase::Done));
    assert_eq!(status.errors_by_provider.get("p0").copied(), Some(r.errors.len() as u64), "{status:?} {r:?}");
    assert!(r.errors.iter().all(|e| e.provider.as_deref() == Some("p0")), "{r:?}");
}

#[tokio::test]
async fn an_evacuation_asked_to_stop_while_counting_moves_nothing_and_says_what_remains() {
    let mut f = Fixture::new(2, 4);
    let objects = filled(&f, 5).await;
    // An empty fifth provider to move to, added once the objects are placed.
    f.spare = 1;
    f.mark(4);
    let store = f.store().await;
    let r = store.evacuate("p0", "p4", &StopAfter::new(0)).await.unwrap();
    assert!(r.stopped && r.objects_moved == 0, "{r:?}");
    assert_eq!(r.objects, 0, "the count went on after the stop: {r:?}");
    let placed = store.objects_placed_on("p0").await.unwrap() as u64;
    assert!(placed > 0 && r.remaining == placed, "{r:?}");
    let whole = store.evacuate("p0", "p4", &StopAfter::new(u64::MAX)).await.unwrap();
    assert!(!whole.stopped && whole.remaining == 0 && whole.objects_moved == placed, "{whole:?}");
    for (name, d) in &objects {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }
}
