//! Scrub on local folders: missing and silently corrupted shards are found, attributed to their
//! provider, turned into repair debt, and repaired.

use crate::common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{RepairOptions, ScrubOptions, Store};

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
}

fn shard_files(f: &Fixture, provider: u16) -> Vec<std::path::PathBuf> {
    let dir = f.provider_dir(provider);
    let mut v: Vec<_> =
        f.blob_files().into_iter().filter(|p| p.starts_with(&dir) && p.to_string_lossy().contains("/s/")).collect();
    v.sort();
    v
}

async fn scrub(store: &Store, sample: Option<f64>) -> outlast_engine::ScrubReport {
    store.scrub(&ScrubOptions { sample }, &NoProgress).await.unwrap()
}

#[tokio::test]
async fn scrub_finds_missing_and_corrupt_shards_and_repair_fixes_them() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(4 * SEG as usize, 2);
    put(&store, "x", &d).await.unwrap();
    put(&store, "y", &data(1000, 3)).await.unwrap();
    let clean = scrub(&store, None).await;
    assert!(!clean.found_damage(), "{clean:?}");
    assert!(clean.providers.iter().all(|p| p.shards == 5 && p.shards_checked == 5), "{clean:?}");

    // p1 silently flips a bit (same size: no listing can see it); p2 loses a blob.
    flip_byte(&shard_files(&f, 1)[0], 10);
    std::fs::remove_file(&shard_files(&f, 2)[0]).unwrap();
    let r = scrub(&store, None).await;
    assert!(r.found_damage());
    let by = |name: &str| r.providers.iter().find(|p| p.name == name).unwrap().clone();
    assert_eq!((by("p1").corrupt, by("p1").missing), (1, 0), "{r:?}");
    assert_eq!((by("p2").corrupt, by("p2").missing), (0, 1), "{r:?}");
    assert_eq!((by("p0").corrupt + by("p0").missing, by("p3").corrupt + by("p3").missing), (0, 0));

    let fixed = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((fixed.blobs_rebuilt, fixed.remaining), (2, 0), "{fixed:?}");
    assert!(!scrub(&store, None).await.found_damage());
    assert_eq!(get(&store, "x").await.unwrap(), d);
}

#[tokio::test]
async fn a_sampled_scrub_reads_a_sample_and_still_catches_one_percent_damage() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    // 5 objects of 100 segments: every provider holds 500 segment shards.
    for i in 0..5u8 {
        put(&store, &format!("o{i}"), &data(100 * SEG as usize, i)).await.unwrap();
    }
    let r = scrub(&store, Some(0.001)).await;
    assert!(r.providers.iter().all(|p| p.shards == 500 && p.shards_checked == 459), "{r:?}");
    // Corrupt 1% of p0's segment shards (5, in five different blobs).
    for path in shard_files(&f, 0).iter().take(5) {
        flip_byte(path, 3);
    }
    let r = scrub(&store, Some(0.001)).await;
    let p0 = r.providers.iter().find(|p| p.name == "p0").unwrap();
    assert!(p0.corrupt >= 1, "{p0:?}");
    assert!(r.providers.iter().filter(|p| p.name != "p0").all(|p| p.corrupt == 0));
}

