//! Surviving providers through the binary: repair (interrupted by kill -9 and resumed), on
//! local-folder providers.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn repair_killed_mid_way_resumes_and_rebuilds_a_wiped_provider() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let bodies = put_objects(d, 4, 4 << 20, 10);
    let wiped = d.join("stores/local3");
    std::fs::remove_dir_all(&wiped).unwrap();
    // Never taken back silently (it could be an unmounted disk): reset says it is meant to be.
    let out = outlast(d).arg("repair").output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("local3") && said.contains("does not exist") && !wiped.exists(), "{said}");
    run_ok(d, &["provider", "reset", "local3"]);

    // About 2 MiB to rebuild per object at 2 MiB/s: kill it once the first object is done
    // (its manifest copy is written last), well before the rest.
    let mut child = outlast(d).args(["repair", "--limit-rate", "2M"]).spawn().unwrap();
    let manifests = || files_under(&wiped).into_iter().filter(|p| p.parent().unwrap().ends_with("m")).count();
    let start = Instant::now();
    while manifests() == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The copy is recorded in the index just after it is written: give a loaded machine time
    // for that (the next object takes a second at this rate).
    std::thread::sleep(Duration::from_millis(250));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(manifests() > 0, "the first repair never finished an object");

    let out = run_ok(d, &["--json", "repair"]);
    let r = json(&out);
    assert!(r["objects_in_debt"].as_u64().unwrap() < 4, "the killed run's work was lost: {r}");
    assert_eq!(r["remaining"], 0, "{r}");
    let again = json(&run_ok(d, &["--json", "repair"]));
    assert_eq!(again["objects_in_debt"], 0, "{again}");

    // local3 holds its shards again: read everything with two of the others gone.
    std::fs::remove_dir_all(d.join("stores/local1")).unwrap();
    std::fs::remove_dir_all(d.join("stores/local2")).unwrap();
    check_objects(d, &bodies);
}

