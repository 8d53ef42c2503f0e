//! Survival benchmarks, side by side in one run (`cargo bench -p outlast-engine --bench survive`):
//!
//! 1. GET and PUT latency (p50, p99) on two stores run interleaved, operation by operation, so
//!    that machine noise falls on both alike: one with every provider healthy, one with a
//!    provider 50x slower; gets of new objects (written with the provider slow) and of old ones
//!    (written before); and the extra requests and bytes that hedging spent.
//! 2. Repair of a wiped provider: bytes read per byte rebuilt.
//! 3. Evacuation of a live provider: egress ratio, and throughput beside `cp` of its folder.
//!
//! Six local-folder providers, 4-of-6, 1 MiB objects of one segment each. Every provider gets
//! a base latency (`OUTLAST_BENCH_BASE_MS`, default 2 ms) so that it behaves like a provider
//! across a network; "50x slower" adds 49 times that. `OUTLAST_BENCH_OPS` sets the operations per
//! store (default 500).

use std::path::Path;
use std::time::{Duration, Instant};

use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, PutOptions, RepairOptions, Store};
use outlast_provider::Faults;

const K: u16 = 4;
const N: u16 = 6;
const OBJECT: usize = 1 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(root: &Path, key: &MasterKey, providers: u16, broken: Option<u16>) -> Config {
    let mut t = format!("key_fingerprint = \"{}\"\n[coding]\nk = {K}\nn = {N}\nsegment_size = {OBJECT}\n", key.fingerprint());
    for i in 0..providers {
        let dir = if Some(i) == broken { root.join("a-file/p") } else { root.join(format!("p{i}")) };
        t.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
            dir.display()
        ));
    }
    Config::parse(&t, &root.join("outlast.toml")).unwrap()
}

fn body(seed: u64) -> Vec<u8> {
    outlast_engine::sample::bytes(OBJECT, seed)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[derive(Default)]
struct Phase {
    put: Vec<Duration>,
    get: Vec<Duration>,
    requests: u64,
    hedged: u64,
    fetched: u64,
}

/// A get of an object stored before the run, timed.
async fn get_old(store: &Store, i: u64, p: &mut Phase) {
    let mut out = Vec::with_capacity(OBJECT);
    let t = Instant::now();
    let r = store.get(&format!("old/{i}"), None, &mut out, &NoProgress).await.unwrap();
    p.get.push(t.elapsed());
    assert!(out == body(i + 1));
    p.requests += r.requests;
    p.hedged += r.hedged;
    p.fetched += r.fetched;
}

/// One put and one get of a fresh 1 MiB object, timed.
async fn op(store: &Store, i: u64, p: &mut Phase) {
    let name = format!("o/{i}");
    let b = body(i + 1);
    let t = Instant::now();
    store.put(&name, &b[..], PutOptions::default(), &NoProgress).await.unwrap();
    p.put.push(t.elapsed());
    let mut out = Vec::with_capacity(OBJECT);
    let t = Instant::now();
    let r = store.get(&name, None, &mut out, &NoProgress).await.unwrap();
    p.get.push(t.elapsed());
    assert!(out == b);
    p.requests += r.requests;
    p.hedged += r.hedged;
    p.fetched += r.fetched;
}

/// (p50, p99) of `v`, all of it or without its first `skip` samples.
fn p50_p99(v: &[Duration], skip: usize) -> (Duration, Duration) {
    let mut s = v[skip.min(v.len() - 1)..].to_vec();
    s.sort();
    (pct(&s, 0.5), pct(&s, 0.99))
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        total += if p.is_dir() { dir_bytes(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) };
    }
    total
}

