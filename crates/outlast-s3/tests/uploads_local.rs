//! Multipart uploads' failure paths on local folders (decision 0008): completes that died
//! after or before their commit, an abort racing a complete, a part that arrives after its
//! upload ended, a gateway on a second state folder whose index is stale (sweeping, and
//! retrying a complete that fails), two providers configured at one place, an upload
//! completed by a build before composite claims, a claim lost everywhere, a complete that
//! outlives its patience while a sweep lets its parts go, and a record that does not parse. In
//! each, the parts of a composite that lives are kept, no object is made of parts that are
//! gone, and what nothing holds is let go.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use outlast_codec::MasterKey;
use outlast_codec::{names, Manifest, VersionId};
use outlast_engine::progress::NoProgress;
use outlast_engine::{CompositeOptions, Config, EngineError, Precondition, PutOptions, Store};
use outlast_provider::Faults;
use outlast_s3::uploads::{upload_id, Upload, UploadError, UploadRecord, Uploads, PARTS, UPLOADS};

/// `n` local folders, 2-of-`n` (write quorum 2), and a state folder per `open`.
struct Folders {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    key: MasterKey,
    n: usize,
}

impl Folders {
    fn new() -> Folders {
        Folders::with(3)
    }

    fn with(n: usize) -> Folders {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let key = MasterKey::generate();
        let keys = key.store_keys();
        for i in 0..n {
            let blob = outlast_codec::names::marker_blob(&keys);
            let marker = outlast_codec::ProviderMarker { provider: format!("p{i}"), written_ns: 1 }.seal(&keys, &blob);
            let path = root.join(format!("p{i}")).join(&blob);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, marker).unwrap();
        }
        Folders { _tmp: tmp, root, key, n }
    }

    /// The store as a gateway with its state in `folder` sees it.
    async fn open(&self, folder: &str) -> Arc<Store> {
        self.open_where(folder, |i| i).await
    }

    /// [`Self::open`] with provider `i`'s root at provider `at(i)`'s folder (two providers at
    /// one place when `at` repeats: a mistyped config). Such a config is taken as it is, past
    /// the check of locations that refuses it for local folders, as it would be where two
    /// backends reach one place (an SFTP root and a local folder).
    async fn open_where(&self, folder: &str, at: impl Fn(usize) -> usize) -> Arc<Store> {
        let dir = self.root.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let n = self.n;
        let mut t = format!("key_fingerprint = \"{}\"\n[coding]\nk = 2\nn = {n}\nsegment_size = 65536\n", self.key.fingerprint());
        for i in 0..n {
            let p = self.root.join(format!("p{}", at(i)));
            t.push_str(&format!(
                "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
                p.display()
            ));
        }
        let path = dir.join("outlast.toml");
        let cfg = match (0..n).all(|i| at(i) == i) {
            true => Config::parse(&t, &path).unwrap(),
            false => Config { path, ..toml::from_str(&t).unwrap() },
        };
        Arc::new(Store::open_with_key(cfg, self.key.clone()).await.unwrap())
    }
}

