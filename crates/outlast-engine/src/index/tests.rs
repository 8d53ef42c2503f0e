//! What every index backend must do, as the engine relies on it: each test runs against a
//! fresh index of every backend this build has ([`backends`]). A new backend joins the list
//! and passes the suite unchanged.

use std::time::Duration;

use outlast_codec::{VersionId, VersionStamp};
use outlast_provider::HealthStats;

use super::*;
use crate::error::EngineError;

/// A fresh, empty index of each backend, with what keeps it alive.
fn backends() -> Vec<(tempfile::TempDir, Box<dyn Index>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteIndex::open(dir.path()).unwrap();
    vec![(dir, Box::new(sqlite))]
}

fn entry(name: &str, time_ns: u64) -> IndexEntry {
    IndexEntry {
        name: name.into(),
        stamp: VersionStamp { time_ns, vid: VersionId::generate() },
        size: 1,
        content_type: None,
        etag: "e".into(),
        sealed_manifest: vec![1],
        placed: None,
    }
}

fn placed(providers: &[&str]) -> Placed {
    Placed {
        size: 10,
        segment_size: 4,
        k: 1,
        n: providers.len() as u16,
        segments_per_part: 2,
        providers: providers.iter().map(|p| p.to_string()).collect(),
    }
}

/// A move of `e`'s shards off `p` to a manifest `[2]` that places them on `now_on`.
fn move_of(e: &IndexEntry, now_on: &[&str]) -> ShardMove {
    ShardMove {
        name: e.name.clone(),
        vid: e.stamp.vid,
        was: e.sealed_manifest.clone(),
        now: vec![2],
        from: "p".into(),
        manifest_blob: "m/x".into(),
        added: vec![],
        placed: placed(now_on),
    }
}

fn pending(vid: VersionId, blobs: Vec<BlobRef>) -> PendingWrite {
    PendingWrite {
        vid,
        owner: "me".into(),
        pid: std::process::id(),
        started_ns: 0,
        expires_ns: u64::MAX >> 1,
        claimed: false,
        blobs,
    }
}

fn blob(provider: &str, name: &str, size: u64) -> BlobRef {
    BlobRef { provider: provider.into(), blob: name.into(), size }
}

pub(super) async fn commit(
    index: &dyn Index,
    e: &IndexEntry,
    blobs: Vec<BlobRef>,
    tomb: bool,
) -> Result<Vec<BlobRef>, EngineError> {
    index.begin_pending(&pending(e.stamp.vid, blobs.clone())).await.unwrap();
    index.commit(e, &blobs, tomb, Precondition::Any, None).await
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    for (_dir, index) in backends() {
        let index = &*index;
        let one = |b: &str| vec![blob("p", b, 1)];
        assert!(commit(index, &entry("a", 10), one("s/new"), false).await.unwrap().is_empty());
        assert!(matches!(commit(index, &entry("a", 5), one("s/old"), false).await, Err(EngineError::Superseded { .. })));
        assert_eq!(index.get("a").await.unwrap().unwrap().stamp.time_ns, 10);
        assert_eq!(index.blobs_on("p").await.unwrap(), one("s/new"));
        // A newer one replaces it and hands back the replaced blobs as garbage.
        assert_eq!(commit(index, &entry("a", 11), one("s/newer"), false).await.unwrap(), one("s/new"));
        // A tombstone is a version too: nothing older comes back after it.
        commit(index, &entry("a", 12), one("m/tomb"), true).await.unwrap();
        assert!(index.get("a").await.unwrap().is_none());
        assert_eq!(index.latest_stamp("a").await.unwrap(), Some(12));
        assert!(matches!(commit(index, &entry("a", 11), vec![], false).await, Err(EngineError::Superseded { .. })));
    }
}

