//! Memory and time of the store-wide jobs (`cargo bench -p outlast-engine --bench jobs`): drill,
//! scrub (whole and sampled), scrub + repair of a wiped provider, evacuation to a new provider,
//! gc and recover, one after another on one store, each from a freshly opened `Store` as a
//! command would run it.
//!
//! For each store size in `OUTLAST_BENCH_JOBS_OBJECTS` (default "1000,10000"; add 100000 for
//! the large store, which takes minutes to build): 3-of-5 local-folder providers, objects of
//! 1 KiB written through the engine, one in ten overwritten and one in ten removed (the
//! recover bench's store). Each job runs in a child process of its own, as a command would
//! (glibc's arenas limited to 2, as the command limits them): "peak" is that process's peak
//! RSS, and "per object" is its excess over the `open` row (a process that only opens the
//! store) divided by the number of objects.
//!
//! `OUTLAST_BENCH_JOBS` runs only the jobs listed (e.g. "drill,scrub,gc"); with
//! `OUTLAST_BENCH_JOBS_STORE=DIR` the store is built once under DIR and reused by later runs,
//! so that two builds can be measured on the same store (the jobs from `wipe-p4` on change it).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{build, config_of, N};
use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{GcOptions, RepairOptions, ScrubOptions, Store};

/// This process's peak resident memory, in KiB (Linux).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn open(root: &Path, key: &MasterKey, providers: u16) -> Store {
    Store::open_with_key(config_of(root, key, providers), key.clone()).await.unwrap()
}

/// The jobs in the order they run; each one's store state is what the ones before left.
const JOBS: &[&str] =
    &["open", "drill", "scrub", "scrub-sample", "wipe-p4", "scrub-wiped", "repair", "evacuate", "gc", "recover"];

/// Runs one job in this (child) process and prints "seconds peak-KiB result".
async fn child(job: &str, root: &Path) {
    let key = MasterKey::from_bytes(std::fs::read(root.join("key")).unwrap().try_into().unwrap());
    let started = Instant::now();
    let result: u64 = match job {
        "open" => open(root, &key, N).await.index().total_size().await.unwrap(),
        "drill" => open(root, &key, N).await.drill(&["p0".into()], &NoProgress).await.unwrap().readable,
        "scrub" => open(root, &key, N).await.scrub(&ScrubOptions::default(), &NoProgress).await.unwrap().objects,
        "scrub-sample" => {
            let opts = ScrubOptions { sample: Some(0.01) };
            open(root, &key, N).await.scrub(&opts, &NoProgress).await.unwrap().providers.iter().map(|p| p.shards_checked).sum()
        }
        "wipe-p4" => {
            // p4 loses everything but its marker; scrub finds it out, repair rebuilds it.
            for dir in ["s", "m"] {
                std::fs::remove_dir_all(root.join("p4").join(dir)).unwrap();
            }
            let spare = open(root, &key, N + 1);
            spare.await.reset_provider(&format!("p{N}")).await.unwrap();
            0
        }
        "scrub-wiped" => {
            open(root, &key, N).await.scrub(&ScrubOptions::default(), &NoProgress).await.unwrap().providers[4].missing
        }
        "repair" => open(root, &key, N).await.repair(&RepairOptions::default(), &NoProgress).await.unwrap().blobs_rebuilt,
        "evacuate" => {
            let store = open(root, &key, N + 1);
            let r = store.await.evacuate("p0", &format!("p{N}"), &NoProgress).await.unwrap();
            assert_eq!(r.remaining, 0, "{r:?}");
            r.objects_moved
        }
        "gc" => {
            let opts = GcOptions { grace: Duration::ZERO, dry_run: false };
            let r = open(root, &key, N + 1).await.gc(&opts, &NoProgress).await.unwrap();
            assert!(r.errors.is_empty(), "{r:?}");
            r.deleted
        }
        "recover" => {
            std::fs::remove_dir_all(root.join(".outlast")).unwrap();
            open(root, &key, N + 1).await.recover(&NoProgress).await.unwrap().objects
        }
        other => panic!("no job {other}"),
    };
    println!("{} {} {result}", started.elapsed().as_secs_f64(), peak_kib());
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--job") {
        return child(&args[i + 1], Path::new(&args[i + 2])).await;
    }
    let sizes = std::env::var("OUTLAST_BENCH_JOBS_OBJECTS").unwrap_or_else(|_| "1000,10000".into());
    println!("store-wide jobs, 3-of-5 local folders, 1 KiB objects (1 in 10 overwritten, 1 in 10 removed)");
    println!("each job in a fresh process; peak = its peak RSS; per object = (peak - open's peak) / objects");
    let only: Option<Vec<String>> =
        std::env::var("OUTLAST_BENCH_JOBS").ok().map(|v| v.split(',').map(|j| j.trim().to_string()).collect());
    let kept = std::env::var_os("OUTLAST_BENCH_JOBS_STORE").map(std::path::PathBuf::from);
    for objects in sizes.split(',').map(|s| s.trim().parse::<usize>().expect("a number of objects")) {
        let tmp = tempfile::tempdir().unwrap();
        // A kept store is built once and reused by later runs (of other builds, side by side).
        let root = match &kept {
            Some(dir) => dir.join(objects.to_string()),
            None => tmp.path().to_path_buf(),
        };
        let root = root.as_path();
        if root.join("key").exists() {
            println!("\n{objects} objects (kept store {})", root.display());
        } else {
            std::fs::create_dir_all(root).unwrap();
            let key = MasterKey::generate();
            let built = build(root, &key, objects).await;
            std::fs::write(root.join("key"), key.as_bytes()).unwrap();
            println!("\n{objects} objects (built in {:.1} s)", built.as_secs_f64());
        }
        println!("{:<14} {:>9} {:>9} {:>13} {:>10}", "job", "seconds", "peak MiB", "B per object", "result");
        let mut open_peak = 0;
        for job in JOBS {
            if only.as_ref().is_some_and(|o| *job != "open" && !o.iter().any(|j| j == job)) {
                continue;
            }
            let mut command = std::process::Command::new(std::env::current_exe().unwrap());
            // As the `outlast` command limits glibc's arenas (its main.rs): with one arena per
            // thread, a scrub of a wiped provider at 10^4 objects peaked at 43.6 MiB, with 2 at
            // 26.7 MiB; what a person runs is the second.
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                command.env("MALLOC_ARENA_MAX", "2");
            }
            let out = command.args(["--job", job, &root.to_string_lossy()]).output().unwrap();
            assert!(out.status.success(), "{job}: {}", String::from_utf8_lossy(&out.stderr));
            let line = String::from_utf8_lossy(&out.stdout);
            let f: Vec<&str> = line.split_whitespace().collect();
            let (seconds, peak, result): (f64, u64, &str) = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2]);
            if *job == "open" {
                open_peak = peak;
            }
            if *job == "wipe-p4" {
                continue;
            }
            let per_object = peak.saturating_sub(open_peak) as f64 * 1024.0 / objects as f64;
            println!("{job:<14} {seconds:>9.2} {:>9.1} {per_object:>13.0} {result:>10}", peak as f64 / 1024.0);
        }
    }
}