fn record(created_ns: u64, completing_ns: Option<u64>) -> UploadRecord {
    UploadRecord { bucket: "b".into(), key: "k".into(), content_type: None, metadata: vec![], created_ns, completing_ns }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Writes an attempt at part `number` of `u`; returns its name.
async fn part(store: &Store, u: &Upload, number: i32, bytes: &[u8]) -> String {
    let name = Uploads::attempt_name(u, number);
    store.put(&name, bytes, PutOptions { md5: outlast_engine::BodyMd5::Hash, ..Default::default() }, &NoProgress).await.unwrap();
    name
}

async fn names(store: &Store, prefix: &str) -> Vec<String> {
    store.list(prefix).await.unwrap().into_iter().map(|o| o.name).collect()
}

async fn read(store: &Store, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(name, None, &mut out, &NoProgress).await.unwrap();
    out
}

/// Overwrites `u`'s record as a complete marks it (or as it stood when it died).
async fn mark(store: &Store, u: &Upload, completing_ns: u64) {
    let body = serde_json::to_vec(&UploadRecord { completing_ns: Some(completing_ns), ..u.record.clone() }).unwrap();
    store.put(&format!("{UPLOADS}{}", u.id.to_hex()), &body[..], PutOptions::default(), &NoProgress).await.unwrap();
}

async fn new_upload(uploads: &Uploads, created_ns: u64) -> Upload {
    let id = uploads.create(record(created_ns, None)).await.unwrap();
    uploads.get(&id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_complete_that_died_after_its_commit_is_finished_by_the_sweep() {
    let f = Folders::new();
    let store = f.open("a").await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));
    let u = new_upload(&uploads, now_ns()).await;
    let stale = part(&store, &u, 1, b"first try").await;
    let p1 = part(&store, &u, 1, &[7u8; 100_000]).await;
    let p2 = part(&store, &u, 2, b"tail").await;
    mark(&store, &u, now_ns()).await;
    let entries = vec![store.current(&p1).await.unwrap().unwrap(), store.current(&p2).await.unwrap().unwrap()];
    let opts = CompositeOptions { put: PutOptions::default(), origin: u.id, fence: None };
    store.commit_composite("b/k", &entries, opts).await.unwrap();
    // ... and the process died here: the record is still marked, the first try still there.

    let r = uploads.sweep().await.unwrap();
    assert_eq!((r.finished, r.parts_removed, r.expired), (1, 1, 0), "{r:?}");
    assert_eq!(names(&store, PARTS).await, vec![p1, p2], "the listed parts stay, {stale} goes");
    assert!(names(&store, UPLOADS).await.is_empty());
    let mut want = vec![7u8; 100_000];
    want.extend_from_slice(b"tail");
    assert_eq!(read(&store, "b/k").await, want);
    // A second sweep finds nothing to do.
    assert_eq!(uploads.sweep().await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_complete_that_died_before_its_commit_lets_go_once_its_patience_is_past() {
    let f = Folders::new();
    let store = f.open("a").await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));
    let young = new_upload(&uploads, now_ns()).await;
    part(&store, &young, 1, b"young").await;
    mark(&store, &young, now_ns()).await;
    let old = new_upload(&uploads, now_ns()).await;
    part(&store, &old, 1, b"old").await;
    mark(&store, &old, now_ns() - 2 * 3600 * 1_000_000_000).await;

    let r = uploads.sweep().await.unwrap();
    assert_eq!((r.expired, r.parts_removed), (1, 1), "{r:?}");
    let left = names(&store, PARTS).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].contains(&young.id.to_hex()), "a complete under way keeps its parts: {left:?}");
}

