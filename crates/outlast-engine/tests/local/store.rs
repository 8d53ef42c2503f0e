//! Engine tests on local-folder providers: the write/read paths, the commit rule, failures and
//! gc. (The same engine runs against real servers in the CLI's end-to-end tests.)

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, EngineError, GcOptions, GcReason, PutOptions, Store};

#[tokio::test]
async fn roundtrip_sizes_around_segments() {
    let f = Fixture::new(3, 5);
    let store = f.store().await;
    let s = SEG as usize;
    for (i, len) in [0, 1, s - 1, s, s + 1, 3 * s, 3 * s + 7, 2_000_000].into_iter().enumerate() {
        let d = data(len, i as u8);
        let name = format!("obj/{len}");
        let r = put(&store, &name, &d).await.unwrap();
        assert_eq!(r.size, len as u64);
        assert_eq!(r.shards_written, 5);
        assert_eq!(get(&store, &name).await.unwrap(), d, "len {len}");
    }
    assert_eq!(store.list("obj/").await.unwrap().len(), 8);
    assert_eq!(store.list("nothing").await.unwrap().len(), 0);
}

#[tokio::test]
async fn ranges_read_only_what_they_cover() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(5 * SEG as usize + 123, 9);
    put(&store, "r", &d).await.unwrap();
    let s = SEG as u64;
    for (a, b) in [
        (0, 1),
        (s - 1, s + 1),
        (2 * s + 5, 4 * s),
        (5 * s, 5 * s + 123),
        (100, 10_000_000),
        (d.len() as u64 - 1, d.len() as u64 + 9),
    ] {
        let mut out = Vec::new();
        store.get("r", Some((a..b).into()), &mut out, &NoProgress).await.unwrap();
        let (a, b) = (a.min(d.len() as u64) as usize, b.min(d.len() as u64) as usize);
        assert_eq!(out, &d[a..b]);
    }
    let mut out = Vec::new();
    let past = store.get("r", Some((d.len() as u64..d.len() as u64 + 9).into()), &mut out, &NoProgress).await;
    assert!(matches!(past, Err(EngineError::Range { .. })), "{past:?}");
    // The last N bytes, of the version read (all of it when N is more).
    for n in [1, s + 3, d.len() as u64 + 100] {
        let mut out = Vec::new();
        store.get("r", Some(outlast_engine::ByteRange::Last(n)), &mut out, &NoProgress).await.unwrap();
        assert_eq!(out, &d[d.len().saturating_sub(n as usize)..], "last {n}");
    }
}

#[tokio::test]
async fn an_empty_object_is_still_read_and_authenticated() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    put(&store, "empty", b"").await.unwrap();
    assert_eq!(get(&store, "empty").await.unwrap(), b"");
    for i in 0..2 {
        std::fs::remove_dir_all(f.provider_dir(i)).unwrap();
    }
    assert!(matches!(get(&store, "empty").await, Err(EngineError::Unreadable { .. })));
}

#[tokio::test]
async fn a_shard_that_passes_its_check_but_lies_is_found_on_a_normal_read() {
    use outlast_codec::check::ShardCheck;
    use outlast_codec::{names, Manifest, ManifestBody};
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let d = data(100_000, 12);
    put(&store, "liar", &d).await.unwrap();
    // Forge what a malicious provider cannot (it lacks the key): corrupt data shard 0 and make
    // the manifest's check agree, so only the segment's authentication can catch it.
    let keys = f.key.store_keys();
    let entry = store.index().get("liar").await.unwrap().unwrap();
    let blob = names::manifest_blob(&keys, &entry.stamp.vid);
    let mut m = Manifest::open(&keys, &blob, &entry.sealed_manifest).unwrap();
    let ManifestBody::Object(o) = &mut m.body else { panic!() };
    let liar = o.placement[0].provider.clone();
    let shard_path = f.provider_dir(liar[1..].parse().unwrap()).join(names::shard_blob(&keys, &entry.stamp.vid, 0, 0));
    let mut shard = std::fs::read(&shard_path).unwrap();
    shard[3] ^= 0x40;
    std::fs::write(&shard_path, &shard).unwrap();
    let len = o.layout().unwrap().shard_len(0);
    o.checks[0] = ShardCheck::of(keys.check_seed, &shard[..len]);
    let sealed = m.seal(&keys, &blob);
    let db = rusqlite::Connection::open(f.root.join(".outlast/index.sqlite")).unwrap();
    db.execute("UPDATE objects SET manifest = ?1 WHERE name = 'liar'", [sealed]).unwrap();
    // A write past the index's own connections is not seen by a store that remembers the name
    // (docs/decisions/0009): the forged row is read by a store opened after it.
    let store = f.store().await;

    let mut out = Vec::new();
    let report = store.get("liar", None, &mut out, &NoProgress).await.unwrap();
    assert_eq!(out, d);
    assert!(
        report.faults.iter().any(|fl| fl.provider == liar && fl.reason.contains("failed authentication")),
        "{:?}",
        report.faults
    );
}