#[test]
fn repair_with_nothing_owed_changes_nothing_and_bad_rates_are_refused() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("in.bin"), data(10_000, 1)).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    let r = json(&run_ok(d, &["--json", "repair"]));
    assert_eq!((r["objects"].as_u64(), r["objects_in_debt"].as_u64(), r["bytes_written"].as_u64()), (Some(1), Some(0), Some(0)));
    let err = String::from_utf8(outlast(d).args(["repair", "--limit-rate", "fast"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("not a rate"), "{err}");
}

#[test]
fn scrub_exits_2_on_damage_and_repair_clears_it() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let body = data(3_000_000, 4);
    std::fs::write(d.join("in.bin"), &body).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    assert!(String::from_utf8(run_ok(d, &["scrub"]).stdout).unwrap().contains("CORRUPT"));
    let shard = files_under(&d.join("stores/local2")).into_iter().find(|p| p.parent().unwrap().ends_with("s")).unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&shard, bytes).unwrap();

    let out = outlast(d).args(["--json", "scrub", "--sample", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let r = json(&out);
    let local2 = r["providers"].as_array().unwrap().iter().find(|p| p["name"] == "local2").unwrap().clone();
    assert_eq!(local2["corrupt"], 1, "{r}");
    run_ok(d, &["repair"]);
    run_ok(d, &["scrub"]);
    assert!(run_ok(d, &["get", "x"]).stdout == body);
    let err = String::from_utf8(outlast(d).args(["scrub", "--sample", "2"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("not a fraction"), "{err}");
}

#[test]
fn drill_exits_2_only_when_something_would_be_lost() {
    let dir = init_store("2", "4");
    let d = dir.path();
    std::fs::write(d.join("in.bin"), data(300_000, 5)).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    let ok = String::from_utf8(run_ok(d, &["drill", "local1", "local2"]).stdout).unwrap();
    assert!(ok.contains("all 1 objects read back intact") && ok.contains("one failure from loss"), "{ok}");
    let out = outlast(d).args(["--json", "drill", "local1", "local2", "local3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["lost"][0], "x");
    let err = String::from_utf8(outlast(d).args(["drill", "local9"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("no provider named `local9`"), "{err}");
    // It changed nothing: every provider still holds its shard.
    assert!(run_ok(d, &["get", "x"]).stdout == data(300_000, 5));
}

#[test]
fn leaving_a_provider_add_evacuate_killed_and_resumed_then_remove() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let bodies = put_objects(d, 6, 6 << 20, 20);
    let new_root = d.join("stores/local4");
    let root_opt = format!("root={}", new_root.display());
    run_ok(d, &["provider", "add", "local4", "--scheme", "fs", "--option", &root_opt, "--domain", "elsewhere"]);
    let toml = std::fs::read_to_string(d.join("outlast.toml")).unwrap();
    assert!(toml.contains("# write_quorum") && toml.contains("name = \"local4\""), "comments lost or entry missing:\n{toml}");
    let err = run_err(d, &["provider", "remove", "local1"]);
    assert!(err.contains("still holds") && err.contains("evacuate"), "{err}");
    let err = run_err(d, &["provider", "add", "local4", "--scheme", "fs", "--option", &root_opt, "--domain", "x"]);
    assert!(err.contains("used twice"), "{err}");

    // Kill the evacuation once its first object is nearly switched over (its manifest is
    // written to the new provider after its blobs), then run it again.
    let mut child = outlast(d).args(["evacuate", "local1", "--to", "local4"]).spawn().unwrap();
    let manifests = || files_under(&new_root).into_iter().filter(|p| p.parent().unwrap().ends_with("m")).count();
    let start = Instant::now();
    while manifests() == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let r = json(&run_ok(d, &["--json", "evacuate", "local1", "--to", "local4"]));
    assert!(r["objects_moved"].as_u64().unwrap() > 0, "the kill came after the end: nothing was resumed: {r}");
    // Blobs that landed before the kill are not moved again (the first object's, at least).
    let moved_again = r["blobs_copied"].as_u64().unwrap() + r["blobs_rebuilt"].as_u64().unwrap();
    assert!(moved_again < 6, "the killed run's work was lost: {r}");
    assert_eq!(r["remaining"], 0, "{r}");
    // Every moved object's blob (one part each) was read back from local4 and checked,
    // including one that landed before the kill.
    assert_eq!(r["verified"], r["objects_moved"], "{r}");
    if r["blobs_copied"].as_u64().unwrap() > 0 {
        assert_eq!(r["egress_ratio"], 1.0, "{r}");
    }
    run_ok(d, &["provider", "remove", "local1"]);
    let providers = json(&run_ok(d, &["--json", "providers"]));
    let names: Vec<&str> = providers.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local2", "local3", "local4"]);
    // local1 is gone for good; everything reads with local2 gone too.
    std::fs::remove_dir_all(d.join("stores/local1")).unwrap();
    std::fs::remove_dir_all(d.join("stores/local2")).unwrap();
    check_objects(d, &bodies);
}

#[test]
fn a_provider_whose_blobs_vanished_cannot_be_removed_until_evacuated() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let bodies = put_objects(d, 2, 100_000, 70);
    let root_opt = format!("root={}", d.join("stores/local4").display());
    run_ok(d, &["provider", "add", "local4", "--scheme", "fs", "--option", &root_opt, "--domain", "elsewhere"]);
    // local1's data vanishes and it cannot take writes (its root is now a file): repair
    // forgets what it held but cannot put it back.
    std::fs::remove_dir_all(d.join("stores/local1")).unwrap();
    std::fs::write(d.join("stores/local1"), b"not a folder").unwrap();
    let out = outlast(d).args(["--json", "repair"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let err = run_err(d, &["provider", "remove", "local1"]);
    assert!(err.contains("placed in 2 objects"), "{err}");
    let out = outlast(d).args(["--json", "evacuate", "local1", "--to", "local4"]).output().unwrap();
    // Done: local1 cannot even be opened (its root is a file), so it is unreachable and asked
    // nothing; its shards are rebuilt from the others.
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!((r["objects_moved"].as_u64(), r["blobs_rebuilt"].as_u64()), (Some(2), Some(2)), "{r}");
    run_ok(d, &["provider", "remove", "local1"]);
    check_objects(d, &bodies);
}
