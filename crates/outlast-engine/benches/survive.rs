//! Survival benchmarks, side by side in one run (`cargo bench -p outlast-engine --bench survive`):
//!
//! 1. GET and PUT latency (p50, p99) on two stores run interleaved, operation by operation, so
//!    that machine noise falls on both alike: one with every provider healthy, one with a
//!    provider 50x slower; gets of new objects (written with the provider slow) and of old ones
//!    (written before); and the extra requests and bytes that hedging spent.
//! 2. Repair of a wiped provider: bytes read per byte rebuilt, on local disks and across
//!    20 ms links.
//! 3. Evacuation of a live provider: egress ratio, and throughput beside `cp` of its folder;
//!    then another with every provider 20 ms away, where round trips bound it.
//!
//! Six local-folder providers, 4-of-6, 1 MiB objects of one segment each. Every provider gets
//! a base latency so that it behaves like a provider across a network; "50x slower" adds 49
//! times that. The latency pass runs once per base latency in `OUTLAST_BENCH_BASE_MS` (default
//! "2,20": a provider next door, and one as far as a typical object store's first byte).
//! `OUTLAST_BENCH_OPS` sets the operations per store (default 500). Beside it, the codec's
//! decode of one segment is timed with and without a missing data shard: a get of an object
//! whose data shard sits on the slow provider pays that difference.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outlast_codec::{DataKey, Layout, MasterKey, SegmentCodec, VersionId};
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, EvacuateReport, PutOptions, RepairOptions, Store};
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
        // Set up as `outlast init` does: a root that does not exist is a provider unavailable.
        if Some(i) != broken {
            std::fs::create_dir_all(&dir).unwrap();
        }
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

/// Latency of the two stores side by side with providers `base_ms` away; hands back the
/// healthy store (every provider's latency fault lifted) and its root.
async fn latency_pass(dir: &Path, key: &MasterKey, names: &[String], ops: u64, base_ms: u64) -> (std::path::PathBuf, Store) {
    let base = Duration::from_millis(base_ms);
    let open = async |sub: &str| {
        let root = dir.join(sub);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a-file"), b"x").unwrap();
        let store = Store::open_with_key(config(&root, key, N, None), key.clone()).await.unwrap();
        for n in names {
            store.provider_named(n).unwrap().set_faults(Faults { latency: base, ..Default::default() });
        }
        (root, store)
    };
    let (root, store) = open("healthy").await;
    let (_, slow_store) = open("slow").await;
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
    for n in names {
        store.provider_named(n).unwrap().set_faults(Faults::default());
    }
    (root, store)
}

/// The codec's decode of one segment, p50 and p99 over `rounds`: with every data shard, and
/// with data shard 0 missing (Reed-Solomon reconstructs it from a parity shard).
fn decode_cost(rounds: usize) -> [(Duration, Duration); 2] {
    let layout = Layout::new(OBJECT as u64, OBJECT as u32, K, N).unwrap();
    let codec = SegmentCodec::new(layout, DataKey::generate(), VersionId::generate(), 7);
    let encoded = codec.encode(0, &body(9)).unwrap();
    let all: Vec<Option<Bytes>> = encoded.shards.iter().cloned().map(Some).collect();
    let mut missing = all.clone();
    missing[0] = None;
    let (mut whole, mut degraded) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (shards, times) in [(&all, &mut whole), (&missing, &mut degraded)] {
            let t = Instant::now();
            let d = codec.decode(0, shards).unwrap();
            times.push(t.elapsed());
            assert_eq!(d.plaintext.len(), OBJECT);
        }
    }
    [p50_p99(&whole, 0), p50_p99(&degraded, 0)]
}