#[tokio::test]
async fn survives_losing_n_minus_k_providers_and_says_why_beyond() {
    let f = Fixture::new(3, 5);
    let store = f.store().await;
    let d = data(300_000, 1);
    put(&store, "x", &d).await.unwrap();
    // Wipe the providers of two data shards, so the read must decode parity.
    let placement = store.stat("x").await.unwrap().placement;
    let dir_of = |p: &str| f.provider_dir(p[1..].parse().unwrap());
    std::fs::remove_dir_all(dir_of(&placement[0])).unwrap();
    std::fs::remove_dir_all(dir_of(&placement[2])).unwrap();
    let mut out = Vec::new();
    let report = store.get("x", None, &mut out, &NoProgress).await.unwrap();
    assert_eq!(out, d);
    assert_eq!(report.degraded_segments, 5, "300 kB in 64 KiB segments");
    assert!(report.faults.iter().all(|fl| fl.provider == placement[0] || fl.provider == placement[2]));
    std::fs::remove_dir_all(dir_of(&placement[1])).unwrap();
    match get(&store, "x").await {
        Err(EngineError::Unreadable { good: 2, needed: 3, .. }) => {}
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_shard_is_detected_attributed_and_worked_around() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let d = data(200_000, 3);
    put(&store, "c", &d).await.unwrap();
    let info = store.stat("c").await.unwrap();
    // Corrupt every shard blob (one per part) on the provider holding shard 0 (a data shard).
    let victim = &info.placement[0];
    let idx: u16 = victim[1..].parse().unwrap();
    let mut hit = 0;
    let mut files = Vec::new();
    collect(&f.provider_dir(idx).join("s"), &mut files);
    for p in files {
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 0xff;
        std::fs::write(&p, b).unwrap();
        hit += 1;
    }
    assert_eq!(hit, 2, "200 kB in 64 KiB segments, 3 per part: two parts");
    // A read asks the providers that answered fastest lately first, and on a busy machine one
    // slow answer at open can put the victim last; one read in 32 asks those too. Read until a
    // read asks it: every read must give the right bytes and blame the victim alone.
    let mut faults = Vec::new();
    for _ in 0..100 {
        let mut out = Vec::new();
        let report = store.get("c", None, &mut out, &NoProgress).await.unwrap();
        assert_eq!(out, d);
        assert!(report.faults.iter().all(|fl| &fl.provider == victim), "{:?}", report.faults);
        faults = report.faults;
        if !faults.is_empty() {
            break;
        }
    }
    assert!(faults.iter().any(|fl| &fl.provider == victim && fl.reason.contains("integrity")), "{faults:?}");
}

#[tokio::test]
async fn truncated_shard_is_detected() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let d = data(150_000, 4);
    put(&store, "t", &d).await.unwrap();
    let victim: u16 = store.stat("t").await.unwrap().placement[1][1..].parse().unwrap();
    let mut files = Vec::new();
    collect(&f.provider_dir(victim).join("s"), &mut files);
    let b = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &b[..b.len() - 100]).unwrap();
    assert_eq!(get(&store, "t").await.unwrap(), d);
}

#[tokio::test]
async fn overwrite_is_atomic_and_frees_the_old_version() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    put(&store, "o", &data(100_000, 1)).await.unwrap();
    let before = f.blob_files().len();
    let newer = data(70_000, 2);
    put(&store, "o", &newer).await.unwrap();
    assert_eq!(get(&store, "o").await.unwrap(), newer);
    assert_eq!(f.blob_files().len(), before, "old version's blobs not removed");
    assert_eq!(store.list("").await.unwrap().len(), 1);
}