#[tokio::test]
async fn abort_and_complete_racing_on_one_upload_cannot_both_proceed() {
    let f = Folders::new();
    let store = f.open("a").await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));

    // Two completes of one upload: the second, holding what it read before the first
    // finished, finds the listed part still there but cannot mark the record: refused.
    let u = new_upload(&uploads, now_ns()).await;
    let p = part(&store, &u, 1, b"bytes").await;
    let etag = store.current(&p).await.unwrap().unwrap().etag;
    let seen_by_second = uploads.get(&u.id).await.unwrap().unwrap();
    let first = uploads.complete(u, &[(1, etag.clone())], Precondition::Any).await.unwrap();
    let second = uploads.complete(seen_by_second, &[(1, etag.clone())], Precondition::Any).await;
    assert!(matches!(second, Err(UploadError::NoSuchUpload)), "{second:?}");
    assert_eq!(store.current("b/k").await.unwrap().unwrap().stamp, first.entry.unwrap().stamp);
    assert_eq!(read(&store, "b/k").await, b"bytes");

    // An abort, then a complete holding what it read before: refused, nothing committed.
    let u = new_upload(&uploads, now_ns()).await;
    let p = part(&store, &u, 1, b"other bytes").await;
    let etag = store.current(&p).await.unwrap().unwrap().etag;
    let seen_by_complete = uploads.get(&u.id).await.unwrap().unwrap();
    uploads.abort(u).await.unwrap();
    let late = uploads.complete(seen_by_complete, &[(1, etag)], Precondition::Any).await;
    assert!(matches!(late, Err(UploadError::NoSuchUpload | UploadError::Part(1))), "{late:?}");
    assert_eq!(read(&store, "b/k").await, b"bytes");
    assert_eq!(names(&store, PARTS).await.len(), 1, "only the first upload's part is left");

    // A complete under way (its record marked): an abort is refused and the parts stay.
    let u = new_upload(&uploads, now_ns()).await;
    part(&store, &u, 1, b"bytes").await;
    mark(&store, &u, now_ns()).await;
    let marked = uploads.get(&u.id).await.unwrap().unwrap();
    assert!(matches!(uploads.abort(marked).await, Err(UploadError::NoSuchUpload)));
    assert_eq!(names(&store, PARTS).await.len(), 2);
}

#[tokio::test]
async fn a_part_that_arrives_after_its_upload_ended_is_swept() {
    let f = Folders::new();
    let store = f.open("a").await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));
    let u = new_upload(&uploads, now_ns()).await;
    let seen_by_upload_part = uploads.get(&u.id).await.unwrap().unwrap();
    uploads.abort(u).await.unwrap();
    part(&store, &seen_by_upload_part, 3, b"too late").await;
    assert_eq!(names(&store, PARTS).await.len(), 1);
    // Within the expiry it stays: to an index that lacks an upload's record (rebuilt while the
    // record did not read), a live upload's parts look just like this one.
    assert_eq!(uploads.sweep().await.unwrap(), Default::default());
    assert_eq!(names(&store, PARTS).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = Uploads::new(store.clone(), Duration::from_millis(10)).sweep().await.unwrap();
    assert_eq!(r.parts_removed, 1, "{r:?}");
    assert!(names(&store, PARTS).await.is_empty());
}

/// Gateways A and B on two state folders over `f`, and an upload open through A with one
/// part, which B knows from rebuilding its index from the providers.
struct Stale {
    a: Arc<Store>,
    b: Arc<Store>,
    at_a: Uploads,
    u: Upload,
    part: String,
    etag: String,
}

async fn stale(f: &Folders) -> Stale {
    let a = f.open("a").await;
    let b = f.open("b").await;
    let at_a = Uploads::new(a.clone(), Duration::from_secs(3600));
    let u = new_upload(&at_a, now_ns() - 10 * 1_000_000_000).await;
    let part = part(&a, &u, 1, b"the only part").await;
    let etag = a.current(&part).await.unwrap().unwrap().etag;
    b.recover(&NoProgress).await.unwrap();
    Stale { a, b, at_a, u, part, etag }
}

#[tokio::test]
async fn a_gateway_whose_index_is_stale_keeps_the_parts_of_a_composite_it_does_not_know() {
    let f = Folders::new();
    let Stale { a, b, at_a, u, part: p, etag } = stale(&f).await;
    assert_eq!(names(&b, PARTS).await, vec![p.clone()]);
    // A completes; B's index does not learn of it.
    at_a.complete(u, &[(1, etag)], Precondition::Any).await.unwrap();
    assert!(names(&b, UPLOADS).await.len() == 1, "B still sees the upload open");

    // B sweeps with a short expiry: the upload looks abandoned to it, but its record no
    // longer reads (A replaced it): nothing is decided about it, and the part stays.
    let at_b = Uploads::new(b.clone(), Duration::from_secs(1));
    let r = at_b.sweep().await.unwrap();
    assert_eq!(r, Default::default());
    assert_eq!(read(&a, "b/k").await, b"the only part");
    assert_eq!(names(&a, PARTS).await, vec![p]);

    // Once B knows the composite was overwritten, its parts are garbage there too.
    b.recover(&NoProgress).await.unwrap();
    let plain = PutOptions::default();
    b.put("b/k", &b"plain"[..], plain, &NoProgress).await.unwrap();
    let r = Uploads::new(b.clone(), Duration::from_millis(10)).sweep().await.unwrap();
    assert_eq!(r.parts_removed, 1, "{r:?}");
}

