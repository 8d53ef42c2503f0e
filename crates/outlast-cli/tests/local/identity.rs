//! Providers that are not where the config says, through the binary: two providers at one
//! folder, a copied root at `provider add`, a mistyped root, a wiped folder taken back with
//! `provider reset`.

use crate::common;

use common::*;

fn set_root(d: &std::path::Path, provider: &str, root: &str) {
    let path = d.join("outlast.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = text.find(&format!("name = \"{provider}\"")).unwrap();
    let start = from + text[from..].find("root = ").unwrap() + "root = ".len();
    let end = start + text[start..].find(" }").unwrap();
    let mut out = text[..start].to_string();
    out.push_str(&toml::Value::String(root.into()).to_string());
    out.push_str(&text[end..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn two_providers_at_one_folder_are_refused_before_anything_is_touched() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("p"), b"important").unwrap();
    run_ok(d, &["put", "p", "important"]);
    // The repro: local2's root becomes local1's root plus a trailing slash.
    let local1 = d.join("stores/local1").canonicalize().unwrap();
    set_root(d, "local2", &format!("{}/", local1.display()));
    for cmd in [&["providers"][..], &["gc", "--grace-secs", "0"], &["put", "p", "again"], &["ls"]] {
        let err = run_err(d, cmd);
        assert!(err.contains("`local1` and `local2` are one location"), "{cmd:?}: {err}");
    }
    set_root(d, "local2", &d.join("stores/local2").canonicalize().unwrap().display().to_string());
    assert_eq!(run_ok(d, &["get", "important"]).stdout, b"important");
    // A copied root is refused at `provider add` too, and the config is left as it was.
    let before = std::fs::read_to_string(d.join("outlast.toml")).unwrap();
    let copied = format!("root={}", local1.display());
    let err = run_err(d, &["provider", "add", "local4", "--scheme", "fs", "--option", &copied, "--domain", "elsewhere"]);
    assert!(err.contains("`local1` and `local4` are one location"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("outlast.toml")).unwrap(), before);
}

#[test]
fn a_mistyped_root_is_not_created_and_a_wiped_one_comes_back_only_by_reset() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let body = data(300_000, 1);
    std::fs::write(d.join("in.bin"), &body).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    // A mistyped root: reading works from the others, and nothing creates the folder.
    set_root(d, "local3", &d.join("stores/lcoal3").display().to_string());
    run_ok(d, &["ls"]);
    let out = outlast(d).arg("providers").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(run_ok(d, &["get", "x"]).stdout, body);
    assert!(!d.join("stores/lcoal3").exists(), "a mistyped root was created");
    set_root(d, "local3", &d.join("stores/local3").display().to_string());

    // Wiped and recreated empty: unavailable (not silently refilled) until reset.
    std::fs::remove_dir_all(d.join("stores/local3")).unwrap();
    std::fs::create_dir(d.join("stores/local3")).unwrap();
    std::fs::write(d.join("stores/local3/notes.txt"), b"mine").unwrap();
    let out = outlast(d).args(["--json", "repair"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!d.join("stores/local3/s").exists(), "repair wrote to a location that lost its marker");
    run_ok(d, &["provider", "reset", "local3"]);
    let r = json(&run_ok(d, &["--json", "repair"]));
    assert_eq!(r["remaining"], 0, "{r}");
    assert!(d.join("stores/local3/notes.txt").exists(), "reset or repair deleted a stranger's file");
    // Reset refuses a location that holds Outlast blobs.
    let err = run_err(d, &["provider", "reset", "local2"]);
    assert!(err.contains("not empty"), "{err}");
    // local3 holds its share again: read with local1 gone.
    std::fs::remove_dir_all(d.join("stores/local1")).unwrap();
    assert_eq!(run_ok(d, &["get", "x"]).stdout, body);
}
