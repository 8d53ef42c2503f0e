//! One store spread over all five provider kinds at once (local, S3, Azure Blob, SFTP, WebDAV;
//! k=3, n=5), on real servers started by `scripts/servers.sh`. These tests stop and restart
//! servers, so `scripts/test.sh` runs them alone: `cargo test --test servers -- --ignored e2e::`.

use crate::common;
use crate::kit;

use common::*;
use kit::*;
use outlast_provider::Provider;

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
        // Two of five down leaves 3 = k = the default write quorum: writes go on, below full
        // redundancy, and say what repair owes.
        let name = format!("new-{a}-{b}");
        std::fs::write(d.join("new.bin"), name.as_bytes()).unwrap();
        let put = json(&run_ok(d, &["--json", "put", "new.bin", &name]));
        assert_eq!(put["shards_written"], 3, "{put}");
        let mut missing: Vec<&str> = put["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        missing.sort();
        assert_eq!(missing, [a.min(b), a.max(b)], "{put}");
        check_file(d, &name, name.as_bytes());
        drop(down);
    }
    // moto keeps its data in memory: after its restart the S3 shards are gone, its identity
    // marker too, and reads still work from the other four. A read that asks S3 finds
    // everything it held gone: it succeeds and exits 3 to say the provider looks terminated.
    for (i, &len) in SIZES.iter().enumerate() {
        let out = outlast(d).args(["get", &format!("obj/{len}")]).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0 | 3)), "{said}");
        assert!(out.status.code() == Some(0) || said.contains("provider `s3` is terminated"), "{said}");
        assert!(out.stdout == data(len, i as u64), "obj/{len} read back wrong");
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

#[test]
#[ignore = "needs the servers of scripts/servers.sh"]
fn adding_a_bucket_that_does_not_exist_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let specs = store(d);
    let s3 = specs.iter().find(|s| s.name == "s3").unwrap();
    let before = std::fs::read_to_string(d.join("outlast.toml")).unwrap();
    let mut args: Vec<String> =
        ["provider", "add", "s3-typo", "--scheme", "s3", "--domain", "elsewhere"].map(String::from).to_vec();
    for (k, v) in &s3.options {
        let v = if k == "bucket" { "no-such-bucket-here".to_string() } else { v.clone() };
        args.push("--option".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = run_err(d, &args);
    assert!(err.contains("cannot add `s3-typo`"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("outlast.toml")).unwrap(), before, "the config changed");
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh"]
fn sftp_handshakes_refused_by_a_busy_sshd_are_waited_out() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = store(tmp.path());
    let sftp = specs.iter().find(|s| s.name == "sftp").unwrap();
    // Four clients of eight connections each (four outlast processes, say): 32 handshakes at
    // once, where sshd's default `MaxStartups 10:30:100` drops a third of those past ten.
    let clients: Vec<Provider> = (0..4).map(|_| Provider::build(sftp).unwrap()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        clients[0].write("s/one", bytes::Bytes::from_static(b"x")).await.unwrap();
        let stats = clients.iter().flat_map(|c| (0..8).map(move |_| c.stat("s/one")));
        let failed: Vec<String> =
            futures::future::join_all(stats).await.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
        assert!(failed.is_empty(), "{} of 32 stats failed: {}", failed.len(), failed[0]);
        clients[0].delete("s/one").await.unwrap();
    });
}