#[tokio::test]
async fn a_provider_s_blobs_are_counted_and_sampled_without_being_held() {
    for (_dir, index) in backends() {
        let e = entry("a", 10);
        let mut blobs: Vec<BlobRef> = (0..100).map(|i| blob("p", &format!("s/{i:03}"), 2)).collect();
        blobs.push(blob("p", "m/x", 5));
        blobs.push(blob("q", "s/q", 7));
        commit(&*index, &e, blobs, false).await.unwrap();
        assert_eq!(index.count_blobs_on("p").await.unwrap(), BlobCount { blobs: 101, shards: 100, bytes: 205 });
        let names: Vec<String> = index.sample_blobs_on("p", 3).await.unwrap().into_iter().map(|b| b.blob).collect();
        assert_eq!(names, ["m/x", "s/049", "s/099"]);
        assert_eq!(index.sample_blobs_on("q", 3).await.unwrap().len(), 1);
        assert!(index.sample_blobs_on("none", 3).await.unwrap().is_empty());
        let mut walked = Vec::new();
        let mut pages = index.blob_pages("p");
        while let Some(page) = pages.next_page().await.unwrap() {
            walked.extend(page.into_iter().map(|b| b.blob));
        }
        assert_eq!(walked.len(), 101);
        assert!(walked.windows(2).all(|w| w[0] < w[1]), "in name order");
        assert!(index.is_name_recorded("s/q").await.unwrap() && !index.is_name_recorded("s/none").await.unwrap());
        // Forgotten only when recorded at the size given.
        assert_eq!(index.forget_blobs(&[blob("p", "s/000", 2), blob("p", "s/001", 3)]).await.unwrap(), 1);
        assert!(index.forget_blob("q", "s/q").await.unwrap());
        assert!(!index.forget_blob("q", "s/q").await.unwrap(), "forgotten once");
        assert_eq!(index.blobs_of(&e.stamp.vid).await.unwrap().len(), 100);
    }
}