#[tokio::test]
async fn scrub_catches_a_rolled_back_or_swapped_manifest_and_repair_rewrites_it() {
    let f = Fixture::new(2, 4).with_spare(1);
    {
        let store = f.store_with(&[4]).await; // p0..p3 hold everything
        put(&store, "x", &data(3000, 1)).await.unwrap();
        put(&store, "y", &data(3000, 2)).await.unwrap();
    }
    let store = f.store().await;
    let manifest_of = async |name: &str| {
        let vid = store.index().get(name).await.unwrap().unwrap().stamp.vid;
        store.index().blobs_of(&vid).await.unwrap().into_iter().find(|b| b.blob.starts_with("m/")).unwrap().blob
    };
    let (x, y) = (manifest_of("x").await, manifest_of("y").await);
    let revision_0 = std::fs::read(f.provider_dir(2).join(&x)).unwrap();
    // Moving p1's shards rewrites both manifests (revision 1) on p0, p2, p3 and p4.
    let moved = store.evacuate("p1", "p4", &NoProgress).await.unwrap();
    assert_eq!(moved.remaining, 0, "{moved:?}");
    let clean = scrub(&store, None).await;
    assert!(!clean.found_damage(), "{clean:?}");
    assert!(clean.providers.iter().filter(|p| p.name != "p1").all(|p| p.manifests_checked == 2), "{clean:?}");

    // p2 goes back to the old revision; p3 serves y's manifest under x's name.
    std::fs::write(f.provider_dir(2).join(&x), &revision_0).unwrap();
    std::fs::copy(f.provider_dir(3).join(&y), f.provider_dir(3).join(&x)).unwrap();
    let r = scrub(&store, None).await;
    assert!(r.found_damage());
    let by = |name: &str| r.providers.iter().find(|p| p.name == name).unwrap().clone();
    assert_eq!((by("p2").stale_manifests, by("p2").corrupt), (1, 0), "{r:?}");
    assert_eq!((by("p3").stale_manifests, by("p3").corrupt), (0, 1), "{r:?}");
    assert_eq!(by("p0").stale_manifests + by("p0").corrupt + by("p4").stale_manifests + by("p4").corrupt, 0, "{r:?}");
    assert_eq!(store.provider_named("p2").unwrap().health().corrupt, 1);

    let fixed = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert_eq!((fixed.manifests_written, fixed.blobs_rebuilt, fixed.remaining), (2, 0, 0), "{fixed:?}");
    assert!(!scrub(&store, None).await.found_damage());
    let current = store.index().get("x").await.unwrap().unwrap().sealed_manifest;
    for p in [2, 3] {
        assert_eq!(std::fs::read(f.provider_dir(p).join(&x)).unwrap(), current, "p{p}");
    }
}

#[tokio::test]
async fn a_provider_that_hangs_is_reported_and_costs_a_few_timeouts() {
    let f = Fixture::new(2, 4).with_operation_timeout(0.3);
    let store = f.store().await;
    for i in 0..8u8 {
        put(&store, &format!("o{i}"), &data(4 * SEG as usize, i)).await.unwrap();
    }
    // p3 takes requests and never answers: its listing and reads fail after the operation
    // timeout, and after three failed reads the scrub stops asking it.
    let hanging = store.provider_named("p3").unwrap();
    hanging.set_faults(outlast_provider::Faults { hang: true, ..Default::default() });
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), store.scrub(&ScrubOptions::default(), &NoProgress))
        .await
        .expect("scrub waited for the hanging provider")
        .unwrap();
    assert!(r.found_damage(), "{r:?}");
    let p3 = r.providers.iter().find(|p| p.name == "p3").unwrap();
    assert!(p3.error.as_deref().is_some_and(|e| e.contains("no answer within")), "{p3:?}");
    assert_eq!((p3.shards_checked, p3.missing, p3.corrupt), (0, 0, 0), "{p3:?}");
    // Reads already in flight when it failed the third time fail too; the rest are not sent.
    assert!(p3.shards > 0 && hanging.health().transient < p3.shards, "{p3:?} {:?}", hanging.health());
    for p in r.providers.iter().filter(|p| p.name != "p3") {
        assert!(p.error.is_none() && p.shards_checked == p.shards && p.shards > 0, "{p:?}");
    }
    // Nothing was dropped from the index for it: a provider that does not answer says
    // nothing about what it holds.
    hanging.set_faults(outlast_provider::Faults::default());
    let r = scrub(&store, None).await;
    assert!(!r.found_damage(), "{r:?}");
}

#[tokio::test]
async fn scrub_keeps_saying_what_is_owed_until_repair_pays_it() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    put(&store, "x", &data(100_000, 3)).await.unwrap();
    std::fs::remove_file(&shard_files(&f, 1)[0]).unwrap();
    let first = scrub(&store, None).await;
    assert!(first.found_damage() && first.owes(), "{first:?}");
    // The damage is now repair debt: a second scrub finds nothing new, but the store is not
    // healthy, and it says who owes what and what pays it.
    let second = scrub(&store, None).await;
    assert!(!second.found_damage() && second.owes(), "{second:?}");
    let owed = &second.owed;
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!((owed[0].provider.as_str(), owed[0].shards, owed[0].configured), ("p1", 1, true));
    assert_eq!(owed[0].paid_by(), "outlast repair");
    let p1 = store.providers().await.unwrap().into_iter().find(|r| r.name == "p1").unwrap();
    assert_eq!(p1.owed.as_ref().map(|o| o.shards), Some(1), "{p1:?}");
    store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    let after = scrub(&store, None).await;
    assert!(!after.owes() && !after.found_damage(), "{after:?}");
    assert!(store.providers().await.unwrap().iter().all(|r| r.owed.is_none()));
}

