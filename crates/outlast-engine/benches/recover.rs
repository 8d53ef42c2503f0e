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

use futures::StreamExt;
use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, Store};

const K: u16 = 3;
const N: u16 = 5;
const OBJECT: usize = 1024;
const IN_FLIGHT: usize = 16;

fn config(root: &Path, key: &MasterKey) -> Config {
    let mut t = format!("key_fingerprint = \"{}\"\n[coding]\nk = {K}\nn = {N}\n", key.fingerprint());
    for i in 0..N {
        t.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
            root.join(format!("p{i}")).display()
        ));
    }
    Config::parse(&t, &root.join("outlast.toml")).unwrap()
}

/// Every request the store's providers have answered (or failed) so far.
fn requests(store: &Store) -> u64 {
    store.health().iter().map(|h| h.stats.ok + h.stats.transient + h.stats.denied + h.stats.gone + h.stats.other).sum()
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn build(root: &Path, key: &MasterKey, objects: usize) -> Duration {
    let started = Instant::now();
    {
        // Sets up each folder as `outlast init` does; the store then opens over them.
        let setup = Store::open_with_key(config(root, key), key.clone()).unwrap();
        for i in 0..N {
            setup.reset_provider(&format!("p{i}")).await.unwrap();
        }
    }
    let store = Store::open_with_key(config(root, key), key.clone()).unwrap();
    let put = |i: usize, gen: u64| {
        let store = &store;
        async move {
            let body = outlast_engine::sample::bytes(OBJECT, gen * 1_000_000 + i as u64);
            store.put(&format!("d{}/o{i}", i % 100), &body[..], Default::default(), &NoProgress).await.unwrap();
        }
    };
    futures::stream::iter(0..objects).map(|i| put(i, 1)).buffer_unordered(IN_FLIGHT).collect::<Vec<()>>().await;
    futures::stream::iter((0..objects).filter(|i| i % 10 == 3))
        .map(|i| put(i, 2))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    futures::stream::iter((0..objects).filter(|i| i % 10 == 7))
        .map(|i| {
            let store = &store;
            async move { store.remove(&format!("d{}/o{i}", i % 100)).await.unwrap() }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

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
    let store = Store::open_with_key(config(root, key), key.clone()).unwrap();
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
    if let Some(peak) = peak_rss_mib() {
        println!("peak RSS of the whole run (building included): {peak:.0} MiB");
    }
}
