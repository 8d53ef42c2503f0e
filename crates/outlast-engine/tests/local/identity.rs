//! Provider identity markers on local folders: a location that is not the configured provider
//! (two providers at one place, a provider renamed by hand, another store's folder, a wiped
//! one, a mistyped root) is unavailable for the command and never written to; `reset` takes a
//! wiped location back on purpose.

use crate::common;

use common::*;
use outlast_engine::{Config, EngineError, Store};
use outlast_provider::HealthState;

fn unavailable_reason(store: &Store, name: &str) -> String {
    let h = store.health().into_iter().find(|h| h.name == name).unwrap();
    assert_eq!(h.state, HealthState::Unreachable, "{h:?}");
    h.reason
}

#[tokio::test]
async fn two_providers_at_one_folder_leave_one_of_them_unavailable_and_untouched() {
    let f = Fixture::new(2, 3);
    let text = f.config_text(&[]);
    let aliased = text.replace(&format!("\"{}\"", f.provider_dir(1).display()), &format!("\"{}/\"", f.provider_dir(0).display()));
    let store = f.open_unvalidated(&aliased).await;
    let d = data(120_000, 1);
    let r = put(&store, "important", &d).await.unwrap();
    // p1 answers with p0's marker: unavailable, so its shard is owed, not written into p0's folder.
    assert_eq!(r.missing, ["p1"], "{r:?}");
    assert!(unavailable_reason(&store, "p1").contains("marker of `p0`"));
    assert_eq!(get(&store, "important").await.unwrap(), d);
    let in_p0 = std::fs::read_dir(f.provider_dir(0).join("s")).unwrap().count();
    assert_eq!(in_p0, 1, "p0's folder holds only its own shard");
    assert!(
        std::fs::read_dir(f.provider_dir(1)).unwrap().all(|e| e.unwrap().file_name() == "i"),
        "p1's own folder was written to"
    );
}

#[tokio::test]
async fn a_provider_renamed_by_hand_is_recognised_and_the_message_says_to_rename_it_back() {
    let f = Fixture::new(2, 3);
    put(&f.store().await, "x", &data(5000, 2)).await.unwrap();
    let renamed = f.config_text(&[]).replace("name = \"p2\"", "name = \"archive\"");
    let store = f.open_unvalidated(&renamed).await;
    assert!(get(&store, "x").await.is_ok());
    store.provider_named("archive").unwrap().verify_identity().await.unwrap_err();
    let why = unavailable_reason(&store, "archive");
    assert!(why.contains("is provider `p2`") && why.contains("rename it back to `p2`"), "{why}");
}

#[tokio::test]
async fn another_stores_folder_is_never_taken() {
    let mine = Fixture::new(2, 3);
    let theirs = Fixture::new(2, 3);
    put(&theirs.store().await, "theirs", &data(5000, 3)).await.unwrap();
    let before = theirs.blob_files();
    // My p1 points at their p1.
    let text = mine
        .config_text(&[])
        .replace(&format!("\"{}\"", mine.provider_dir(1).display()), &format!("\"{}\"", theirs.provider_dir(1).display()));
    let store = mine.open_unvalidated(&text).await;
    let r = put(&store, "mine", &data(5000, 4)).await.unwrap();
    assert_eq!(r.missing, ["p1"], "{r:?}");
    assert!(unavailable_reason(&store, "p1").contains("another Outlast store"));
    let gc = gc(&store, 0).await;
    assert!(gc.deletions.iter().all(|d| d.provider != "p1"), "{gc:?}");
    assert_eq!(theirs.blob_files(), before, "their folder changed");
}

#[tokio::test]
async fn a_mistyped_or_unmounted_root_is_never_created_and_the_rest_work() {
    let f = Fixture::new(2, 3);
    put(&f.store().await, "x", &data(5000, 5)).await.unwrap();
    let missing = f.root.join("mnt/usb-disk");
    let text = f.config_text(&[]).replace(&format!("\"{}\"", f.provider_dir(2).display()), &format!("\"{}\"", missing.display()));
    let store = Store::open_with_key(Config::parse(&text, &f.root.join("outlast.toml")).unwrap(), f.key.clone()).await.unwrap();
    assert_eq!(store.list("").await.unwrap().len(), 1);
    let reports = store.providers().await.unwrap();
    let p2 = reports.iter().find(|r| r.name == "p2").unwrap();
    assert!(!p2.reachable && p2.reason.contains("does not exist"), "{p2:?}");
    assert_eq!(get(&store, "x").await.unwrap(), data(5000, 5));
    put(&store, "y", &data(5000, 6)).await.unwrap();
    assert!(!missing.exists() && !f.root.join("mnt").exists(), "a missing root was created");
}