#[tokio::test]
async fn a_provider_renamed_in_the_config_owes_its_share() {
    let f = Fixture::new(2, 4);
    put(&f.store().await, "x", &data(100_000, 4)).await.unwrap();
    let text = f.config_text(&[]).replace("name = \"p3\"", "name = \"p3-renamed\"");
    let store = Store::open_with_key(outlast_engine::Config::parse(&text, &f.root.join("outlast.toml")).unwrap(), f.key.clone())
        .await
        .unwrap();
    let r = scrub(&store, None).await;
    assert!(r.owes(), "renaming a provider hid its shards from scrub: {r:?}");
    let p3 = r.owed.iter().find(|o| o.provider == "p3").expect("the placed provider owes");
    assert!(!p3.configured && p3.shards == 1 && p3.paid_by() == "outlast evacuate p3 --to NEW", "{p3:?}");
    let rows = store.providers().await.unwrap();
    let row = rows.iter().find(|r| r.name == "p3").expect("a row for the provider the placements name");
    assert!(!row.reachable && row.owed.is_some(), "{row:?}");
}

#[tokio::test]
async fn a_provider_gone_from_the_config_is_evacuated_by_rebuilding_its_share() {
    let f = Fixture::new(2, 4).with_spare(1);
    let d = data(150_000, 5);
    put(&f.store_with(&[4]).await, "x", &d).await.unwrap();
    // p3's entry was deleted from the config by hand while placements still name it.
    let text = f.config_text(&[]);
    let start = text.find("[[providers]]\nname = \"p3\"").unwrap();
    let end = start + text[start..].find("[[providers]]\nname = \"p4\"").unwrap();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let store =
        Store::open_with_key(outlast_engine::Config::parse(&without, &f.root.join("outlast.toml")).unwrap(), f.key.clone())
            .await
            .unwrap();
    assert!(store.owed().await.unwrap().iter().any(|o| o.provider == "p3" && !o.configured));
    let r = store.evacuate("p3", "p4", &NoProgress).await.unwrap();
    assert_eq!((r.objects_moved, r.blobs_rebuilt, r.remaining), (1, 1, 0), "{r:?}");
    assert!(store.owed().await.unwrap().is_empty(), "{:?}", store.owed().await.unwrap());
    // It reads with another provider gone too.
    std::fs::remove_dir_all(f.provider_dir(0)).unwrap();
    assert_eq!(get(&store, "x").await.unwrap(), d);
    // A name nobody places is still refused.
    assert!(store.evacuate("nobody", "p4", &NoProgress).await.is_err());
}

/// Progress as a face sees it: the unit, the total announced and what was counted.
#[derive(Default)]
struct Seen {
    unit: std::sync::Mutex<Option<outlast_engine::progress::Unit>>,
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl outlast_engine::Progress for Seen {
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn set_total(&self, n: u64) {
        self.total.store(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn set_unit(&self, unit: outlast_engine::progress::Unit) {
        *self.unit.lock().unwrap() = Some(unit);
    }
}

#[tokio::test]
async fn scrub_and_recover_count_their_progress_in_the_items_they_say() {
    use outlast_engine::progress::Unit;
    use std::sync::atomic::Ordering::Relaxed;
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    for i in 0..5 {
        put(&store, &format!("o{i}"), &data(3 * SEG as usize, i)).await.unwrap();
    }
    let seen = Seen::default();
    store.scrub(&ScrubOptions::default(), &seen).await.unwrap();
    assert_eq!(*seen.unit.lock().unwrap(), Some(Unit::Items("checks")));
    // Three segment shards and a manifest copy on each of three providers, for five objects.
    assert_eq!((seen.total.load(Relaxed), seen.done.load(Relaxed)), (5 * 3 * 4, 5 * 3 * 4));
    let seen = Seen::default();
    store.recover(&seen).await.unwrap();
    assert_eq!(*seen.unit.lock().unwrap(), Some(Unit::Items("manifest copies")));
    assert_eq!((seen.total.load(Relaxed), seen.done.load(Relaxed)), (15, 15));
}