#[tokio::main]
async fn main() {
    let ops = env_u64("OUTLAST_BENCH_OPS", 500);
    let bases: Vec<u64> = std::env::var("OUTLAST_BENCH_BASE_MS")
        .unwrap_or_else(|_| "2,20".into())
        .split(',')
        .map(|v| v.trim().parse().expect("OUTLAST_BENCH_BASE_MS: milliseconds, comma separated"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();

    let [(w50, w99), (d50, d99)] = decode_cost(200);
    println!(
        "codec decode of one 1 MiB segment (4-of-6): data shards only p50 {w50:.2?} p99 {w99:.2?} | one data shard missing p50 {d50:.2?} p99 {d99:.2?}"
    );
    // The repair and evacuation passes reuse the first pass's healthy store and its objects.
    let mut kept = None;
    for (pass, &base_ms) in bases.iter().enumerate() {
        let (root, store) = latency_pass(&tmp.path().join(format!("base-{base_ms}")), &key, &names, ops, base_ms).await;
        if pass == 0 {
            kept = Some((root, store));
        }
    }
    let (root, store) = kept.expect("at least one base latency");

    // 2. Repair of a wiped provider, on local disks and then across 20 ms links.
    for (wiped, away) in [("p2", Duration::ZERO), ("p3", Duration::from_millis(20))] {
        for n in &names {
            store.provider_named(n).unwrap().set_faults(Faults { latency: away, ..Default::default() });
        }
        let held = dir_bytes(&root.join(wiped));
        std::fs::remove_dir_all(root.join(wiped)).unwrap();
        // Taken back on purpose, as a user does (`outlast provider reset`).
        store.reset_provider(wiped).await.unwrap();
        let t = Instant::now();
        let r = store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let rebuilt = r.bytes_written;
        println!(
            "repair of wiped {wiped} ({held} bytes, providers {away:?} away): {} blobs, {rebuilt} bytes written, {} read: {:.2} bytes read per byte rebuilt (k = {K}), {:.0} MiB/s, {:.0} objects/s",
            r.blobs_rebuilt,
            r.bytes_read,
            r.bytes_read as f64 / rebuilt as f64,
            rebuilt as f64 / secs / 1048576.0,
            r.objects_in_debt as f64 / secs
        );
    }
    for n in &names {
        store.provider_named(n).unwrap().set_faults(Faults::default());
    }
    drop(store);

    // 3. Evacuation of a live provider to a spare that holds nothing yet.
    let store = Store::open_with_key(config(&root, &key, N + 1, None), key.clone()).await.unwrap();
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
    report_evacuation(&format!("live p1 ({held} bytes on disk)"), &r, secs);
    for (what, base) in [("cp -r", cp_secs), ("copy + fsync per file", synced_secs)] {
        println!(
            "  {what} of the same blobs {base:.2} s = {:.0} MiB/s; evacuate/{what} speed {:.2}x",
            r.bytes_copied as f64 / base / 1048576.0,
            base / secs
        );
    }
    drop(store);

    // 4. The same across a network: every provider 20 ms away, where an evacuation is bound
    // by round trips (a shard copy and n manifest copies per object), not by the local disk.
    let store = Store::open_with_key(config(&root, &key, N + 2, None), key.clone()).await.unwrap();
    for i in 0..N + 2 {
        store
            .provider_named(&format!("p{i}"))
            .unwrap()
            .set_faults(Faults { latency: Duration::from_millis(20), ..Default::default() });
    }
    let t = Instant::now();
    let r = store.evacuate("p2", &format!("p{}", N + 1), &NoProgress).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    report_evacuation("live p2 with every provider 20 ms away", &r, secs);
}

fn report_evacuation(what: &str, r: &EvacuateReport, secs: f64) {
    println!(
        "evacuation of {what}: {} blobs copied, egress {:.3}x, {} verified, {:.2} s = {:.0} MiB/s, {:.0} objects/s",
        r.blobs_copied,
        r.egress_ratio.unwrap_or(0.0),
        r.verified,
        secs,
        r.bytes_copied as f64 / secs / 1048576.0,
        r.objects_moved as f64 / secs
    );
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
