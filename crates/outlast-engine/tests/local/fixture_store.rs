//! A store written by an earlier build, kept in the tree (`tests/fixtures/format-1/`), must be
//! read, scrubbed, repaired and collected by this one: what is on the providers (docs/FORMAT.md)
//! and the index beside it outlive the code that wrote them.
//!
//! The fixture holds every kind of blob the format has: identity markers, shards of one- and
//! two-part objects, manifests of objects and of a deletion, and what a long put that crashed
//! leaves (its lease, its first part, its write intent in the index). It was written once, by
//! the ignored test below (`OUTLAST_FIXTURE_OUT=DIR cargo test -p outlast-engine --test local
//! fixture_store -- --ignored`), and is never rewritten by a later build: that is the point.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, LeaseTiming, PutOptions, RepairOptions, ScrubOptions, Store};
use tokio::io::AsyncWriteExt;

/// Providers of the fixture store: 3-of-5.
const K: u16 = 3;
const N: u16 = 5;

/// Each object of the fixture store: name, length, seed of its bytes (`common::data`).
const OBJECTS: &[(&str, usize, u8)] = &[
    ("docs/readme.txt", 100, 1),
    // Two parts, of three segments and of half of one.
    ("multi.bin", 3 * SEG as usize + SEG as usize / 2, 2),
    ("empty", 0, 3),
    ("replaced", 3000, 5), // the second version; the first was (2000, 4)
    ("unicode/名前 ünï", 10, 6),
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1")
}

/// The fixture's config, over providers under `root` and the index in `root/state`.
fn config_text(root: &Path, key: &MasterKey) -> String {
    let mut t = format!(
        "key_fingerprint = \"{}\"\nstate_dir = \"state\"\n[coding]\nk = {K}\nn = {N}\nsegment_size = {SEG}\nsegments_per_part = 3\n",
        key.fingerprint()
    );
    for i in 0..N {
        t.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
            root.join("providers").join(format!("p{i}")).display()
        ));
    }
    t
}