fn deny(store: &Store, providers: &[usize], deny: bool) {
    for i in providers {
        store.provider_named(&format!("p{i}")).unwrap().set_faults(Faults { deny, ..Default::default() });
    }
}

#[tokio::test]
async fn a_complete_retried_on_a_stale_folder_cannot_delete_the_composite_committed_elsewhere() {
    let f = Folders::with(4);
    let Stale { a, b, at_a, u, etag, .. } = stale(&f).await;

    // A completes while p2 and p3 refuse everything: the open record's blobs there are not
    // deleted, so the record B's index knows still reads.
    deny(&a, &[2, 3], true);
    let id = u.id;
    at_a.complete(u, &[(1, etag.clone())], Precondition::Any).await.unwrap();
    deny(&a, &[2, 3], false);
    assert_eq!(read(&a, "b/k").await, b"the only part");

    // A client retries the complete through B, where the upload still looks open, and its
    // condition fails at the commit: B's attempt is cleaned up, and only its own manifest.
    let at_b = Uploads::new(b.clone(), Duration::from_secs(3600));
    let seen = at_b.open("b", "k", &upload_id(&id)).await.expect("B's stale record still reads");
    let retried = at_b.complete(seen, &[(1, etag)], Precondition::Current(VersionId::generate())).await;
    assert!(matches!(retried, Err(UploadError::Engine(EngineError::Conflict(_)))), "{retried:?}");

    // B then takes the upload for abandoned; the providers' claim shows A's composite, whose
    // manifest they hold and B knows nothing newer of: the part stays.
    let r = Uploads::new(b.clone(), Duration::from_secs(1)).sweep().await.unwrap();
    assert_eq!((r.expired, r.parts_removed), (1, 0), "{r:?}");
    assert_eq!(read(&a, "b/k").await, b"the only part");

    // The providers alone still hold the object whole: a third folder recovers it.
    let c = f.open("c").await;
    c.recover(&NoProgress).await.unwrap();
    assert_eq!(read(&c, "b/k").await, b"the only part");
}

#[tokio::test]
async fn two_providers_configured_at_one_place_lose_nothing_of_an_upload() {
    let f = Folders::with(4);
    // p3's root is mistyped as p2's folder: p3 finds p2's marker there and is not used.
    let store = f.open_where("a", |i| if i == 3 { 2 } else { i }).await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));
    let kept = new_upload(&uploads, now_ns()).await;
    let p = part(&store, &kept, 1, b"kept").await;
    let etag = store.current(&p).await.unwrap().unwrap().etag;
    uploads.complete(kept, &[(1, etag)], Precondition::Any).await.unwrap();
    let dropped = new_upload(&uploads, now_ns()).await;
    part(&store, &dropped, 1, b"dropped").await;
    uploads.abort(dropped).await.unwrap();
    uploads.sweep().await.unwrap();
    assert_eq!(read(&store, "b/k").await, b"kept");

    // With the config put right, the object is whole on the providers, and the sweep lets go
    // of the aborted upload's part (kept while a provider could not say) once past the expiry,
    // but not the other.
    let right = f.open("b").await;
    right.recover(&NoProgress).await.unwrap();
    assert_eq!(read(&right, "b/k").await, b"kept");
    tokio::time::sleep(Duration::from_millis(20)).await;
    Uploads::new(right.clone(), Duration::from_millis(10)).sweep().await.unwrap();
    assert_eq!(names(&right, PARTS).await, vec![p]);
    assert_eq!(read(&right, "b/k").await, b"kept");
}

