//! `outlast recover` at scale (`cargo bench -p outlast-engine --bench recover`): the time and the
//! provider requests it takes to rebuild a lost index, beside a baseline run in the same
//! process on the same folders: reading every manifest file straight from disk (one `read_dir`
//! and one read per file, no decryption), the floor any recovery from these providers pays.
//!
//! For each store size in `OUTLAST_BENCH_RECOVER_OBJECTS` (default "1000,10000"; add 100000
//! for the large store, which takes minutes to build): 3-of-5 local-folder providers, objects
//! of 1 KiB, written through the engine with 16 puts in flight, one in ten overwritten and
//! one in ten removed. Then, for the lost index: baseline, recover, and recover again over the
//! rebuilt index (nothing to change); requests are counted per provider from their health
//! records (every list, stat, read and write).

use std::path::Path;
use std::time::{Duration, Instant};

use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::Store;

mod common;

use common::{build, config, requests, N};

/// The floor: every manifest file of every provider read straight from disk.
fn read_all_manifests(root: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let mut files = 0;
    for i in 0..N {
        for e in std::fs::read_dir(root.join(format!("p{i}/m"))).unwrap() {
            std::hint::black_box(std::fs::read(e.unwrap().path()).unwrap());
            files += 1;
        }
    }
    (started.elapsed(), files)
}

async fn recover(root: &Path, key: &MasterKey) -> (Duration, u64, outlast_engine::RecoverReport) {
    let store = Store::open_with_key(config(root, key), key.clone()).await.unwrap();
    let before = requests(&store);
    let started = Instant::now();
    let report = store.recover(&NoProgress).await.unwrap();
    (started.elapsed(), requests(&store) - before, report)
}

#[tokio::main]
async fn main() {
    let sizes = std::env::var("OUTLAST_BENCH_RECOVER_OBJECTS").unwrap_or_else(|_| "1000,10000".into());
    println!("recover, 3-of-5 local folders, 1 KiB objects (1 in 10 overwritten, 1 in 10 removed)");
    println!(
        "{:>8} {:>9} {:>10} {:>12} {:>10} {:>8} {:>11} {:>10} {:>10}",
        "objects", "build s", "manifests", "baseline s", "recover s", "ratio", "requests", "again s", "again req"
    );
    for objects in sizes.split(',').map(|s| s.trim().parse::<usize>().expect("a number of objects")) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let key = MasterKey::generate();
        let built = build(root, &key, objects).await;
        std::fs::remove_dir_all(root.join(".outlast")).unwrap();
        let (floor, manifests) = read_all_manifests(root);
        let (took, reqs, report) = recover(root, &key).await;
        assert_eq!(report.objects as usize, objects - (objects + 2) / 10, "{report:?}");
        let (again, again_reqs, _) = recover(root, &key).await;
        println!(
            "{objects:>8} {:>9.1} {manifests:>10} {:>12.3} {:>10.3} {:>7.1}x {reqs:>11} {:>10.3} {again_reqs:>10}",
            built.as_secs_f64(),
            floor.as_secs_f64(),
            took.as_secs_f64(),
            took.as_secs_f64() / floor.as_secs_f64(),
            again.as_secs_f64(),
        );
    }
    if let Some(peak) = common::peak_rss_mib() {
        println!("peak RSS of the whole run (building included): {peak:.0} MiB");
    }
}