#[tokio::test]
async fn remove_leaves_a_tombstone_and_nothing_readable() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    put(&store, "gone", b"bye").await.unwrap();
    store.remove("gone").await.unwrap();
    assert!(matches!(get(&store, "gone").await, Err(EngineError::NotFound(_))));
    assert!(matches!(store.remove("gone").await, Err(EngineError::NotFound(_))));
    // Only the tombstone manifests remain: one per provider, no shards.
    let files = f.blob_files();
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|p| p.parent().unwrap().ends_with("m")));
}

#[tokio::test]
async fn writes_go_on_with_n_minus_k_providers_down_and_a_higher_quorum_refuses_them() {
    // The default write quorum is k: with 2 of 4 providers down a put still succeeds, stored
    // below full redundancy, and says what repair owes.
    let f = Fixture::new(2, 4);
    let store = f.store_with(&[0, 1]).await;
    let d = data(100_000, 2);
    let mut r = put(&store, "q", &d).await.unwrap();
    assert_eq!(r.shards_written, 2);
    r.missing.sort(); // in placement order, which is random
    assert_eq!(r.missing, ["p0", "p1"]);
    assert_eq!(get(&store, "q").await.unwrap(), d);
    // One more down is below k: refused, nothing changed.
    let store = f.store_with(&[0, 1, 2]).await;
    let err = put(&store, "q", &data(100_000, 3)).await.unwrap_err();
    assert!(matches!(err, EngineError::Quorum { ok: 1, needed: 2, .. }), "{err}");
    // Each failure names its provider, for faces that map errors without reading the words.
    let EngineError::Quorum { failures, .. } = &err else { unreachable!() };
    let mut failed: Vec<&str> = failures.iter().map(|f| f.provider.as_str()).collect();
    failed.sort();
    failed.dedup();
    assert_eq!(failed, ["p0", "p1", "p2"], "{err}");
    assert_eq!(get(&f.store_with(&[0, 1]).await, "q").await.unwrap(), d);

    // A user who prefers a refused write to one a single failure from loss asks for more.
    let f = Fixture::new(2, 4).with_write_quorum(3);
    let store = f.store_with(&[0, 1]).await;
    let err = put(&store, "q", &data(100_000, 1)).await.unwrap_err();
    assert!(matches!(err, EngineError::Quorum { ok: 2, needed: 3, .. }), "{err}");
    assert!(store.list("").await.unwrap().is_empty());
    assert!(f.blob_files().is_empty(), "failed write left blobs: {:?}", f.blob_files());
    let store = f.store_with(&[0]).await;
    let r = put(&store, "q", &d).await.unwrap();
    assert_eq!(r.shards_written, 3);
    assert_eq!(r.missing, vec!["p0".to_string()]);
    assert_eq!(get(&store, "q").await.unwrap(), d);
}

