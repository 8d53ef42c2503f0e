//! One store spread over all five provider kinds at once (local, S3, Azure Blob, SFTP, WebDAV;
//! k=3, n=5), on real servers started by `scripts/servers.sh`. These tests stop and restart
//! servers, so `scripts/test.sh` runs them alone: `cargo test --test servers_e2e -- --ignored`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use outlast_provider::{Provider, ProviderSpec};

fn providers_file() -> PathBuf {
    PathBuf::from(std::env::var("OUTLAST_TEST_PROVIDERS").expect("run through scripts/test.sh (OUTLAST_TEST_PROVIDERS)"))
}

fn servers(args: &[&str]) {
    let script = std::env::var("OUTLAST_SERVERS_SCRIPT").expect("OUTLAST_SERVERS_SCRIPT");
    let st = Command::new("bash").arg(script).args(args).status().unwrap();
    assert!(st.success(), "servers.sh {args:?} failed");
}

/// Stops a server kind; starts it again when dropped, even if the test fails.
struct Stopped(&'static str);

impl Stopped {
    fn new(kind: &'static str) -> Self {
        servers(&["stop", kind]);
        Stopped(kind)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        servers(&["start", self.0]);
    }
}

/// A fresh store over the five servers, under a unique root on each so runs do not mix.
fn store(dir: &Path) -> Vec<ProviderSpec> {
    #[derive(serde::Deserialize)]
    struct List {
        providers: Vec<ProviderSpec>,
    }
    let list: List = toml::from_str(&std::fs::read_to_string(providers_file()).unwrap()).unwrap();
    let run = dir.file_name().unwrap().to_string_lossy().replace(['.', '-'], "");
    let mut specs = list.providers;
    for s in &mut specs {
        let root = s.options.get("root").cloned().unwrap_or_else(|| "/".into());
        s.options.insert("root".into(), format!("{}/{run}", root.trim_end_matches('/')));
    }
    run_ok(dir, &["init", "--local", "unused", "--providers", "5", "--k", "3"]);
    let cfg = std::fs::read_to_string(dir.join("outlast.toml")).unwrap();
    let head = &cfg[..cfg.find("[[providers]]").unwrap()];
    #[derive(serde::Serialize)]
    struct Out<'a> {
        providers: &'a [ProviderSpec],
    }
    let body = toml::to_string(&Out { providers: &specs }).unwrap();
    std::fs::write(dir.join("outlast.toml"), format!("{head}{body}")).unwrap();
    specs
}

fn put_file(dir: &Path, name: &str, body: &[u8]) {
    let src = dir.join("src.bin");
    std::fs::write(&src, body).unwrap();
    run_ok(dir, &["put", "src.bin", name]);
}

fn check_file(dir: &Path, name: &str, body: &[u8]) {
    let dst = dir.join("dst.bin");
    let _ = std::fs::remove_file(&dst);
    run_ok(dir, &["get", name, "dst.bin"]);
    let got = std::fs::read(&dst).unwrap();
    assert!(got.len() == body.len() && got == body, "{name}: {} bytes back, {} stored", got.len(), body.len());
}

const SIZES: &[usize] = &[0, 1, 1_000_003, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 64 * 1024 * 1024];

#[test]
#[ignore = "needs the servers of scripts/servers.sh; stops and restarts them"]
fn five_kinds_roundtrip_then_survive_two_servers_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d);
    for (i, &len) in SIZES.iter().enumerate() {
        put_file(d, &format!("obj/{len}"), &data(len, i as u64));
    }
    for (i, &len) in SIZES.iter().enumerate() {
        check_file(d, &format!("obj/{len}"), &data(len, i as u64));
    }
    let providers = json(&run_ok(d, &["--json", "providers"]));
    assert!(providers.as_array().unwrap().iter().all(|p| p["reachable"] == true && p["shards"] == SIZES.len()), "{providers}");

    // moto keeps its data in memory, so S3 goes down last: after its restart it is empty.
    for (a, b) in [("sftp", "webdav"), ("s3", "azblob")] {
        let down = (Stopped::new(a), Stopped::new(b));
        for (i, &len) in SIZES.iter().enumerate() {
            check_file(d, &format!("obj/{len}"), &data(len, i as u64));
        }
        // Two of five down leaves 3 < write quorum 4: the put fails and nothing appears.
        std::fs::write(d.join("new.bin"), b"new").unwrap();
        let err = run_err(d, &["put", "new.bin", "new"]);
        assert!(err.contains("only 3 of 4"), "{err}");
        assert!(run_err(d, &["get", "new"]).contains("no object named"));
        drop(down);
    }
    // moto keeps its data in memory: after its restart the S3 shards are gone, and reads
    // still work from the other four.
    for (i, &len) in SIZES.iter().enumerate() {
        check_file(d, &format!("obj/{len}"), &data(len, i as u64));
    }
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh; stops and restarts them"]
fn write_at_quorum_with_one_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d);
    let down = Stopped::new("webdav");
    let body = data(3_000_000, 9);
    std::fs::write(d.join("f"), &body).unwrap();
    let put = json(&run_ok(d, &["--json", "put", "f", "f"]));
    drop(down);
    assert_eq!(put["shards_written"], 4, "{put}");
    assert_eq!(put["missing"][0], "webdav");
    check_file(d, "f", &body);
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh"]
fn no_provider_sees_names_or_content() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let specs = store(d);
    let marker = b"OUTLAST-MARKER-4d1c7e-TOP-SECRET";
    let mut body = data(2_000_000, 4);
    body.splice(1_000_000..1_000_000, marker.iter().copied());
    let name = "confidential/merger-plans.txt";
    put_file(d, name, &body);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut blobs = 0;
        for spec in &specs {
            let p = Provider::build(spec).unwrap();
            for prefix in ["s/", "m/"] {
                for e in p.list(prefix).await.unwrap() {
                    assert!(!e.name.contains("merger") && !e.name.contains("confidential"), "{}: {}", spec.name, e.name);
                    let bytes = p.read(&e.name).await.unwrap();
                    for needle in [&marker[..], name.as_bytes(), b"merger-plans"] {
                        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{}: {} leaks", spec.name, e.name);
                    }
                    blobs += 1;
                }
            }
        }
        assert_eq!(blobs, 10, "expected a shard and a manifest on each of 5 providers");
    });
}
