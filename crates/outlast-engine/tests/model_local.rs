//! A randomized test against a model: put, overwrite, get, ranged get, rm, repair and evacuate
//! under random injected faults (never more than n-k providers faulty at once), on real local
//! folders. Checked: no acknowledged write is lost, no wrong or stale byte is ever returned,
//! every fault a read reports names a provider that was faulty, and no write is refused while
//! at most n - k providers are faulty (the default write quorum is k).
//!
//! `OUTLAST_MODEL_OPS` sets the number of operations (default 1,200; e.g. 100000 for a long
//! run), `OUTLAST_MODEL_SEED` the seed (printed on failure).

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{EngineError, RepairOptions, Store};
use outlast_provider::{Faults, HealthState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PROVIDERS: [&str; 5] = ["p0", "p1", "p2", "p3", "p4"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random_fault(rng: &mut StdRng) -> Faults {
    match rng.gen_range(0..7) {
        0 => Faults { latency: std::time::Duration::from_millis(rng.gen_range(1..8)), ..Default::default() },
        1 => Faults { error_rate: 0.5, ..Default::default() },
        2 => Faults { deny: true, ..Default::default() },
        3 => Faults { truncate: true, ..Default::default() },
        4 => Faults { corrupt: true, ..Default::default() },
        // Very slow rather than hung forever: maintenance commands (repair, evacuate) wait for
        // a provider's own timeouts, which a test cannot afford; reads and writes must not.
        5 if rng.gen_bool(0.3) => Faults { latency: std::time::Duration::from_millis(300), ..Default::default() },
        _ => Faults { error_rate: 0.1, ..Default::default() },
    }
}

/// Clears every fault, repairs, and checks that every acknowledged object reads back exactly
/// and every removed one is gone.
async fn audit(store: &Store, model: &BTreeMap<String, Vec<u8>>, removed: &HashSet<String>, ctx: &str) {
    for p in PROVIDERS {
        store.provider_named(p).unwrap().set_faults(Faults::default());
    }
    store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
    for (name, want) in model {
        let got = get(store, name).await.unwrap_or_else(|e| panic!("{ctx}: acknowledged `{name}` is lost: {e}"));
        assert!(&got == want, "{ctx}: `{name}` reads back wrong");
    }
    for name in removed.iter().filter(|n| !model.contains_key(*n)) {
        assert!(matches!(get(store, name).await, Err(EngineError::NotFound(_))), "{ctx}: removed `{name}` came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_under_random_faults_match_the_model() {
    let ops = env_u64("OUTLAST_MODEL_OPS", 1_200);
    let seed = env_u64("OUTLAST_MODEL_SEED", rand::random());
    let ctx = format!("seed {seed} (OUTLAST_MODEL_SEED={seed} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let f = Fixture::new(2, 4).with_spare(1);
    let store = f.store();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut faulty: BTreeMap<&str, Faults> = BTreeMap::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();

    for op in 0..ops {
        let ctx = format!("{ctx}, op {op}");
        // Faults come and go; at most n-k = 2 providers are faulty at once.
        if rng.gen_bool(0.08) {
            let p = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
            if faulty.contains_key(p) || rng.gen_bool(0.3) {
                faulty.remove(p);
                store.provider_named(p).unwrap().set_faults(Faults::default());
            } else if faulty.len() < 2 {
                let fault = random_fault(&mut rng);
                store.provider_named(p).unwrap().set_faults(fault.clone());
                faulty.insert(p, fault);
            }
        }
        let name = format!("k{}", rng.gen_range(0..24));
        let kind = match rng.gen_range(0..100) {
            0..=34 => "put",
            35..=69 => "get",
            70..=84 => "range",
            85..=93 => "rm",
            94..=97 => "repair",
            _ => "evacuate",
        };
        *counts.entry(kind).or_default() += 1;
        match kind {
            "put" => {
                let len = [0, 1, 1000, SEG as usize - 1, SEG as usize, 3 * SEG as usize + 17][rng.gen_range(0..6)];
                let body = data(len, rng.gen());
                // At most n - k providers are faulty, and the default write quorum is k: a write
                // must go on (below full redundancy at the edge). The exception is a provider
                // known to be slow, which a put stops waiting for once the quorum is in: its
                // shard is given up on, and more failures after that can leave too few.
                let slow_elsewhere =
                    store.health().iter().any(|h| h.state == HealthState::Slow && !faulty.contains_key(h.name.as_str()));
                match put(&store, &name, &body).await {
                    Ok(_) => {
                        model.insert(name.clone(), body);
                        removed.remove(&name);
                    }
                    Err(e) if slow_elsewhere => eprintln!("{ctx}: put refused with a slow provider given up on: {e}"),
                    Err(e) => panic!("{ctx}: put `{name}` refused with {} faulty providers: {e}", faulty.len()),
                }
            }
            "get" | "range" => {
                let mut out = Vec::new();
                let want = model.get(&name);
                let range = match (kind, want) {
                    ("range", Some(w)) if !w.is_empty() => {
                        let a = rng.gen_range(0..w.len() as u64);
                        Some(a..rng.gen_range(a + 1..=w.len() as u64))
                    }
                    _ => None,
                };
                match store.get(&name, range.clone(), &mut out, &NoProgress).await {
                    Ok(report) => {
                        let want = want.unwrap_or_else(|| panic!("{ctx}: `{name}` read although never stored or removed"));
                        let want = match &range {
                            Some(r) => &want[r.start as usize..r.end as usize],
                            None => &want[..],
                        };
                        assert!(out == want, "{ctx}: `{name}` {range:?} returned wrong or stale bytes");
                        for fault in &report.faults {
                            assert!(
                                faulty.contains_key(fault.provider.as_str()),
                                "{ctx}: fault blamed on healthy `{}`: {}",
                                fault.provider,
                                fault.reason
                            );
                        }
                    }
                    Err(EngineError::NotFound(_)) => assert!(want.is_none(), "{ctx}: acknowledged `{name}` not found"),
                    // Too few good shards right now (faults plus shards earlier faults kept
                    // from being written): allowed, as long as nothing wrong was returned.
                    Err(EngineError::Unreadable { .. }) => assert!(want.is_some(), "{ctx}"),
                    Err(e) => panic!("{ctx}: get `{name}`: {e}"),
                }
            }
            "rm" => {
                if store.remove(&name).await.is_ok() {
                    model.remove(&name);
                    removed.insert(name.clone());
                }
            }
            "repair" => {
                store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
            }
            _ => {
                let from = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
                let to = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
                if from != to {
                    store.evacuate(from, to, &NoProgress).await.unwrap();
                }
            }
        }
        if op % 500 == 499 {
            audit(&store, &model, &removed, &ctx).await;
            faulty.clear();
        }
    }
    audit(&store, &model, &removed, &format!("{ctx}, at the end")).await;
    eprintln!("{ops} operations {counts:?}, {} objects at the end", model.len());
}