#[tokio::test]
async fn a_write_whose_pending_record_gc_removed_cannot_commit() {
    for (_dir, index) in backends() {
        let e = entry("a", 10);
        assert!(matches!(index.commit(&e, &[], false, Precondition::Any, None).await, Err(EngineError::State(_))));
        assert!(matches!(index.add_pending_blobs(&e.stamp.vid, &[]).await, Err(EngineError::State(_))));
        assert!(index.get("a").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_pending_write_names_its_blobs_before_they_are_written() {
    for (_dir, index) in backends() {
        let vid = VersionId::generate();
        index.begin_pending(&pending(vid, vec![blob("p", "s/1", 0)])).await.unwrap();
        index.add_pending_blobs(&vid, &[blob("q", "s/2", 0)]).await.unwrap();
        let named: Vec<String> = index.pending_blobs(&vid).await.unwrap().into_iter().map(|b| b.blob).collect();
        assert_eq!(named, ["s/1", "s/2"]);
        assert!(index.is_name_recorded("s/2").await.unwrap(), "a name in progress is live");
        index.end_pending(&vid).await.unwrap();
        assert!(index.pending().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_blob_is_recorded_only_for_the_manifest_it_was_written_for() {
    for (_dir, index) in backends() {
        let e = entry("a", 10);
        commit(&*index, &e, vec![], false).await.unwrap();
        let b = |p: &str| blob(p, "s/x", 1);
        assert!(index.add_blob(&e.stamp.vid, &e.sealed_manifest, &b("p")).await.unwrap());
        // Another move rewrote the manifest: a blob written for the old one is not recorded.
        let moved = move_of(&e, &["q", "r"]);
        assert!(index.move_shards(&moved).await.unwrap());
        assert!(!index.move_shards(&moved).await.unwrap(), "the manifest is no longer the one moved from");
        assert!(!index.add_blob(&e.stamp.vid, &e.sealed_manifest, &b("q")).await.unwrap());
        assert!(index.add_blob(&e.stamp.vid, &[2], &b("q")).await.unwrap());
        assert_eq!(index.blobs_of(&e.stamp.vid).await.unwrap(), vec![b("q")]);
        assert!(index.is_current(&e.stamp.vid).await.unwrap());
        // A tombstone copy is recorded only while the tombstone is current.
        assert!(!index.add_tombstone_copy(&e.stamp.vid, &b("r")).await.unwrap());
    }
}

#[tokio::test]
async fn a_claimed_write_can_never_commit() {
    for (_dir, index) in backends() {
        let e = entry("a", 10);
        index.begin_pending(&pending(e.stamp.vid, vec![])).await.unwrap();
        let seen = index.pending().await.unwrap().remove(0);
        assert!(index.claim_pending(&seen).await.unwrap());
        assert!(!index.claim_pending(&seen).await.unwrap(), "claimed twice");
        assert!(!index.renew_pending(&e.stamp.vid, "me", u64::MAX >> 1).await.unwrap(), "renewed after the claim");
        assert!(matches!(index.commit(&e, &[], false, Precondition::Any, None).await, Err(EngineError::State(_))));
        // Still listed (its blobs may not all be gone yet), as claimed; a later gc carries on.
        let claimed = index.pending().await.unwrap().remove(0);
        assert!(claimed.claimed && !claimed.is_live(1));
        assert!(index.claim_pending(&claimed).await.unwrap());
    }
}

#[tokio::test]
async fn an_intent_lives_until_its_expiry_or_its_process_and_a_renewal_keeps_it_from_a_claim() {
    for (_dir, index) in backends() {
        let vid = VersionId::generate();
        let mut p = pending(vid, vec![]);
        p.expires_ns = 100;
        index.begin_pending(&p).await.unwrap();
        assert!(p.is_live(99) && !p.is_live(100), "judged by its expiry while its process runs");
        let dead_process = PendingWrite { pid: u32::MAX - 1, ..p.clone() };
        assert!(!dead_process.is_live(0), "a holder that is gone ends it before its expiry");
        let no_process = PendingWrite { pid: 0, ..p.clone() };
        assert!(no_process.is_live(99) && !no_process.is_live(100), "held by no process: its expiry alone");
        // gc read it expired; its holder renewed it before the claim: the claim misses.
        let seen = index.pending().await.unwrap().remove(0);
        assert!(!index.renew_pending(&vid, "someone else", 200).await.unwrap(), "only its owner renews it");
        assert!(index.renew_pending(&vid, "me", 200).await.unwrap());
        assert!(!index.claim_pending(&seen).await.unwrap());
        assert!(index.pending().await.unwrap()[0].is_live(150));
        // A write that gave up is released: the next claim takes it at once.
        index.release_pending(&vid).await.unwrap();
        let released = index.pending().await.unwrap().remove(0);
        assert!(!released.is_live(2));
        assert!(index.claim_pending(&released).await.unwrap());
    }
}

#[tokio::test]
async fn jobs_walk_the_objects_a_page_at_a_time_in_name_order_within_a_prefix() {
    for (_dir, index) in backends() {
        let names = (0..2 * PAGE + 345).map(|i| format!("a/{i:05}")).chain(["a", "a0", "b/1"].map(String::from));
        let mut versions: Vec<Recovered> =
            names.map(|n| Recovered { entry: entry(&n, 1), blobs: vec![], tombstone: false }).collect();
        versions.push(Recovered { entry: entry("gone", 1), blobs: vec![], tombstone: true });
        let adopted = index.adopt_all(&versions, &[]).await.unwrap();
        assert!(adopted.iter().all(|a| *a == Adopted::New));
        let mut pages = index.object_pages("a/");
        let mut seen = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            assert!(page.len() <= PAGE);
            seen.extend(page.into_iter().map(|e| e.name));
        }
        let expected: Vec<String> = (0..2 * PAGE + 345).map(|i| format!("a/{i:05}")).collect();
        assert_eq!(seen, expected);
        let after: Vec<String> = index.objects_page("", Some("a/02344"), 3).await.unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(after, ["a0", "b/1"]);
        let mut tombs = index.tombstone_pages();
        assert_eq!(tombs.next_page().await.unwrap().unwrap()[0].0, "gone");
        assert!(tombs.next_page().await.unwrap().is_none());
        assert_eq!(index.total_size().await.unwrap(), 2 * PAGE as u64 + 345 + 3);
        assert!(index.has_versions().await.unwrap());
    }
    for (_dir, index) in backends() {
        assert!(!index.has_versions().await.unwrap());
    }
}

#[tokio::test]
async fn a_recovered_version_is_taken_in_only_when_newer_or_a_newer_revision() {
    for (_dir, index) in backends() {
        let old = entry("a", 10);
        let found = |e: &IndexEntry, provider: &str| Recovered {
            entry: e.clone(),
            blobs: vec![blob(provider, &format!("s/{}", e.stamp.time_ns), 1)],
            tombstone: false,
        };
        assert_eq!(index.adopt_all(&[found(&old, "p")], &["p".into()]).await.unwrap(), [Adopted::New]);
        assert_eq!(index.adopt_all(&[found(&old, "p")], &["p".into()]).await.unwrap(), [Adopted::Same]);
        let revised = IndexEntry { sealed_manifest: vec![9], ..old.clone() };
        assert_eq!(index.adopt_all(&[found(&revised, "q")], &["q".into()]).await.unwrap(), [Adopted::Updated]);
        assert_eq!(index.get("a").await.unwrap().unwrap().sealed_manifest, [9]);
        assert_eq!(index.blobs_of(&old.stamp.vid).await.unwrap().len(), 2, "p's row kept, q's taken from q's listing");
        let newer = entry("a", 20);
        assert_eq!(index.adopt_all(&[found(&newer, "p")], &["p".into()]).await.unwrap(), [Adopted::Newer]);
        assert_eq!(index.adopt_all(&[found(&old, "p")], &["p".into()]).await.unwrap(), [Adopted::Older]);
        assert!(index.blobs_of(&old.stamp.vid).await.unwrap().is_empty(), "the replaced version's rows went");
    }
}

#[tokio::test]
async fn garbage_draining_and_markers_are_recorded_until_forgotten() {
    for (_dir, index) in backends() {
        index.note_garbage(&[blob("p", "s/1", 1), blob("q", "s/2", 1)], 5).await.unwrap();
        index.forget_garbage("p", "s/1").await.unwrap();
        assert_eq!(index.garbage().await.unwrap(), [("q".to_string(), "s/2".to_string())].into_iter().collect());
        index.set_draining("p", "r").await.unwrap();
        assert_eq!(index.draining().await.unwrap(), [("p".to_string(), "r".to_string())]);
        index.clear_draining("p").await.unwrap();
        assert!(index.draining().await.unwrap().is_empty());
        assert!(!index.knows_provider("p").await.unwrap());
        index.record_marker("p", 1).await.unwrap();
        index.record_marker("p", 2).await.unwrap();
        assert!(index.knows_provider("p").await.unwrap());
        commit(&*index, &entry("a", 1), vec![blob("q", "s/3", 1)], false).await.unwrap();
        assert!(index.knows_provider("q").await.unwrap(), "a provider holding a blob is known");
    }
}

#[tokio::test]
async fn health_rows_follow_the_configured_providers() {
    for (_dir, index) in backends() {
        let h = HealthStats { ok: 3, ..Default::default() };
        let wait = Duration::from_secs(1);
        index.save_health(&[("a".into(), h.clone()), ("b".into(), h.clone())], wait).await.unwrap();
        index.save_health(&[("a".into(), h.clone())], wait).await.unwrap(); // `b` was removed from the config
        let names: Vec<String> = index.load_health().await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a"]);
    }
}

#[tokio::test]
async fn a_commit_takes_effect_only_where_its_precondition_holds() {
    for (_dir, index) in backends() {
        let index = &*index;
        let conditional = async |e: &IndexEntry, tomb: bool, pre: Precondition| {
            index.begin_pending(&pending(e.stamp.vid, vec![])).await.unwrap();
            let r = index.commit(e, &[], tomb, pre, None).await;
            if r.is_err() {
                index.end_pending(&e.stamp.vid).await.unwrap();
            }
            r
        };
        let first = entry("a", 10);
        assert!(conditional(&first, false, Precondition::Absent).await.is_ok(), "none yet");
        let racing = entry("a", 11);
        assert!(matches!(conditional(&racing, false, Precondition::Absent).await, Err(EngineError::Conflict(_))));
        assert_eq!(index.get("a").await.unwrap().unwrap().stamp, first.stamp, "the loser changed nothing");
        let stale = Precondition::Current(VersionId::generate());
        assert!(matches!(conditional(&entry("a", 12), false, stale).await, Err(EngineError::Conflict(_))));
        let second = entry("a", 13);
        assert!(conditional(&second, false, Precondition::Current(first.stamp.vid)).await.is_ok());
        // A deleted name has no current version.
        conditional(&entry("a", 14), true, Precondition::Current(second.stamp.vid)).await.unwrap();
        assert!(conditional(&entry("a", 15), false, Precondition::Absent).await.is_ok());
    }
}

#[tokio::test]
async fn a_fenced_commit_takes_effect_only_while_its_fence_is_at_its_version() {
    for (_dir, index) in backends() {
        let index = &*index;
        let fenced = async |e: &IndexEntry, fence: &Fence| {
            index.begin_pending(&pending(e.stamp.vid, vec![])).await.unwrap();
            let r = index.commit(e, &[], false, Precondition::Any, Some(fence)).await;
            if r.is_err() {
                index.end_pending(&e.stamp.vid).await.unwrap();
            }
            r
        };
        let record = entry("record", 10);
        commit(index, &record, vec![], false).await.unwrap();
        let fence = Fence { name: "record".into(), vid: record.stamp.vid };
        assert!(fenced(&entry("a", 11), &fence).await.is_ok(), "the record is where the write found it");
        // The record removed (a tombstone), then written again: either way the fence is gone.
        commit(index, &entry("record", 12), vec![], true).await.unwrap();
        assert!(matches!(fenced(&entry("a", 13), &fence).await, Err(EngineError::Fenced(n)) if n == "record"));
        commit(index, &entry("record", 14), vec![], false).await.unwrap();
        assert!(matches!(fenced(&entry("a", 15), &fence).await, Err(EngineError::Fenced(_))));
        assert_eq!(index.get("a").await.unwrap().unwrap().stamp.time_ns, 11, "the fenced-off writes changed nothing");
    }
}

#[tokio::test]
async fn a_placement_is_kept_beside_its_manifest_and_follows_a_move() {
    for (_dir, index) in backends() {
        let e = IndexEntry { placed: Some(placed(&["p", "q"])), ..entry("a", 10) };
        commit(&*index, &e, vec![], false).await.unwrap();
        assert_eq!(index.get("a").await.unwrap().unwrap().placed, e.placed);
        assert_eq!(index.objects_page("", None, 10).await.unwrap()[0].placed, e.placed);
        let moved = move_of(&e, &["r", "q"]);
        assert!(index.move_shards(&moved).await.unwrap());
        assert_eq!(index.get("a").await.unwrap().unwrap().placed, Some(moved.placed.clone()));
        // A recovered version brings its own; the same version without one keeps none.
        let recovered = IndexEntry { placed: Some(placed(&["s", "q"])), sealed_manifest: vec![3], ..e.clone() };
        index.adopt_all(&[Recovered { entry: recovered.clone(), blobs: vec![], tombstone: false }], &[]).await.unwrap();
        assert_eq!(index.get("a").await.unwrap().unwrap().placed, recovered.placed);
        assert_eq!(placed(&["s", "q"]).layout().unwrap().part_count(), 2);
    }
}