#[tokio::main]
async fn main() {
    let ops = env_u64("OUTLAST_BENCH_OPS", 500);
    let base = Duration::from_millis(env_u64("OUTLAST_BENCH_BASE_MS", 2));
    let tmp = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    let open = |dir: &str| {
        let root = tmp.path().join(dir);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a-file"), b"x").unwrap();
        let store = Store::open_with_key(config(&root, &key, N, None), key.clone()).unwrap();
        for n in &names {
            store.provider_named(n).unwrap().set_faults(Faults { latency: base, ..Default::default() });
        }
        (root, store)
    };
    let (root, store) = open("healthy");
    let (_, slow_store) = open("slow");
    // Objects stored while every provider was healthy: p0 holds a data shard of most of them.
    for i in 0..ops {
        for s in [&store, &slow_store] {
            s.put(&format!("old/{i}"), &body(i + 1)[..], PutOptions::default(), &NoProgress).await.unwrap();
        }
    }
    slow_store.provider_named("p0").unwrap().set_faults(Faults { latency: base * 50, ..Default::default() });

    // 1. Latency: the two stores take turns, one operation each (every object has a shard on
    // every provider, so every read and write on the slow store meets p0): a put and a get of a
    // new object, and a get of an old one.
    let (mut healthy, mut slow) = (Phase::default(), Phase::default());
    let (mut healthy_old, mut slow_old) = (Phase::default(), Phase::default());
    for i in 0..ops {
        op(&store, i, &mut healthy).await;
        op(&slow_store, i, &mut slow).await;
        get_old(&store, i, &mut healthy_old).await;
        get_old(&slow_store, i, &mut slow_old).await;
    }
    let p0 = slow_store.health().into_iter().find(|h| h.name == "p0").unwrap();
    println!("p0 after the slow run: {} ({})", p0.state.as_str(), p0.reason);
    drop(slow_store);

    println!("latency over {ops} put+get of 1 MiB, 4-of-6, base provider latency {base:?}; p0 at {:?}:", base * 50);
    // The first operations with p0 slow are how Outlast learns it (hedges lost, then p0 asked
    // last and not waited for): shown with them, and without the first 10%.
    let learn = (ops / 10) as usize;
    for (what, h, s) in
        [("PUT", &healthy.put, &slow.put), ("GET new", &healthy.get, &slow.get), ("GET old", &healthy_old.get, &slow_old.get)]
    {
        for (label, skip) in [("all", 0), ("after learning", learn)] {
            let (h50, h99) = p50_p99(h, skip);
            let (s50, s99) = p50_p99(s, skip);
            let max = |v: &[Duration]| v[skip..].iter().max().copied().unwrap_or_default();
            println!(
                "  {what} healthy p50 {h50:>9.2?} p99 {h99:>9.2?} max {:>9.2?} | one slow ({label:>14}) p50 {s50:>9.2?} p99 {s99:>9.2?} max {:>9.2?} | ratio p50 {:.2}x p99 {:.2}x",
                max(h),
                max(s),
                s50.as_secs_f64() / h50.as_secs_f64(),
                s99.as_secs_f64() / h99.as_secs_f64()
            );
        }
    }
    let needed = ops * K as u64;
    let shard_bytes = (OBJECT / K as usize) as u64;
    for (what, p) in
        [("new, healthy", &healthy), ("new, one slow", &slow), ("old, healthy", &healthy_old), ("old, one slow", &slow_old)]
    {
        println!(
            "  GET {what}: {} shard requests for {needed} needed (+{:.1}%), {} hedged; {} bytes fetched for {} needed (+{:.1}%)",
            p.requests,
            (p.requests as f64 / needed as f64 - 1.0) * 100.0,
            p.hedged,
            p.fetched,
            needed * shard_bytes,
            (p.fetched as f64 / (needed * shard_bytes) as f64 - 1.0) * 100.0
        );
    }
    for n in &names {
        store.provider_named(n).unwrap().set_faults(Faults::default());
    }

    // 2. Repair of a wiped provider.
    let held = dir_bytes(&root.join("p2"));
    std::fs::remove_dir_all(root.join("p2")).unwrap();
    let t = Instant::now();
    let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let rebuilt = r.bytes_written;
    println!(
        "repair of wiped p2 ({held} bytes): {} blobs, {rebuilt} bytes written, {} read: {:.2} bytes read per byte rebuilt (k = {K}), {:.0} MiB/s",
        r.blobs_rebuilt,
        r.bytes_read,
        r.bytes_read as f64 / rebuilt as f64,
        rebuilt as f64 / secs / 1048576.0
    );
    drop(store);

    // 3. Evacuation of a live provider to a spare that holds nothing yet.
    let store = Store::open_with_key(config(&root, &key, N + 1, None), key.clone()).unwrap();
    let held = dir_bytes(&root.join("p1"));
    let t = Instant::now();
    let r = store.evacuate("p1", &format!("p{N}"), &NoProgress).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cp_dst = root.join("cp-copy");
    std::fs::create_dir_all(&cp_dst).unwrap();
    let t = Instant::now();
    let st = std::process::Command::new("cp").arg("-r").arg(root.join(format!("p{N}"))).arg(&cp_dst).status().unwrap();
    assert!(st.success());
    let cp_secs = t.elapsed().as_secs_f64();
    // A durable copy, as a store must make: each file copied, then flushed to disk.
    let synced_dst = root.join("synced-copy");
    let t = Instant::now();
    copy_synced(&root.join(format!("p{N}")), &synced_dst);
    let synced_secs = t.elapsed().as_secs_f64();
    println!(
        "evacuation of live p1 ({held} bytes on disk): {} blobs copied, egress {:.3}x, {} verified, {:.2} s = {:.0} MiB/s",
        r.blobs_copied,
        r.egress_ratio.unwrap_or(0.0),
        r.verified,
        secs,
        r.bytes_copied as f64 / secs / 1048576.0,
    );
    for (what, base) in [("cp -r", cp_secs), ("copy + fsync per file", synced_secs)] {
        println!(
            "  {what} of the same blobs {base:.2} s = {:.0} MiB/s; evacuate/{what} speed {:.2}x",
            r.bytes_copied as f64 / base / 1048576.0,
            base / secs
        );
    }
}

/// Copies `src` to `dst` file by file, each fsynced before the next.
fn copy_synced(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_synced(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            std::fs::File::open(&to).unwrap().sync_all().unwrap();
        }
    }
}
