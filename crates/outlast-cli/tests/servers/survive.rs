//! Surviving on real servers (`scripts/servers.sh`): an ended account (a deleted bucket or
//! container), servers killed with -9 mid-put and mid-get, and scrub, repair, drill and
//! evacuation from each kind to another kind. These stop servers and delete buckets, so
//! `scripts/test.sh` runs them alone: `cargo test --test servers -- --ignored survive::`.

use crate::common;
use crate::kit;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use kit::*;

fn check(dir: &std::path::Path, name: &str, body: &[u8]) {
    let out = outlast(dir).args(["get", name]).output().unwrap();
    // 3: read back, and a provider it used looks terminated.
    assert!(matches!(out.status.code(), Some(0 | 3)), "get {name}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == body, "{name}: {} bytes back, {} stored", out.stdout.len(), body.len());
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh; deletes and recreates buckets"]
fn a_deleted_bucket_or_container_is_a_terminated_account_and_io_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let specs = store(d);
    let bodies = put_objects(d, 3, 2_000_000, 40);
    for kind in ["s3", "azblob"] {
        let spec = specs.iter().find(|s| s.name == kind).unwrap();
        bucket(spec, "delete");
        let out = outlast(d).args(["--json", "providers"]).output().unwrap();
        bucket(spec, "create");
        assert_eq!(out.status.code(), Some(2));
        let reports = json(&out);
        let r = reports.as_array().unwrap().iter().find(|r| r["name"] == kind).unwrap();
        assert_eq!(r["state"], "terminated", "{r}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("TERMINATED"));
        check_objects(d, &bodies);
        // A recreated bucket is not taken back silently: repair leaves it alone until reset.
        let out = outlast(d).args(["--json", "repair"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
        run_ok(d, &["provider", "reset", kind]);
        // Its shards are repair debt now: repair puts them back into the new bucket.
        let r = json(&run_ok(d, &["--json", "repair"]));
        assert_eq!(r["remaining"], 0, "{r}");
        assert!(r["blobs_rebuilt"].as_u64().unwrap() >= 3, "{r}");
        run_ok(d, &["scrub"]);
    }
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh; kills and restarts them"]
fn servers_killed_mid_put_and_mid_get() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d);
    let body = data(24 << 20, 7);
    std::fs::write(d.join("big.bin"), &body).unwrap();
    run_ok(d, &["put", "big.bin", "big"]);
    // moto keeps data in memory: S3 goes last, since a restart empties it.
    for kind in ["sftp", "webdav", "azblob", "s3"] {
        // Mid-get: the reader switches to parity and the output is intact.
        let child = outlast(d).args(["get", "big", "out.bin"]).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let down = Stopped::new(kind);
        let out = child.wait_with_output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 3)), "get with {kind} killed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read(d.join("out.bin")).unwrap() == body, "get with {kind} killed returned wrong bytes");
        drop(down);

        // Mid-put: it finishes at quorum (4 of 5) or fails cleanly; either way what is
        // visible reads back intact.
        let mut child = outlast(d).args(["put", "-", "streamed"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&body[..8 << 20]).unwrap();
        let down = Stopped::new(kind);
        stdin.write_all(&body[8 << 20..]).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        drop(down);
        if out.status.success() {
            check(d, "streamed", &body);
            run_ok(d, &["rm", "streamed"]);
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("outlast: error:"), "{err}");
            assert!(run_err(d, &["get", "streamed"]).contains("no object named"));
        }
    }
    check(d, "big", &body);
    // moto's restart emptied S3, its identity marker too: a replaced location, taken back on
    // purpose. What the kills left missing is then repaired from the others.
    run_ok(d, &["provider", "reset", "s3"]);
    let r = json(&run_ok(d, &["--json", "repair"]));
    assert_eq!(r["remaining"], 0, "{r}");
    run_ok(d, &["scrub"]);
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh"]
fn scrub_repair_drill_and_evacuation_from_each_kind_to_another() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let specs = store(d);
    let bodies = put_objects(d, 3, 1_500_000, 60);
    add_spares(d, &specs);
    run_ok(d, &["scrub"]);
    run_ok(d, &["scrub", "--sample", "0.5"]);
    for s in &specs {
        let out = run_ok(d, &["--json", "drill", &s.name]);
        assert!(json(&out)["lost"].as_array().unwrap().is_empty());
    }
    let out = outlast(d).args(["drill", "s3", "azblob", "sftp"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "three of five gone with k=3 must lose data");

    // Each kind's shards move to a provider of another kind, in a ring.
    for (from, to) in [("s3", "azblob-2"), ("azblob", "sftp-2"), ("sftp", "webdav-2"), ("webdav", "local-2"), ("local", "s3-2")] {
        let r = json(&run_ok(d, &["--json", "evacuate", from, "--to", to]));
        assert_eq!((r["objects_moved"].as_u64(), r["remaining"].as_u64()), (Some(3), Some(0)), "{from} -> {to}: {r}");
        assert_eq!(r["egress_ratio"], 1.0, "{from} -> {to}: {r}");
        assert_eq!(r["verified"], 3, "{r}");
        run_ok(d, &["provider", "remove", from]);
        check_objects(d, &bodies);
    }
    // A provider whose blobs vanish: scrub finds it, repair rebuilds it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let victim = specs.iter().find(|s| s.name == "webdav").map(|s| {
        let mut v = s.clone();
        v.name = "webdav-2".into();
        v.options.insert("root".into(), format!("{}-2", s.options["root"]));
        v
    });
    rt.block_on(async {
        let p = outlast_provider::Provider::build(&victim.unwrap()).unwrap();
        for e in p.list("s/").await.unwrap() {
            p.delete(&e.name).await.unwrap();
        }
    });
    let out = outlast(d).args(["--json", "scrub"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let r = json(&run_ok(d, &["--json", "repair"]));
    assert_eq!((r["blobs_rebuilt"].as_u64(), r["remaining"].as_u64()), (Some(3), Some(0)), "{r}");
    run_ok(d, &["scrub"]);
}

/// The store in `dir`, opened through the engine for bulk work (a thousand CLI processes
/// would spend the suite's time starting up).
fn engine_store(dir: &std::path::Path) -> outlast_engine::Store {
    let cfg = outlast_engine::Config::load(&dir.join("outlast.toml")).unwrap();
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(outlast_engine::Store::open(cfg)).unwrap()
}

/// Runs `op` over `items` on a runtime, a few at a time.
fn bulk<T, F, Fut>(items: Vec<T>, op: F)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(futures::stream::iter(items).map(op).buffer_unordered(8).collect::<Vec<()>>());
}

/// Object `i`'s body of generation `gen`: mostly a few KiB, every 97th spanning segments.
fn body_of(i: usize, gen: u64) -> Vec<u8> {
    let len = if i.is_multiple_of(97) { 300_000 } else { 500 + (i * 37) % 4000 };
    data(len, gen * 100_000 + i as u64)
}

#[test]
#[ignore = "needs the servers of scripts/servers.sh; stops and restarts them"]
fn recover_rebuilds_the_index_of_many_objects_over_five_kinds_with_two_down_and_one_lying() {
    let count: usize = std::env::var("OUTLAST_RECOVER_OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let specs = store(d);
    let local_root = std::path::PathBuf::from(&specs.iter().find(|s| s.name == "local").unwrap().options["root"]);
    let manifests = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(local_root.join("m")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let name = |i: usize| format!("dir{}/o{i}", i % 7);
    let mut bodies: Vec<Option<Vec<u8>>> = (0..count).map(|i| Some(body_of(i, 1))).collect();
    {
        let s = engine_store(d);
        bulk((0..count).collect(), |i| {
            let (s, body) = (&s, body_of(i, 1));
            async move {
                s.put(&name(i), &body[..], Default::default(), &outlast_engine::progress::NoProgress).await.unwrap();
            }
        });
    }
    // Keep the local provider's copies of the first versions, to plant back later.
    let old: Vec<(std::path::PathBuf, Vec<u8>)> = manifests()
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    // A tenth overwritten, a tenth removed (some of them overwritten first).
    let overwritten: Vec<usize> = (0..count).filter(|i| i % 10 == 3).collect();
    let removed: Vec<usize> = (0..count).filter(|i| i % 10 == 7 || i % 20 == 3).collect();
    {
        let s = engine_store(d);
        bulk(overwritten.clone(), |i| {
            let (s, body) = (&s, body_of(i, 2));
            async move {
                s.put(&name(i), &body[..], Default::default(), &outlast_engine::progress::NoProgress).await.unwrap();
            }
        });
        bulk(removed.clone(), |i| {
            let s = &s;
            async move { s.remove(&name(i)).await.unwrap() }
        });
    }
    // Writes side by side find SFTP slow to open files: it is given up on after the quorum and
    // owes its shards (a busy provider does not set the pace). Repair pays that before the test.
    run_ok(d, &["repair"]);
    run_ok(d, &["scrub"]);
    for &i in &overwritten {
        bodies[i] = Some(body_of(i, 2));
    }
    for &i in &removed {
        bodies[i] = None;
    }
    let ls = run_ok(d, &["ls"]).stdout;
    // The local provider lies: it goes back to old versions, and corrupts a current copy.
    for (p, b) in &old {
        std::fs::write(p, b).unwrap();
    }
    let current = manifests().into_iter().find(|p| !old.iter().any(|(o, _)| o == p)).unwrap();
    let mut b = std::fs::read(&current).unwrap();
    b[25] ^= 0x55;
    std::fs::write(&current, b).unwrap();
    std::fs::remove_dir_all(d.join(".outlast")).unwrap();
    let read_back = |bodies: &[Option<Vec<u8>>], which: &dyn Fn(usize) -> bool| {
        let s = engine_store(d);
        bulk(bodies.iter().enumerate().filter(|(i, _)| which(*i)).collect(), |(i, want)| {
            let s = &s;
            async move {
                let mut got = Vec::new();
                let r = s.get(&name(i), None, &mut got, &outlast_engine::progress::NoProgress).await;
                match want {
                    Some(want) => {
                        r.unwrap_or_else(|e| panic!("{}: {e}", name(i)));
                        assert!(&got == want, "{}: {} bytes back, {} stored", name(i), got.len(), want.len());
                    }
                    None => assert!(matches!(r, Err(outlast_engine::EngineError::NotFound(_))), "removed {} is back", name(i)),
                }
            }
        });
    };
    {
        let _down = (Stopped::new("sftp"), Stopped::new("webdav"));
        let out = outlast(d).args(["--json", "recover"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "two providers could not be listed");
        let r = json(&out);
        assert!(r["copies_rejected"].as_u64().unwrap() >= 1, "{r}");
        let live = bodies.iter().filter(|b| b.is_some()).count() as u64;
        assert_eq!((r["objects"].as_u64(), r["deleted"].as_u64()), (Some(live), Some(removed.len() as u64)), "{r}");
        assert_eq!(run_ok(d, &["ls"]).stdout, ls);
        read_back(&bodies, &|_| true);
        assert!(run_err(d, &["get", &name(removed[0])]).contains("no object named"));
    }
    // Back up: a rerun completes the view, and repair pays what the liar owes.
    let r = json(&run_ok(d, &["--json", "recover"]));
    assert!(r["unreachable"].as_array().unwrap().is_empty(), "{r}");
    run_ok(d, &["repair"]);
    run_ok(d, &["scrub"]);
    assert_eq!(run_ok(d, &["ls"]).stdout, ls);
    // Every object was read back above; after the repair, a fifth of them and every removed name.
    read_back(&bodies, &|i| i % 5 == 0 || bodies[i].is_none());
}