/// Makes the providers hold what a build before claims left of upload `id` completed as
/// composite `vid`: its manifest (where a provider holds one) under the upload id, no claim.
fn as_before_claims(f: &Folders, id: &VersionId, vid: &VersionId) {
    let keys = f.key.store_keys();
    let (fresh, old) = (names::manifest_blob(&keys, vid), names::manifest_blob(&keys, id));
    for i in 0..f.n {
        let dir = f.root.join(format!("p{i}"));
        let _ = std::fs::remove_file(dir.join(names::claim_blob(&keys, id)));
        let Ok(bytes) = std::fs::read(dir.join(&fresh)) else { continue };
        let mut m = Manifest::open(&keys, &fresh, &bytes).unwrap();
        m.stamp.vid = *id;
        std::fs::write(dir.join(&old), m.seal(&keys, &old)).unwrap();
        std::fs::remove_file(dir.join(&fresh)).unwrap();
    }
}

#[tokio::test]
async fn an_upload_completed_before_claims_is_judged_by_its_old_form() {
    let f = Folders::new();
    let a = f.open("a").await;
    let uploads = Uploads::new(a.clone(), Duration::from_secs(3600));
    let u = new_upload(&uploads, now_ns()).await;
    let p = part(&a, &u, 1, b"old form").await;
    let etag = a.current(&p).await.unwrap().unwrap().etag;
    let id = u.id;
    let done = uploads.complete(u, &[(1, etag)], Precondition::Any).await.unwrap();

    // The providers made to hold what a build before claims left: the composite's manifest
    // under the upload id itself, and no claim.
    as_before_claims(&f, &id, &done.entry.unwrap().stamp.vid);
    let keys = f.key.store_keys();
    let b = f.open("b").await;
    b.recover(&NoProgress).await.unwrap();
    assert_eq!(b.current("b/k").await.unwrap().unwrap().stamp.vid, id);
    assert_eq!(read(&b, "b/k").await, b"old form");

    // Its part has no record and no claim, and is older than the expiry: the composite with
    // the upload's own id keeps it, also once a retry's claim names only a failed attempt.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at_b = Uploads::new(b.clone(), Duration::from_millis(10));
    assert_eq!(at_b.sweep().await.unwrap(), Default::default());
    let claim_blob = names::claim_blob(&keys, &id);
    let failed = outlast_codec::CompositeClaim { origin: id, composites: vec![VersionId::generate()] };
    for i in 0..3 {
        std::fs::write(f.root.join(format!("p{i}")).join(&claim_blob), failed.seal(&keys, &claim_blob)).unwrap();
    }
    assert_eq!(Uploads::new(b.clone(), Duration::from_millis(10)).sweep().await.unwrap(), Default::default());
    assert_eq!(read(&b, "b/k").await, b"old form");
    // Overwritten, it keeps nothing.
    b.put("b/k", &b"new"[..], PutOptions::default(), &NoProgress).await.unwrap();
    assert_eq!(at_b.sweep().await.unwrap().parts_removed, 1);
}

#[tokio::test]
async fn a_claim_lost_from_every_provider_does_not_lose_the_object() {
    let f = Folders::new();
    let store = f.open("a").await;
    let uploads = Uploads::new(store.clone(), Duration::from_secs(3600));
    let u = new_upload(&uploads, now_ns()).await;
    let p = part(&store, &u, 1, b"claimed once").await;
    let etag = store.current(&p).await.unwrap().unwrap().etag;
    let id = u.id;
    uploads.complete(u, &[(1, etag)], Precondition::Any).await.unwrap();
    let claim = names::claim_blob(&f.key.store_keys(), &id);
    for i in 0..3 {
        std::fs::remove_file(f.root.join(format!("p{i}")).join(&claim)).unwrap();
    }
    // A gateway started afresh, past the expiry: no claim anywhere, but this index holds the
    // composite current, naming the part.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let restarted = Uploads::new(store.clone(), Duration::from_millis(10));
    assert_eq!(restarted.sweep().await.unwrap(), Default::default());
    assert_eq!(read(&store, "b/k").await, b"claimed once");
    assert_eq!(names(&store, PARTS).await, vec![p]);
}