#[tokio::test]
async fn wrong_key_is_refused_up_front() {
    let f = Fixture::new(2, 3);
    let cfg = Config::parse(&f.config_text(&[]), &f.root.join("outlast.toml")).unwrap();
    match Store::open_with_key(cfg, MasterKey::generate()).await {
        Err(EngineError::WrongKey { .. }) => {}
        other => panic!("expected WrongKey, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn providers_see_no_names_and_no_content() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let marker = b"MARKER-7f3a9c-CONFIDENTIAL";
    let mut d = data(50_000, 5);
    d.extend_from_slice(marker);
    d.extend(data(50_000, 6));
    let name = "secret-plans/quarterly-report.txt";
    store
        .put(name, &d[..], PutOptions { content_type: Some("text/x-confidential".into()), ..Default::default() }, &NoProgress)
        .await
        .unwrap();
    for file in f.blob_files() {
        let bytes = std::fs::read(&file).unwrap();
        let path = file.to_string_lossy().to_string();
        for needle in [&marker[..], name.as_bytes(), b"quarterly", b"text/x-confidential"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{path} contains {:?}", String::from_utf8_lossy(needle));
            assert!(!path.contains("quarterly"));
        }
    }
}

#[tokio::test]
async fn gc_removes_orphans_and_keeps_live_data() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let d = data(100_000, 7);
    put(&store, "keep", &d).await.unwrap();
    let live = f.blob_files().len();
    // Orphans as a crashed write would leave them.
    std::fs::create_dir_all(f.provider_dir(1).join("s")).unwrap();
    std::fs::write(f.provider_dir(1).join("s/00112233445566778899aabbccddeeff"), b"partial").unwrap();
    std::fs::create_dir_all(f.provider_dir(2).join("m")).unwrap();
    std::fs::write(f.provider_dir(2).join("m/ffeeddccbbaa99887766554433221100"), b"junk").unwrap();
    std::fs::create_dir_all(f.provider_dir(0).join("t")).unwrap();
    std::fs::write(f.provider_dir(0).join("t/00112233445566778899aabbccddeeff.a1b2"), b"half-written").unwrap();
    let young = gc(&store, 3600).await;
    assert_eq!((young.deleted, young.kept_young), (0, 3));
    // Blobs the index knows nothing of may be a write in progress elsewhere: a zero grace
    // does not shorten their floor.
    let r = gc(&store, 0).await;
    assert_eq!((r.deleted, r.kept_young), (0, 3), "{r:?}");
    for i in 0..3 {
        backdate(&f.provider_dir(i).join("t"), 16 * 60);
        backdate(&f.provider_dir(i).join("s"), 16 * 60);
        backdate(&f.provider_dir(i).join("m"), 16 * 60);
    }
    // A dry run says what and why, and changes nothing.
    let dry = store.gc(&GcOptions { grace: Duration::ZERO, dry_run: true }, &NoProgress).await.unwrap();
    assert_eq!(dry.deleted, 3, "{dry:?}");
    let mut why: Vec<(String, GcReason)> = dry.deletions.iter().map(|d| (d.provider.clone(), d.why)).collect();
    why.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        why,
        [("p0".into(), GcReason::StaleTemporary), ("p1".into(), GcReason::Unreferenced), ("p2".into(), GcReason::Unreferenced)]
    );
    assert_eq!(f.blob_files().len(), live + 3);
    let r = gc(&store, 0).await;
    assert_eq!(r.deleted, 3, "{r:?}");
    assert_eq!(f.blob_files().len(), live);
    assert_eq!(get(&store, "keep").await.unwrap(), d);
}

#[tokio::test]
async fn gc_touches_nothing_but_its_own_names() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    put(&store, "keep", &data(10_000, 1)).await.unwrap();
    // A user's files under a provider's root (a root shared with other things, a mistyped
    // root pointing at a home folder): never ours to delete, however old.
    let strangers = ["s/holiday.jpg", "m/README", "t/notes.txt.swp", "s/0123456789ABCDEF0123456789ABCDEF", "x.txt"];
    for s in strangers {
        let p = f.provider_dir(0).join(s);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"mine").unwrap();
    }
    backdate(&f.provider_dir(0), 30 * 24 * 3600);
    let r = gc(&store, 0).await;
    assert_eq!((r.deleted, r.foreign), (0, 4), "{r:?}");
    for s in strangers {
        assert!(f.provider_dir(0).join(s).exists(), "{s} was deleted");
    }
}

#[tokio::test]
async fn gc_never_deletes_a_live_blob_when_two_providers_are_one_folder() {
    // p1's root is p0's root with a trailing slash: both providers are one location. Each
    // lists the other's shards as its own unreferenced blobs.
    let f = Fixture::new(2, 3);
    let text = f.config_text(&[]);
    let p0 = f.provider_dir(0).display().to_string();
    let aliased = text.replace(&format!("\"{}\"", f.provider_dir(1).display()), &format!("\"{p0}/\""));
    assert_ne!(aliased, text);
    // Validation refuses such a config; the engine must still never delete live data if it
    // meets one (a path that resolves to another only at run time: a symlink made later).
    let cfg = Config { path: f.root.join("outlast.toml"), ..toml::from_str(&aliased).unwrap() };
    let store = Store::open_with_key(cfg, f.key.clone()).await.unwrap();
    let d = data(200_000, 3);
    put(&store, "important", &d).await.unwrap();
    backdate(&f.root, 30 * 24 * 3600);
    let r = gc(&store, 0).await;
    assert_eq!(r.deleted, 0, "{r:?}");
    assert_eq!(get(&store, "important").await.unwrap(), d);
}

