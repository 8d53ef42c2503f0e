//! A randomized test against a model: put, overwrite, get, ranged get, rm, repair and evacuate
//! under random injected faults (never more than n-k providers faulty at once, one of them
//! perhaps flapping: refusing every other operation), on real local folders. Between them, the
//! hazards of maintenance: gc from this folder and from a second state folder (after time has
//! passed for every blob), a command run with two providers aliased to one folder or with a
//! provider renamed by hand, the index deleted and recovered from the providers, and a
//! provider wiped and taken back with `reset`. Checked: no acknowledged write is lost, no wrong
//! or stale byte is ever returned, no removed name comes back, every fault a read reports names
//! a provider that was faulty, and no write is refused while at most n - k providers are faulty
//! (the default write quorum is k).
//!
//! `OUTLAST_MODEL_OPS` sets the number of operations (default 1,200; e.g. 100000 for a long
//! run), `OUTLAST_MODEL_SEED` the seed (printed on failure).

use crate::common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use outlast_engine::progress::NoProgress;
use outlast_engine::{EngineError, RepairOptions, Store};
use outlast_provider::{Faults, HealthState, IdentityRecheck};
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

/// Sets the faults of the model on `store` (each store opened has providers of its own). A
/// provider refused while a fault made its marker unreadable is checked again at once when the
/// fault is gone, as it would be after a while in a real process.
fn apply_faults(store: &Store, faulty: &BTreeMap<&str, Faults>) {
    store.set_identity_recheck(IdentityRecheck { refused: std::time::Duration::ZERO, ..Default::default() });
    for p in PROVIDERS {
        // A provider renamed by hand is the same folder under another name.
        let prov = store.provider_named(p).or_else(|| store.provider_named("archive").filter(|_| p == "p2")).unwrap();
        prov.set_faults(faulty.get(p).cloned().unwrap_or_default());
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
    // OUTLAST_MODEL_TRACE=1 prints every operation (to follow a failure).
    let trace = std::env::var_os("OUTLAST_MODEL_TRACE").is_some();
    let f = Fixture::new(2, 4).with_spare(1);
    let mut store = f.store().await;
    // A provider that refuses every other operation, counted among the faulty ones.
    let mut flapping: Option<&str> = None;
    let mut flap_on = false;
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
                if flapping == Some(p) {
                    flapping = None;
                }
            } else if faulty.len() < 2 {
                faulty.insert(p, random_fault(&mut rng));
                if flapping.is_none() && rng.gen_bool(0.2) {
                    flapping = Some(p);
                }
            }
        }
        if let Some(p) = flapping {
            flap_on = !flap_on;
            faulty.insert(p, Faults { deny: flap_on, ..Default::default() });
        }
        apply_faults(&store, &faulty);
        let name = format!("k{}", rng.gen_range(0..24));
        let kind = match rng.gen_range(0..200) {
            0..=67 => "put",
            68..=135 => "get",
            136..=163 => "range",
            164..=181 => "rm",
            182..=188 => "repair",
            189..=192 => "evacuate",
            193 => "gc",
            194 => "gc-elsewhere",
            195 => "aliased",
            196 => "renamed",
            197 => "recover",
            198 => "reset",
            _ => "flap",
        };
        *counts.entry(kind).or_default() += 1;
        if trace {
            eprintln!("op {op}: {kind} {name} faulty {faulty:?}");
        }
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
                match store.get(&name, range.clone().map(Into::into), &mut out, &NoProgress).await {
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
            "evacuate" => {
                let from = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
                let to = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
                if from != to {
                    store.evacuate(from, to, &NoProgress).await.unwrap();
                }
            }
            "gc" => {
                gc(&store, 0).await;
            }
            "gc-elsewhere" => {
                // Every blob is now 20 minutes old (past gc's floor for blobs it does not
                // know), and a second state folder that knows nothing runs gc.
                for i in 0..PROVIDERS.len() as u16 {
                    backdate(&f.provider_dir(i), 20 * 60);
                }
                let text = format!("state_dir = \"second-folder\"\n{}", f.config_text(&[]));
                let elsewhere = f.open_unvalidated(&text).await;
                apply_faults(&elsewhere, &faulty);
                gc(&elsewhere, 0).await;
            }
            "aliased" => {
                // One command with p1's root mistyped as p0's (plus a slash): p1 must be left
                // alone and nothing of p0 deleted; a put through it goes on without p1.
                let text = f.config_text(&[]);
                let aliased = text
                    .replace(&format!("\"{}\"", f.provider_dir(1).display()), &format!("\"{}/\"", f.provider_dir(0).display()));
                let mistyped = f.open_unvalidated(&aliased).await;
                apply_faults(&mistyped, &faulty);
                let body = data(rng.gen_range(0..2 * SEG as usize), rng.gen());
                // p1 is unavailable too: with two faulty providers besides, a refusal is fair.
                if put(&mistyped, &name, &body).await.is_ok() {
                    model.insert(name.clone(), body);
                    removed.remove(&name);
                }
                gc(&mistyped, 0).await;
            }
            "renamed" => {
                let renamed = f.open_unvalidated(&f.config_text(&[]).replace("name = \"p2\"", "name = \"archive\"")).await;
                apply_faults(&renamed, &faulty);
                gc(&renamed, 0).await;
                if let (Ok(got), Some(want)) = (get(&renamed, &name).await, model.get(&name)) {
                    assert!(&got == want, "{ctx}: `{name}` reads back wrong through a renamed provider");
                }
            }
            "recover" => {
                // The state folder is lost; recover from the providers, under the same faults.
                drop(store);
                remove_tree(&f.root.join(".outlast"));
                store = f.store().await;
                apply_faults(&store, &faulty);
                let r = store.recover(&NoProgress).await.unwrap();
                if !r.unreachable.is_empty() || r.copies_rejected > 0 {
                    // Its view may be incomplete: as it says, a rerun is safe.
                    apply_faults(&store, &BTreeMap::new());
                    store.recover(&NoProgress).await.unwrap();
                    apply_faults(&store, &faulty);
                }
            }
            "reset" => {
                // A healthy provider's disk is replaced (wiped), taken back and refilled; with
                // it, no more than n - k providers are short. Writes go on at k, so an object
                // written while providers were faulty may have no margin left: as a careful
                // user would, the model loses a disk only once a drill says no object needs it.
                let p = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
                let spared = faulty.len() <= 1 && !faulty.contains_key(p) && {
                    let drill = store.drill(&[p.to_string()], &NoProgress).await.unwrap();
                    drill.lost.is_empty() && drill.unchecked.is_empty()
                };
                if spared {
                    let dir = f.provider_dir(p[1..].parse().unwrap());
                    remove_tree(&dir);
                    std::fs::create_dir(&dir).unwrap();
                    store.reset_provider(p).await.unwrap();
                    store.repair(&RepairOptions::default(), &NoProgress).await.unwrap();
                }
            }
            _ => {
                // Make a faulty provider flap (or stop an existing flapping).
                flapping = match flapping {
                    Some(_) => None,
                    None => faulty.keys().next().copied(),
                };
            }
        }
        if op % 500 == 499 {
            audit(&store, &model, &removed, &ctx).await;
            faulty.clear();
            flapping = None;
        }
    }
    audit(&store, &model, &removed, &format!("{ctx}, at the end")).await;
    eprintln!("{ops} operations {counts:?}, {} objects at the end", model.len());
}