#[tokio::test]
async fn a_stale_folder_keeps_the_parts_of_an_old_form_composite_it_does_not_know() {
    let f = Folders::with(4);
    let Stale { a, b, at_a, u, etag, .. } = stale(&f).await;
    // A completes while p2 and p3 refuse (B's record still reads there), and the providers are
    // then made to hold what a build before claims left: the manifest under the upload id.
    deny(&a, &[2, 3], true);
    let id = u.id;
    let done = at_a.complete(u, &[(1, etag)], Precondition::Any).await.unwrap();
    deny(&a, &[2, 3], false);
    as_before_claims(&f, &id, &done.entry.unwrap().stamp.vid);
    let c = f.open("c").await;
    c.recover(&NoProgress).await.unwrap();
    assert_eq!(read(&c, "b/k").await, b"the only part");

    // B, whose index knows of neither the complete nor the composite, expires the upload: no
    // claim, nothing current in its index names the part, but the providers hold the old-form
    // composite under the upload id: the part stays.
    let r = Uploads::new(b.clone(), Duration::from_secs(1)).sweep().await.unwrap();
    assert_eq!((r.expired, r.parts_removed), (1, 0), "{r:?}");
    let c = f.open("c2").await;
    c.recover(&NoProgress).await.unwrap();
    assert_eq!(read(&c, "b/k").await, b"the only part");
}

/// The ETag S3 gives a one-part multipart object of `bytes`.
fn one_part_etag(bytes: &[u8]) -> String {
    use md5::Digest;
    format!("{}-1", hex::encode(md5::Md5::digest(md5::Md5::digest(bytes))))
}

/// Starts completing `u` (one part, `etag`) through `slow`, whose providers answer every
/// operation `latency` late, and returns once its composite has been claimed and stamped, its
/// manifest not yet written: a complete begun now elsewhere is newer and commits first.
async fn begin_slow_complete(
    f: &Folders,
    slow: Uploads,
    store: &Store,
    u: Upload,
    etag: String,
    precondition: Precondition,
) -> tokio::task::JoinHandle<Result<outlast_s3::uploads::Completed, UploadError>> {
    let latency = Duration::from_millis(400);
    for i in 0..f.n {
        store.provider_named(&format!("p{i}")).unwrap().set_faults(Faults { latency, ..Default::default() });
    }
    let claim = names::claim_blob(&f.key.store_keys(), &u.id);
    let task = tokio::spawn(async move { slow.complete(u, &[(1, etag)], precondition).await });
    // The claim is written at the write quorum just before the stamp is taken; the manifest
    // then waits `latency` before it is written anywhere.
    let claimed = |i: usize| f.root.join(format!("p{i}")).join(&claim).exists();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (0..f.n).filter(|&i| claimed(i)).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "the slow complete never claimed its composite");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(latency / 4).await;
    task
}