#[tokio::test]
async fn gc_spares_a_write_in_progress_and_cleans_it_once_its_process_is_gone_or_its_expiry_passed() {
    use outlast_codec::VersionId;
    use outlast_engine::index::{BlobRef, PendingWrite};
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    std::fs::create_dir_all(f.provider_dir(0).join("s")).unwrap();
    std::fs::write(f.provider_dir(0).join("s/0123456789abcdef0123456789abcdef"), b"in flight").unwrap();
    // Its next blob is still a temporary file (a local disk writes there, then renames).
    std::fs::create_dir_all(f.provider_dir(0).join("t")).unwrap();
    std::fs::write(f.provider_dir(0).join("t/fedcba9876543210fedcba9876543210.x1y2"), b"half").unwrap();
    let blobs = ["s/0123456789abcdef0123456789abcdef", "s/fedcba9876543210fedcba9876543210"]
        .map(|b| BlobRef { provider: "p0".into(), blob: b.into(), size: 0 })
        .to_vec();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let vid = VersionId::generate();
    let hour = 3600 * 1_000_000_000;
    let intent = |vid, pid, expires_ns, blobs| PendingWrite {
        vid,
        owner: "holder".into(),
        pid,
        started_ns: now,
        expires_ns,
        claimed: false,
        blobs,
    };
    store.index().begin_pending(&intent(vid, child.id(), now + hour, blobs)).await.unwrap();
    // Another whose holder runs but stopped renewing it (a machine that slept, a process
    // stopped) is dead at its expiry: it could no longer commit, and its blob goes.
    std::fs::write(f.provider_dir(0).join("s/00000000000000000000000000000001"), b"stalled").unwrap();
    let stalled = vec![BlobRef { provider: "p0".into(), blob: "s/00000000000000000000000000000001".into(), size: 0 }];
    store.index().begin_pending(&intent(VersionId::generate(), child.id(), now - 1, stalled)).await.unwrap();
    let r = gc(&store, 0).await;
    assert_eq!((r.deletions.len(), r.crashed_writes), (1, 1), "{r:?}");
    let r = gc(&store, 0).await;
    assert_eq!((r.deleted, r.crashed_writes), (0, 0), "{r:?}");
    assert_eq!(f.blob_files().len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    // Its provider refuses the delete: the write is claimed (it can never commit now) and
    // stays listed, so the next gc removes its blob rather than forgetting it.
    let p0 = store.provider_named("p0").unwrap();
    p0.set_faults(outlast_provider::Faults { deny: true, ..Default::default() });
    let r = gc(&store, 3600).await;
    assert_eq!(r.crashed_writes, 0, "{r:?}");
    assert_eq!(f.blob_files().len(), 2);
    assert!(store.index().pending().await.unwrap()[0].claimed);
    p0.set_faults(outlast_provider::Faults::default());
    let r = gc(&store, 3600).await;
    assert_eq!(r.crashed_writes, 1, "{r:?}");
    assert!(f.blob_files().is_empty());
    assert!(store.index().pending().await.unwrap().is_empty());
}

/// A 1 MiB tmpfs mounted over a provider folder: a provider whose disk fills up mid-write.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&dir).status().unwrap();
        assert!(st.success(), "mounting a tmpfs needs root (as the test script and CI run)");
        TinyDisk(dir)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_costs_one_shard_or_fails_the_write_cleanly() {
    let f = Fixture::new(2, 4).with_write_quorum(3);
    let full = TinyDisk::mount(f.provider_dir(1));
    let store = f.store().await;
    let d = data(3_000_000, 8); // 1.5 MB per shard: more than the tiny disk holds
    let r = put(&store, "big", &d).await.unwrap();
    assert_eq!(r.missing, vec!["p1".to_string()]);
    assert_eq!(get(&store, "big").await.unwrap(), d);
    assert!(files_in(&full.0).is_empty(), "the partial shard on the full disk was not removed");

    let _second = TinyDisk::mount(f.provider_dir(2));
    let err = put(&store, "big", &data(3_000_000, 9)).await.unwrap_err();
    assert!(matches!(err, EngineError::Quorum { ok: 2, needed: 3, .. }), "{err}");
    // The old version is still there, intact, and the failed one left nothing behind.
    assert_eq!(get(&store, "big").await.unwrap(), d);
    assert!(files_in(&f.provider_dir(2)).is_empty());
}

/// The blob files under `dir` (identity markers left out).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out.retain(|p| !p.parent().is_some_and(|d| d.ends_with("i")));
    out
}

