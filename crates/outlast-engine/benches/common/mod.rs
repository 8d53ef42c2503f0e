//! What the engine benchmarks share: a store of many small objects over local folders.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, Store};

/// Shards needed to read an object.
pub const K: u16 = 3;
/// Shards per object, one per provider `p0`..`p4`.
pub const N: u16 = 5;
/// Size of every object.
pub const OBJECT: usize = 1024;
const IN_FLIGHT: usize = 16;

/// The store over `p0`..`p4` under `root`.
pub fn config(root: &Path, key: &MasterKey) -> Config {
    config_of(root, key, N)
}

/// The store over `p0`..`p{providers-1}` under `root` (more than [`N`]: spares).
pub fn config_of(root: &Path, key: &MasterKey, providers: u16) -> Config {
    let mut t = format!("key_fingerprint = \"{}\"\n[coding]\nk = {K}\nn = {N}\n", key.fingerprint());
    for i in 0..providers {
        t.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
            root.join(format!("p{i}")).display()
        ));
    }
    Config::parse(&t, &root.join("outlast.toml")).unwrap()
}

/// Every request the store's providers have answered (or failed) so far.
pub fn requests(store: &Store) -> u64 {
    store.health().iter().map(|h| h.stats.ok + h.stats.transient + h.stats.denied + h.stats.gone + h.stats.other).sum()
}

/// Peak resident memory of this process so far, in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Writes `objects` objects of [`OBJECT`] bytes (names `d{i % 100}/o{i}`), overwrites one in
/// ten and removes another one in ten, through the engine with 16 puts in flight; then repairs
/// what the writes left owed, so the store starts at full redundancy. (Writes go on at `k`
/// shards: on a loaded machine a put gives up on a provider it finds slow, and a job that
/// then wipes a provider would take an object below `k`.)
pub async fn build(root: &Path, key: &MasterKey, objects: usize) -> Duration {
    let started = Instant::now();
    {
        // Sets up each folder as `outlast init` does; the store then opens over them.
        let setup = Store::open_with_key(config(root, key), key.clone()).await.unwrap();
        for i in 0..N {
            setup.reset_provider(&format!("p{i}")).await.unwrap();
        }
    }
    let store = Store::open_with_key(config(root, key), key.clone()).await.unwrap();
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
    let repaired = store.repair(&Default::default(), &NoProgress).await.unwrap();
    assert_eq!(repaired.remaining, 0, "the built store still owes: {repaired:?}");
    started.elapsed()
}
