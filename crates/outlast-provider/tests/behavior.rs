//! One provider behaviour suite, run unchanged against every provider kind (OpenDAL's habit).
//!
//! With `OUTLAST_TEST_PROVIDERS=path/to/providers.toml` (written by `scripts/servers.sh start`)
//! it runs against each listed provider; without it, against a local folder only.

use bytes::Bytes;
use outlast_provider::{ErrorClass, Provider, ProviderSpec};
use serde::Deserialize;

#[derive(Deserialize)]
struct ProviderList {
    providers: Vec<ProviderSpec>,
}

fn specs() -> (Vec<ProviderSpec>, Option<tempfile::TempDir>) {
    match std::env::var("OUTLAST_TEST_PROVIDERS") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).expect("read OUTLAST_TEST_PROVIDERS");
            let list: ProviderList = toml::from_str(&text).expect("parse providers list");
            (list.providers, None)
        }
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let spec = ProviderSpec {
                name: "local".into(),
                domain: "local".into(),
                scheme: "fs".into(),
                options: [("root".to_string(), dir.path().display().to_string())].into(),
                env: Default::default(),
            };
            (vec![spec], Some(dir))
        }
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<_>>())
}

async fn behave(p: &Provider) {
    let run = format!("{:016x}", rand_suffix());
    let name = format!("s/behavior-{run}-a");
    let who = p.name().to_string();

    // Whole write and read.
    let body = pattern(100_000, 1);
    p.write(&name, body.clone()).await.unwrap_or_else(|e| panic!("{who}: write: {e}"));
    assert_eq!(p.read(&name).await.unwrap(), body, "{who}: read back");
    assert_eq!(p.stat(&name).await.unwrap().size, 100_000, "{who}: stat size");

    // Ranges, including one running past the end.
    assert_eq!(p.read_range(&name, 10..20).await.unwrap(), body.slice(10..20), "{who}: range");
    assert_eq!(p.read_range(&name, 99_990..100_000).await.unwrap(), body.slice(99_990..), "{who}: tail range");

    // Streamed write across more than one multipart chunk.
    let big = format!("s/behavior-{run}-big");
    let mut w = p.writer(&big).await.unwrap();
    let parts: Vec<Bytes> = (0..5).map(|i| pattern(3 * 1024 * 1024 + 7, i)).collect();
    for part in &parts {
        w.write(part.clone()).await.unwrap_or_else(|e| panic!("{who}: streamed write: {e}"));
    }
    w.close().await.unwrap_or_else(|e| panic!("{who}: close: {e}"));
    let all: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
    let got = p.read(&big).await.unwrap();
    assert_eq!(got.len(), all.len(), "{who}: streamed size");
    assert!(got == all, "{who}: streamed content");
    let off = 3 * 1024 * 1024 + 7;
    assert_eq!(p.read_range(&big, off as u64..off as u64 + 5).await.unwrap(), all[off..off + 5], "{who}: range across parts");

    // Listing finds both, with sizes.
    let listed = p.list("s/").await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|e| e.name.contains(&run)).collect();
    assert_eq!(mine.len(), 2, "{who}: list {listed:?}");
    assert!(mine.iter().any(|e| e.name == name && e.size == 100_000), "{who}: listed size");

    // Missing blobs: not found, classified as such; deleting one succeeds.
    let missing = format!("s/behavior-{run}-missing");
    let err = p.read(&missing).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{who}: {err}");
    assert!(p.stat(&missing).await.unwrap_err().is_not_found(), "{who}: stat missing");
    p.delete(&missing).await.unwrap_or_else(|e| panic!("{who}: delete missing: {e}"));

    // Delete.
    p.delete(&name).await.unwrap();
    p.delete(&big).await.unwrap();
    assert!(p.read(&name).await.unwrap_err().is_not_found(), "{who}: deleted blob still readable");
    let after = p.list("s/").await.unwrap();
    assert!(!after.iter().any(|e| e.name.contains(&run)), "{who}: deleted blobs still listed");

    // An empty prefix that was never written lists empty rather than failing.
    assert!(p.list(&format!("m/none-{run}/")).await.unwrap().is_empty(), "{who}: empty list");
}

fn rand_suffix() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_behaves_the_same() {
    let (specs, _dir) = specs();
    assert!(!specs.is_empty());
    for spec in &specs {
        let p = Provider::build(spec).unwrap_or_else(|e| panic!("build {}: {e}", spec.name));
        behave(&p).await;
        eprintln!("provider behaviour: {} ({}) ok", spec.name, spec.scheme);
    }
}

#[test]
fn bad_specs_are_clear_errors() {
    let spec = ProviderSpec {
        name: "x".into(),
        domain: "d".into(),
        scheme: "nosuch".into(),
        options: Default::default(),
        env: Default::default(),
    };
    let e = Provider::build(&spec).unwrap_err().to_string();
    assert!(e.contains("unknown scheme `nosuch`"), "{e}");
    let spec = ProviderSpec {
        scheme: "s3".into(),
        env: [("secret_access_key".to_string(), "OUTLAST_TEST_SURELY_UNSET".to_string())].into(),
        ..spec
    };
    let e = Provider::build(&spec).unwrap_err().to_string();
    assert!(e.contains("OUTLAST_TEST_SURELY_UNSET"), "{e}");
}