#[tokio::test]
async fn gc_never_sweeps_versions_a_lost_index_does_not_know() {
    let f = Fixture::new(2, 3);
    let d = data(300_000, 13);
    {
        let store = f.store().await;
        put(&store, "precious", &d).await.unwrap();
    }
    let blobs = f.blob_files().len();
    // The state folder is lost (or the config was copied to a new machine): an empty index.
    std::fs::remove_dir_all(f.root.join(".outlast")).unwrap();
    let store = f.store().await;
    assert!(store.list("").await.unwrap().is_empty());
    backdate(&f.root, 30 * 24 * 3600);
    let r = gc(&store, 0).await;
    assert_eq!((r.deleted, r.unknown_versions), (0, 1), "{r:?}"); // one version, its copies counted once
    assert_eq!(f.blob_files().len(), blobs);
}

#[tokio::test]
async fn remove_below_quorum_changes_nothing() {
    let f = Fixture::new(2, 4).with_write_quorum(3);
    let d = data(80_000, 14);
    put(&f.store().await, "stay", &d).await.unwrap();
    let before = f.blob_files();
    let degraded = f.store_with(&[0, 1]).await;
    let err = degraded.remove("stay").await.unwrap_err();
    assert!(matches!(err, EngineError::Quorum { ok: 2, needed: 3, .. }), "{err}");
    // No tombstone left behind and the object still reads. The providers that were down might
    // yet hold a tombstone, so the attempt stays recorded as pending, for gc.
    assert_eq!(f.blob_files(), before);
    let pending = degraded.index().pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].blobs.iter().all(|b| b.blob.starts_with("m/")));
    assert_eq!(get(&f.store().await, "stay").await.unwrap(), d);
    // The remove gave up on it: the next gc takes it at once, though this process lives on.
    assert!(!pending[0].is_live(1));
    drop(degraded);
    let store = f.store().await;
    let r = gc(&store, 3600).await;
    assert_eq!(r.crashed_writes, 1, "{r:?}");
    assert!(store.index().pending().await.unwrap().is_empty());
    assert_eq!(get(&store, "stay").await.unwrap(), d);
}

/// A get that loses the race with an overwrite or a removal (whose old shards are deleted
/// under it) says what happened, not that the object is unreadable.
#[tokio::test]
async fn a_get_racing_an_overwrite_or_a_removal_says_so() {
    let f = Fixture::new(2, 3);
    // The reader sees slow providers; the writer, a second store over the same folders and
    // index, sees them at full speed, so the change lands while the read is half-way.
    let (reader, writer) = (f.store().await, f.store().await);
    for i in 0..3 {
        let slow = outlast_provider::Faults { latency: Duration::from_millis(60), ..Default::default() };
        reader.provider_named(&format!("p{i}")).unwrap().set_faults(slow);
    }
    let body = data(60 * SEG as usize, 4);
    for (name, removed) in [("big", false), ("gone", true)] {
        put(&writer, name, &body).await.unwrap();
        let change = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if removed {
                writer.remove(name).await.unwrap();
            } else {
                put(&writer, name, &data(100, 5)).await.unwrap();
            }
        };
        let (got, ()) = tokio::join!(get(&reader, name), change);
        match got {
            Err(EngineError::ChangedDuringRead { deleted, .. }) => assert_eq!(deleted, removed, "{name}"),
            other => panic!("{name}: {:?}", other.map(|b| b.len())),
        }
    }
    let store = writer;
    assert_eq!(get(&store, "big").await.unwrap(), data(100, 5));
}

#[tokio::test]
async fn names_outside_the_limits_and_impossible_placements_are_refused_by_kind() {
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let long = "x".repeat(outlast_engine::MAX_NAME_LEN + 1);
    for name in ["", long.as_str(), "a\0b"] {
        let err = put(&store, name, b"x").await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidName(_)), "{err}");
    }
    assert!(put(&store, &"x".repeat(outlast_engine::MAX_NAME_LEN), b"x").await.is_ok());
    // Three shards, two domains (a config that slipped past validation).
    let text = f.config_text(&[]).replace("domain = \"d2\"", "domain = \"d1\"");
    let err = put(&f.open_unvalidated(&text).await, "y", b"y").await.unwrap_err();
    assert!(matches!(err, EngineError::PlacementImpossible { n: 3, domains: 2 }), "{err}");
    assert!(f.blob_files().iter().all(|p| !p.to_string_lossy().contains("/t/")));
}