#[tokio::test]
async fn two_completes_of_one_key_at_once_both_succeed_and_the_newer_stays() {
    let f = Folders::new();
    let slow = f.open("a").await;
    let fast = f.open("a").await;
    let hour = Duration::from_secs(3600);
    let (at_slow, at_fast) = (Uploads::new(slow.clone(), hour), Uploads::new(fast.clone(), hour));

    // Two uploads of b/k; the one whose complete begins first commits last.
    let older = new_upload(&at_slow, now_ns()).await;
    let older_part = part(&slow, &older, 1, b"older bytes").await;
    let newer = new_upload(&at_fast, now_ns()).await;
    let newer_part = part(&fast, &newer, 1, b"newer bytes").await;
    let older_etag = slow.current(&older_part).await.unwrap().unwrap().etag;
    let newer_etag = fast.current(&newer_part).await.unwrap().unwrap().etag;
    let older_id = older.id;
    let lost = begin_slow_complete(&f, at_slow, &slow, older, older_etag, Precondition::Any).await;
    let won = at_fast.complete(newer, &[(1, newer_etag)], Precondition::Any).await.unwrap();
    let lost = lost.await.unwrap().unwrap();

    // Both answered as S3 answers them: the older took effect just before the newer one.
    assert_eq!(lost.etag, one_part_etag(b"older bytes"));
    assert!(lost.entry.is_none(), "the older complete was replaced: {lost:?}");
    assert_eq!(won.etag, one_part_etag(b"newer bytes"));
    assert_eq!(read(&fast, "b/k").await, b"newer bytes");
    assert_eq!(fast.current("b/k").await.unwrap().unwrap().stamp, won.entry.unwrap().stamp);
    // The older upload ended: its record and its part are gone, the newer object's part stays.
    assert!(fast.current(&format!("{UPLOADS}{}", older_id.to_hex())).await.unwrap().is_none());
    assert_eq!(names(&fast, PARTS).await, vec![newer_part.clone()]);
    assert_eq!(names(&fast, UPLOADS).await, Vec::<String>::new());

    // A conditional complete that loses such a race is refused, not told it took effect,
    // and its upload is open again with its part.
    let slow = f.open("a").await;
    let at_slow = Uploads::new(slow.clone(), hour);
    let older = new_upload(&at_slow, now_ns()).await;
    let older_part = part(&slow, &older, 1, b"older again").await;
    let older_etag = slow.current(&older_part).await.unwrap().unwrap().etag;
    let seen = fast.current("b/k").await.unwrap().unwrap().stamp.vid;
    let older_id = older.id;
    let lost = begin_slow_complete(&f, at_slow, &slow, older, older_etag, Precondition::Current(seen)).await;
    let newer = new_upload(&at_fast, now_ns()).await;
    let newer_part = part(&fast, &newer, 1, b"newest").await;
    let newer_etag = fast.current(&newer_part).await.unwrap().unwrap().etag;
    at_fast.complete(newer, &[(1, newer_etag)], Precondition::Any).await.unwrap();
    let lost = lost.await.unwrap();
    let refused = matches!(lost, Err(UploadError::Engine(EngineError::Superseded { .. } | EngineError::Conflict(_))));
    assert!(refused, "{lost:?}");
    assert_eq!(read(&fast, "b/k").await, b"newest");
    assert!(at_fast.open("b", "k", &upload_id(&older_id)).await.is_ok(), "the refused upload is open again");
    assert!(names(&fast, PARTS).await.contains(&older_part));
}

/// A complete through a gateway with its state in folder "a" and provider `i` at `at(i)`'s
/// folder, which has marked its record and claimed its composite when a second gateway on the
/// same state folder sweeps. Standing in for a complete stalled past its patience (suspended,
/// or a clock stepped an hour on), the record is marked two hours back first, so the sweep
/// takes it for a complete that died. Returns the sweep's report, the complete's answer, the
/// store and the part's name.
async fn a_stalled_complete_meets_a_sweep(
    f: &Folders,
    at: impl Fn(usize) -> usize + Copy,
) -> (outlast_s3::uploads::SweepReport, Result<outlast_s3::uploads::Completed, UploadError>, Arc<Store>, String) {
    let slow = f.open_where("a", at).await;
    let sweeper = f.open_where("a", at).await;
    let hour = Duration::from_secs(3600);
    let at_slow = Uploads::new(slow.clone(), hour);
    let u = new_upload(&at_slow, now_ns()).await;
    let p = part(&slow, &u, 1, b"bytes the client was told are stored").await;
    let etag = slow.current(&p).await.unwrap().unwrap().etag;
    let id = u.id;
    let task = begin_slow_complete(f, at_slow, &slow, u, etag, Precondition::Any).await;
    let at_sweeper = Uploads::new(sweeper.clone(), hour);
    let marked = at_sweeper.get(&id).await.unwrap().unwrap();
    assert!(marked.record.completing_ns.is_some(), "the complete marks its record before it claims");
    mark(&sweeper, &marked, now_ns() - 2 * 3600 * 1_000_000_000).await;
    let swept = at_sweeper.sweep().await.unwrap();
    let done = task.await.unwrap();
    for i in 0..f.n {
        slow.provider_named(&format!("p{i}")).unwrap().set_faults(Faults::default());
    }
    (swept, done, slow, p)
}

