//! `outlast demo`: the whole promise in one run, on local folders.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use outlast_engine::progress::NoProgress;
use outlast_engine::{keyfile, Config, PutOptions, RepairOptions, Store};

const K: u16 = 4;
const N: u16 = 6;
const MARKER: &str = "OUTLAST-DEMO-SECRET-MARKER";

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notes/hello.txt", format!("Hello from Outlast. {MARKER}\n").into_bytes()),
        ("notes/empty.txt", Vec::new()),
        ("photos/one-segment.jpg", outlast_engine::sample::bytes(1_000_003, 1)),
        ("videos/many-segments.mp4", outlast_engine::sample::bytes(37 * 1024 * 1024 + 17, 2)),
    ]
}

fn blobs_contain(root: &Path, needle: &[u8]) -> Result<bool> {
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            if blobs_contain(&path, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub async fn run(dir: Option<PathBuf>) -> Result<ExitCode> {
    let (root, _tmp) = match dir {
        Some(d) => {
            if d.exists() {
                bail!("{} already exists; the demo builds a fresh store, so pick a new folder", d.display());
            }
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().context("cannot create a temporary folder")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&root)?;
    let providers_dir = root.join("providers");
    println!("1. A {K}-of-{N} store over {N} local folders (each its own failure domain) in {}", root.display());
    let mut text = format!("[coding]\nk = {K}\nn = {N}\n");
    for i in 1..=N {
        let folder = providers_dir.join(format!("local{i}"));
        std::fs::create_dir_all(&folder)?;
        text.push_str(&format!(
            "[[providers]]\nname = \"local{i}\"\ndomain = \"local{i}\"\nscheme = \"fs\"\noptions = {{ root = {} }}\n",
            toml::Value::String(folder.to_string_lossy().into_owned())
        ));
    }
    let cfg_path = root.join("outlast.toml");
    let key = keyfile::create_random(&root.join("outlast.key"))?;
    let text = format!("key_fingerprint = \"{}\"\n{text}", key.fingerprint());
    std::fs::write(&cfg_path, &text)?;
    let store = Store::open(Config::parse(&text, &cfg_path)?).await?;
    for spec in store.config().providers.clone() {
        store.claim_location(&spec).await?; // each folder gets its identity marker, as `init` does
    }

    let objects = samples();
    let total: usize = objects.iter().map(|(_, d)| d.len()).sum();
    println!(
        "2. Storing {} objects ({:.1} MiB): encrypted, then erasure-coded into {N} shards each",
        objects.len(),
        total as f64 / 1048576.0
    );
    for (name, data) in &objects {
        let r = store.put(name, &data[..], PutOptions::default(), &NoProgress).await?;
        println!("   {name:<28} {:>10} bytes  etag {}…", r.size, &r.etag[..16]);
    }
    let leaked = blobs_contain(&providers_dir, MARKER.as_bytes())? || blobs_contain(&providers_dir, b"hello.txt")?;
    println!(
        "3. The providers hold only opaque blobs: names and content appear nowhere ({})",
        if leaked { "LEAK FOUND" } else { "checked" }
    );

    for gone in ["local2", "local5"] {
        std::fs::remove_dir_all(providers_dir.join(gone))?;
    }
    println!("4. Two providers vanish: local2 and local5 are wiped");

    let mut intact = 0;
    for (name, data) in &objects {
        let mut out = Vec::with_capacity(data.len());
        let report = store.get(name, None, &mut out, &NoProgress).await?;
        let ok = &out == data;
        intact += ok as usize;
        let mut missing: Vec<&str> = report.faults.iter().map(|f| f.provider.as_str()).collect();
        missing.sort_unstable();
        missing.dedup();
        // Once a provider is known to be gone it is no longer asked, so it shows no fault.
        let around = if missing.is_empty() { "the providers known to be gone".to_string() } else { missing.join(", ") };
        println!(
            "   {name:<28} {}  ({} of {} segments rebuilt from parity, reading around {})",
            if ok { "intact" } else { "CORRUPT" },
            report.degraded_segments,
            (data.len() as u64).div_ceil(4 << 20).max(1),
            around
        );
    }
    if intact != objects.len() || leaked {
        println!("5. FAILED: {intact} of {} objects intact{}", objects.len(), if leaked { ", plaintext leaked" } else { "" });
        return Ok(ExitCode::FAILURE);
    }
    println!("5. All {} objects read back byte-for-byte with 2 of {N} providers gone.", objects.len());

    for h in store.health().iter().filter(|h| !h.state.is_usable()) {
        let why = h.reason.split(" (last:").next().unwrap_or_default();
        println!("   Outlast now marks {} {}: {why}", h.name, h.state.as_str());
    }
    // A wiped location is never taken back silently (it might be a mistyped or unmounted
    // root): `outlast provider reset` says it is meant to be that provider again.
    for gone in ["local2", "local5"] {
        store.reset_provider(gone).await?;
    }
    let repaired = store.repair(&RepairOptions::default(), &NoProgress).await?;
    println!(
        "6. local2 and local5 are taken back (`outlast provider reset`). Repair: {} lost blobs found by listing; {} shard blobs rebuilt from the others and {} manifests restored ({:.1} MiB read for {:.1} MiB written)",
        repaired.blobs_found_lost,
        repaired.blobs_rebuilt,
        repaired.manifests_written,
        repaired.bytes_read as f64 / 1048576.0,
        repaired.bytes_written as f64 / 1048576.0
    );
    let without = ["local1".to_string(), "local3".to_string()];
    let drill = store.drill(&without, &NoProgress).await?;
    let ok = drill.lost.is_empty() && repaired.remaining == 0;
    println!(
        "7. Exit drill without local1 and local3 (changing nothing): {} of {} objects readable, {} at risk",
        drill.readable,
        drill.objects,
        drill.at_risk.len()
    );
    if ok {
        println!("   Full redundancy is back: any 2 of the {N} providers can vanish again.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("   FAILED: redundancy was not restored");
        Ok(ExitCode::FAILURE)
    }
}