/// Conditional writes (what S3's If-None-Match and If-Match need) are decided at the commit: the
/// loser leaves nothing behind, so neither a read nor a recovery can bring it back.
#[tokio::test]
async fn a_put_whose_precondition_fails_changes_nothing_and_leaves_no_blob() {
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let put_if = async |d: &[u8], precondition: outlast_engine::Precondition| {
        store.put("x", d, PutOptions { precondition, ..Default::default() }, &NoProgress).await
    };
    let first = data(300_000, 1);
    put_if(&first, outlast_engine::Precondition::Absent).await.unwrap();
    let files = f.blob_files().len();
    let lost = put_if(&data(300_000, 2), outlast_engine::Precondition::Absent).await;
    assert!(matches!(lost, Err(EngineError::Conflict(_))), "{lost:?}");
    assert_eq!(get(&store, "x").await.unwrap(), first);
    assert_eq!(f.blob_files().len(), files, "the losing write left blobs behind");
    let current = store.index().get("x").await.unwrap().unwrap().stamp.vid;
    let stale = put_if(&data(10, 3), outlast_engine::Precondition::Current(outlast_codec::VersionId::generate())).await;
    assert!(matches!(stale, Err(EngineError::Conflict(_))), "{stale:?}");
    let second = data(1000, 4);
    put_if(&second, outlast_engine::Precondition::Current(current)).await.unwrap();
    assert_eq!(get(&store, "x").await.unwrap(), second);
}

/// A body that does not have the MD5 its client declared (S3's Content-MD5) is found out once
/// it has all streamed in, and then is not committed: the old version stays, and no blob of
/// the new one is left behind.
#[tokio::test]
async fn a_put_whose_body_misses_its_declared_md5_changes_nothing_and_leaves_no_blob() {
    use md5::Digest;
    let f = Fixture::new(2, 4);
    let store = f.store().await;
    let first = data(300_000, 1);
    let expect = |d: &[u8]| outlast_engine::BodyMd5::Expect(md5::Md5::digest(d).into());
    let put = async |d: &[u8], md5| store.put("x", d, PutOptions { md5, ..Default::default() }, &NoProgress).await;
    let report = put(&first, expect(&first)).await.unwrap();
    assert_eq!(report.etag, hex::encode(md5::Md5::digest(&first)));
    let files = f.blob_files().len();
    let mut second = data(300_000, 2);
    let declared = expect(&second);
    second[299_999] ^= 1;
    let refused = put(&second, declared).await;
    assert!(matches!(refused, Err(EngineError::BadDigest(_))), "{refused:?}");
    assert_eq!(get(&store, "x").await.unwrap(), first);
    assert_eq!(f.blob_files().len(), files, "the refused write left blobs behind");
}

/// The refused write's clean-up deletes only what that write put down: with two providers
/// configured at one place, and through a second state folder whose index knows nothing of
/// the object, the old version still reads, there and from a third folder rebuilt from the
/// providers alone.
#[tokio::test]
async fn a_refused_md5_put_deletes_nothing_of_the_current_version_with_aliased_providers_or_a_second_folder() {
    use md5::Digest;
    let f = Fixture::new(2, 3);
    let first = data(300_000, 1);
    put(&f.store().await, "x", &first).await.unwrap();
    let p0 = f.provider_dir(0).display().to_string();
    let aliased = f.config_text(&[]).replace(&format!("\"{}\"", f.provider_dir(1).display()), &format!("\"{p0}/\""));
    let second_folder = format!("state_dir = \"second-folder\"\n{}", f.config_text(&[]));
    for text in [aliased, second_folder] {
        let store = f.open_unvalidated(&text).await;
        let mut body = data(300_000, 2);
        let declared = outlast_engine::BodyMd5::Expect(md5::Md5::digest(&body).into());
        body[0] ^= 1;
        let opts = PutOptions { md5: declared, ..Default::default() };
        let refused = store.put("x", &body[..], opts, &NoProgress).await;
        assert!(matches!(refused, Err(EngineError::BadDigest(_))), "{refused:?}");
    }
    assert_eq!(get(&f.store().await, "x").await.unwrap(), first);
    let third = f.open_unvalidated(&format!("state_dir = \"third-folder\"\n{}", f.config_text(&[]))).await;
    third.recover(&NoProgress).await.unwrap();
    assert_eq!(get(&third, "x").await.unwrap(), first);
}