#[tokio::test]
async fn a_complete_that_outlives_its_patience_while_a_sweep_lets_its_parts_go_fails_rather_than_commit() {
    let f = Folders::new();
    let (swept, done, store, _) = a_stalled_complete_meets_a_sweep(&f, |i| i).await;
    assert_eq!((swept.expired, swept.parts_removed), (1, 1), "{swept:?}");
    // The complete then fails: no object was made of parts that are gone.
    assert!(matches!(done, Err(UploadError::NoSuchUpload)), "{done:?}");
    assert!(store.current("b/k").await.unwrap().is_none(), "the key stays absent");
    // Nor does a folder rebuilt from the providers find it.
    let c = f.open("c").await;
    c.recover(&NoProgress).await.unwrap();
    assert!(c.current("b/k").await.unwrap().is_none(), "no manifest of the failed complete is left to recover");
}

#[tokio::test]
async fn a_stalled_complete_with_two_providers_configured_at_one_place_fails_and_deletes_nothing_else() {
    let f = Folders::with(4);
    // p3's root is mistyped as p2's folder: the sweep cannot hear from every provider, so it
    // keeps the parts; the fenced complete fails all the same, and removes only its own
    // manifest (named by a version id of its own).
    let (swept, done, store, p) = a_stalled_complete_meets_a_sweep(&f, |i| if i == 3 { 2 } else { i }).await;
    assert_eq!((swept.expired, swept.parts_removed), (1, 0), "{swept:?}");
    assert!(matches!(done, Err(UploadError::NoSuchUpload)), "{done:?}");
    assert!(store.current("b/k").await.unwrap().is_none());
    // With the config put right, a folder rebuilt from the providers finds the part whole and
    // no object.
    let right = f.open("b").await;
    right.recover(&NoProgress).await.unwrap();
    assert!(right.current("b/k").await.unwrap().is_none());
    assert_eq!(read(&right, &p).await, b"bytes the client was told are stored");
}

#[tokio::test]
async fn an_upload_whose_record_does_not_parse_is_passed_over_and_keeps_its_parts() {
    let f = Folders::new();
    let store = f.open("a").await;
    let expiry = Duration::from_secs(1);
    let uploads = Uploads::new(store.clone(), expiry);
    let u = new_upload(&uploads, now_ns() - 3600 * 1_000_000_000).await; // long past the expiry
    let p = part(&store, &u, 1, b"kept").await;
    // The record reads but is not a record (damaged, or written by something else).
    let record = format!("{UPLOADS}{}", u.id.to_hex());
    store.put(&record, &b"not a record"[..], PutOptions::default(), &NoProgress).await.unwrap();
    // Past the expiry for the part too, so only the record's presence can keep it.
    tokio::time::sleep(expiry + Duration::from_millis(200)).await;

    assert_eq!(uploads.sweep().await.unwrap(), Default::default(), "nothing is decided about it");
    assert_eq!(names(&store, PARTS).await, vec![p]);
    assert!(store.current(&record).await.unwrap().is_some(), "the record stays for someone to look at");
}