#[tokio::test]
async fn a_wiped_provider_is_unavailable_until_reset_and_reset_refuses_a_folder_in_use() {
    let f = Fixture::new(2, 3);
    let d = data(500_000, 7); // 3 parts: p1 holds 3 shard blobs and a manifest
    put(&f.store().await, "x", &d).await.unwrap();
    // Wiped (its marker with it) and recreated empty: not taken silently.
    let backup = f.root.join("p1-backup");
    std::fs::rename(f.provider_dir(1), &backup).unwrap();
    std::fs::create_dir(f.provider_dir(1)).unwrap();
    std::fs::write(f.provider_dir(1).join("unrelated.txt"), b"x").unwrap();
    let store = f.store().await;
    let err = store.provider_named("p1").unwrap().verify_identity().await.unwrap_err().to_string();
    assert!(err.contains("everything it held is gone") && err.contains("provider reset p1"), "{err}");
    // Everything the index knew there is gone: that is an ended account until said otherwise.
    assert_eq!(store.health().into_iter().find(|h| h.name == "p1").unwrap().state, HealthState::Terminated);
    // Reset refuses a location holding Outlast blobs: here p0's, copied in by mistake.
    let p0_shards = f.provider_dir(0).join("s");
    let copied = f.provider_dir(1).join("s");
    std::fs::create_dir_all(&copied).unwrap();
    for e in std::fs::read_dir(&p0_shards).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copied.join(e.file_name())).unwrap();
    }
    assert!(matches!(store.reset_provider("p1").await, Err(EngineError::LocationInUse { .. })));
    std::fs::remove_dir_all(&copied).unwrap();
    store.reset_provider("p1").await.unwrap();
    drop(store);
    // Taken back: repair refills it, and it reads with another provider gone.
    let store = f.store().await;
    let r = store.repair(&Default::default(), &outlast_engine::progress::NoProgress).await.unwrap();
    assert_eq!(r.remaining, 0, "{r:?}");
    assert!(f.provider_dir(1).join("unrelated.txt").exists());
    std::fs::remove_dir_all(f.provider_dir(0)).unwrap();
    assert_eq!(get(&f.store().await, "x").await.unwrap(), d);
    std::fs::remove_dir_all(backup).unwrap();
}

#[tokio::test]
async fn a_store_from_before_markers_gets_them_from_its_own_manifests() {
    let f = Fixture::new(2, 3);
    let d = data(20_000, 8);
    put(&f.store().await, "old", &d).await.unwrap();
    // As a store written before markers existed: no `i/`, and a state folder that knows
    // nothing of markers.
    for i in 0..3 {
        std::fs::remove_dir_all(f.provider_dir(i).join("i")).unwrap();
    }
    std::fs::remove_dir_all(f.root.join(".outlast")).unwrap();
    let store = f.store().await;
    assert!(store.providers().await.unwrap().iter().all(|r| r.reachable));
    for i in 0..3 {
        assert!(f.provider_dir(i).join("i").is_dir(), "p{i} got no marker");
    }
}

#[tokio::test]
async fn identity_verdicts_expire_a_refused_location_is_taken_back_and_a_swapped_one_is_noticed() {
    use outlast_provider::{Faults, IdentityRecheck};
    let f = Fixture::new(2, 3);
    let store = f.store().await;
    let now = std::time::Duration::ZERO;
    store.set_identity_recheck(IdentityRecheck { accepted: std::time::Duration::from_secs(3600), refused: now });
    // p1 answers with corrupt bytes while its marker is checked: refused, not written to.
    let p1 = store.provider_named("p1").unwrap();
    p1.set_faults(Faults { corrupt: true, ..Default::default() });
    let r = put(&store, "a", &data(5000, 1)).await.unwrap();
    assert_eq!(r.missing, ["p1"], "{r:?}");
    assert!(unavailable_reason(&store, "p1").contains("does not open"));
    // It comes back honest: the refusal does not stand for the rest of the process.
    p1.set_faults(Faults::default());
    let r = put(&store, "b", &data(5000, 2)).await.unwrap();
    assert!(r.missing.is_empty(), "{r:?}");
    // While accepted verdicts stand, a swap under the process goes unseen; once they expire
    // it is noticed: p1's folder now answers with p0's marker.
    let marker = outlast_codec::names::marker_blob(&f.key.store_keys());
    std::fs::copy(f.provider_dir(0).join(&marker), f.provider_dir(1).join(&marker)).unwrap();
    store.set_identity_recheck(IdentityRecheck { accepted: now, refused: now });
    let r = put(&store, "c", &data(5000, 3)).await.unwrap();
    assert_eq!(r.missing, ["p1"], "{r:?}");
    assert!(unavailable_reason(&store, "p1").contains("marker of `p0`"));
    for (name, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(get(&store, name).await.unwrap(), data(5000, seed));
    }
}