async fn open(root: &Path, key: &MasterKey) -> Store {
    let cfg = Config::parse(&config_text(root, key), &root.join("outlast.toml")).unwrap();
    Store::open_with_key(cfg, key.clone()).await.unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

async fn check_objects(store: &Store) {
    for &(name, len, seed) in OBJECTS {
        assert_eq!(get(store, name).await.unwrap_or_else(|e| panic!("{name}: {e}")), data(len, seed), "{name}");
    }
    let mut names: Vec<String> = store.list("").await.unwrap().into_iter().map(|o| o.name).collect();
    names.sort();
    let mut expected: Vec<&str> = OBJECTS.iter().map(|o| o.0).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(get(store, "removed").await.is_err(), "a deleted name stays deleted");
    assert!(get(store, "crashed").await.is_err(), "a put that never committed is not there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_an_earlier_build_wrote_is_read_scrubbed_repaired_and_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_tree(&fixture_dir(), root);
    let key = MasterKey::from_bytes(std::fs::read(root.join("fixture.key")).unwrap().try_into().unwrap());
    let store = open(root, &key).await;

    check_objects(&store).await;
    // Its index (schema 4) was migrated: rows it wrote have no placement beside the manifest,
    // and every job below opens their manifests instead.
    assert!(store.index().get("docs/readme.txt").await.unwrap().unwrap().placed.is_none());
    let readme = store.stat("docs/readme.txt").await.unwrap();
    assert_eq!(readme.content_type.as_deref(), Some("text/plain"));
    let scrub = store.scrub(&ScrubOptions::default(), &NoProgress).await.unwrap();
    assert!(!scrub.found_damage() && !scrub.owes() && scrub.unopened.is_empty(), "{scrub:?}");
    assert_eq!(scrub.objects, OBJECTS.len() as u64);

    // A provider lost whole, taken back and refilled from the others.
    for dir in ["s", "m"] {
        std::fs::remove_dir_all(root.join("providers/p4").join(dir)).unwrap();
    }
    store.reset_provider("p4").await.unwrap();
    let repair = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    assert!(repair.blobs_rebuilt > 0 && repair.errors.is_empty(), "{repair:?}");
    drop(store);
    let store = open(root, &key).await;
    let scrub = store.scrub(&ScrubOptions::default(), &NoProgress).await.unwrap();
    assert!(!scrub.found_damage() && !scrub.owes(), "{scrub:?}");

    // gc, with everything as old as a day (a checkout makes every file new): it keeps all that
    // is current and takes the crashed put's leftovers (its part, its temporary files, its
    // lease, long dead by the providers' clock).
    for i in 0..N {
        backdate(&root.join("providers").join(format!("p{i}")), 24 * 3600);
    }
    let report = gc(&store, 0).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(report.deleted > 0 && report.kept_unsure == 0, "{report:?}");
    check_objects(&store).await;
    let report = gc(&store, 0).await;
    assert_eq!(report.deleted, 0, "a second gc finds nothing more: {report:?}");
    drop(store);
    check_objects(&open(root, &key).await).await;
}

/// Writes the fixture store into `OUTLAST_FIXTURE_OUT` (run once, by the build whose format
/// it keeps; see the module documentation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixture store; run by hand only"]
async fn write_the_fixture_store() {
    let out = PathBuf::from(std::env::var_os("OUTLAST_FIXTURE_OUT").expect("OUTLAST_FIXTURE_OUT=DIR"));
    assert!(!out.exists(), "{} exists: the fixture is written once, into a new folder", out.display());
    let key = MasterKey::generate();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("fixture.key"), key.as_bytes()).unwrap();
    {
        let setup = open(&out, &key).await;
        for i in 0..N {
            std::fs::create_dir_all(out.join("providers").join(format!("p{i}"))).unwrap();
            setup.reset_provider(&format!("p{i}")).await.unwrap();
        }
    }
    let mut store = open(&out, &key).await;
    let text = PutOptions {
        content_type: Some("text/plain".into()),
        metadata: vec![("author".into(), "ada".into())],
        ..Default::default()
    };
    store.put("docs/readme.txt", &data(100, 1)[..], text, &NoProgress).await.unwrap();
    store.put("replaced", &data(2000, 4)[..], PutOptions::default(), &NoProgress).await.unwrap();
    for &(name, len, seed) in &OBJECTS[1..] {
        put(&store, name, &data(len, seed)).await.unwrap();
    }
    put(&store, "removed", &data(500, 7)).await.unwrap();
    store.remove("removed").await.unwrap();
    // A long put that crashes after its first part: a lease on the providers, an intent in
    // the index, a part written.
    store.set_lease_timing(LeaseTiming {
        after: Duration::from_millis(10),
        renew: Duration::from_secs(3600),
        ..Default::default()
    });
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let feed = async {
        tx.write_all(&data(5 * SEG as usize, 8)).await.unwrap();
        // Its lease taken and its first part closed (seven shards where six were).
        let count = |dir: &str| std::fs::read_dir(out.join("providers/p0").join(dir)).map_or(0, |d| d.count());
        let start = std::time::Instant::now();
        while count("l") == 0 || count("s") < 7 {
            assert!(start.elapsed() < Duration::from_secs(20), "no lease taken");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::select! {
        r = store.put("crashed", rx, PutOptions::default(), &NoProgress) => panic!("the put ended: {r:?}"),
        () = feed => {}
    }
    // The put was dropped where it stood, as a crash would leave it (the intent's renewal ends
    // with it); the index closes cleanly, so that the fixture needs no journal beside it.
    drop(store);
    std::fs::write(
        out.join("README.md"),
        format!(
            "A store written by `write_the_fixture_store` in `tests/fixture_store.rs` at commit {}.\n\
             Never rewrite it: later builds must read what this one wrote.\n",
            std::env::var("OUTLAST_FIXTURE_COMMIT").unwrap_or_else(|_| "(unknown)".into())
        ),
    )
    .unwrap();
}
