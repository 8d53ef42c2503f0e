//! The `outlast` binary end to end on local-folder providers.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn init_put_get_ls_stat_rm_providers_gc() {
    let dir = init_store("3", "5");
    let d = dir.path();
    assert!(d.join("outlast.toml").exists() && d.join("outlast.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.join("outlast.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let body = data(5_000_000, 1);
    std::fs::write(d.join("in.bin"), &body).unwrap();
    let put = json(&run_ok(
        d,
        &["--json", "put", "in.bin", "dir/a.bin", "--content-type", "application/x-test", "--meta", "owner=ada"],
    ));
    assert_eq!(put["size"], 5_000_000);
    assert_eq!(put["shards_written"], 5);

    // stdin -> object -> stdout
    let mut child = outlast(d).args(["put", "-", "dir/b.txt"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(run_ok(d, &["get", "dir/b.txt"]).stdout, b"from stdin\n");
    assert_eq!(run_ok(d, &["get", "dir/b.txt", "-"]).stdout, b"from stdin\n");

    run_ok(d, &["get", "dir/a.bin", "out.bin"]);
    assert!(std::fs::read(d.join("out.bin")).unwrap() == body);
    assert_eq!(run_ok(d, &["get", "dir/a.bin", "--range", "10-19"]).stdout, &body[10..20]);
    assert_eq!(run_ok(d, &["get", "dir/a.bin", "--range", "4999990-"]).stdout, &body[4_999_990..]);
    assert_eq!(run_ok(d, &["get", "dir/a.bin", "--range", "-10"]).stdout, &body[body.len() - 10..]);
    assert_eq!(run_ok(d, &["get", "dir/a.bin", "--range=-99999999"]).stdout, body);

    let ls = json(&run_ok(d, &["--json", "ls", "dir/"]));
    let names: Vec<&str> = ls.as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dir/a.bin", "dir/b.txt"]);
    assert!(String::from_utf8(run_ok(d, &["ls"]).stdout).unwrap().contains("dir/a.bin"));

    let stat = json(&run_ok(d, &["--json", "stat", "dir/a.bin"]));
    assert_eq!(stat["content_type"], "application/x-test");
    assert_eq!(stat["metadata"][0][0], "owner");
    assert_eq!(stat["placement"].as_array().unwrap().len(), 5);

    let providers = json(&run_ok(d, &["--json", "providers"]));
    assert_eq!(providers.as_array().unwrap().len(), 5);
    assert!(providers.as_array().unwrap().iter().all(|p| p["reachable"] == true && p["shards"] == 2));

    run_ok(d, &["rm", "dir/b.txt"]);
    let err = run_err(d, &["get", "dir/b.txt"]);
    assert!(err.contains("no object named `dir/b.txt`"), "{err}");
    let gc = json(&run_ok(d, &["--json", "gc", "--grace-secs", "0"]));
    assert_eq!(gc["deleted"], 0, "gc deleted live data: {gc}");
    assert!(std::fs::read(d.join("out.bin")).unwrap() == body);
    run_ok(d, &["get", "dir/a.bin", "again.bin"]);
    assert!(std::fs::read(d.join("again.bin")).unwrap() == body);
}

#[test]
fn failed_get_leaves_no_partial_file() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let body = data(3_000_000, 2);
    std::fs::write(d.join("in.bin"), &body).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    run_err(d, &["get", "missing", "out.bin"]);
    assert!(!d.join("out.bin").exists());
    // Lose three of four providers: unreadable, and no file appears.
    for i in 1..=3 {
        std::fs::remove_dir_all(d.join(format!("stores/local{i}"))).unwrap();
    }
    let err = run_err(d, &["get", "x", "out.bin"]);
    assert!(err.contains("unreadable"), "{err}");
    assert!(!d.join("out.bin").exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(d).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".part")).collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

#[test]
fn a_get_onto_a_full_disk_fails_cleanly() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("in.bin"), data(3_000_000, 5)).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    let full = d.join("full");
    std::fs::create_dir(&full).unwrap();
    let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&full).status().unwrap();
    assert!(st.success(), "mounting a tmpfs needs root (as the test script and CI run)");
    let err = run_err(d, &["get", "x", "full/out.bin"]);
    let left: Vec<_> = std::fs::read_dir(&full).unwrap().flatten().map(|e| e.file_name()).collect();
    let _ = std::process::Command::new("umount").arg(&full).status();
    assert!(err.contains("cannot write the output") && err.contains("No space left"), "{err}");
    assert!(left.is_empty(), "a failed get left {left:?}");
    assert_eq!(std::fs::read(d.join("in.bin")).unwrap(), run_ok(d, &["get", "x"]).stdout);
}

#[test]
fn a_terminated_provider_is_reported_and_sets_the_exit_status() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let body = data(200_000, 6);
    std::fs::write(d.join("in.bin"), &body).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    run_ok(d, &["put", "in.bin", "y"]);
    // The account ends: its bucket (here, its folder) is emptied.
    std::fs::remove_dir_all(d.join("stores/local2")).unwrap();
    std::fs::create_dir(d.join("stores/local2")).unwrap();

    let out = outlast(d).args(["--json", "providers"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let reports = json(&out);
    let local2 = reports.as_array().unwrap().iter().find(|r| r["name"] == "local2").unwrap();
    assert_eq!(local2["state"], "terminated", "{local2}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TERMINATED"), "no error line");
    let text = String::from_utf8(outlast(d).arg("providers").output().unwrap().stdout).unwrap();
    assert!(text.contains("TERMINATED"), "{text}");

    // A put that touches it succeeds at quorum but exits 3 and says why.
    let out = outlast(d).args(["put", "in.bin", "z"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("provider `local2` is terminated"));
    for name in ["x", "y", "z"] {
        assert!(run_ok(d, &["get", name]).stdout == body, "{name}");
    }
}

#[test]
fn wrong_key_and_bad_config_are_clear_one_line_errors() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("f"), b"hello").unwrap();
    run_ok(d, &["put", "f", "f"]);
    // Another store's key in place of this one's.
    let other = init_store("2", "3");
    std::fs::copy(other.path().join("outlast.key"), d.join("outlast.key")).unwrap();
    let err = run_err(d, &["get", "f"]);
    assert!(err.contains("wrong key"), "{err}");
    // A config that does not record the key's fingerprint (older, or edited by hand): the
    // providers' identity markers tell, and nothing is written with the wrong key.
    let cfg = std::fs::read_to_string(d.join("outlast.toml")).unwrap();
    let unfingerprinted: String = cfg.lines().filter(|l| !l.starts_with("key_fingerprint")).map(|l| format!("{l}\n")).collect();
    // Also with a new, empty provider, which would take any key's marker.
    std::fs::create_dir(d.join("stores/new")).unwrap();
    let with_new = format!(
        "{unfingerprinted}[[providers]]\nname = \"new\"\ndomain = \"new\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
        d.join("stores/new").display()
    );
    for config in [&unfingerprinted, &with_new] {
        std::fs::write(d.join("outlast.toml"), config).unwrap();
        for args in [&["put", "f", "g"][..], &["rm", "f"], &["gc"]] {
            let err = run_err(d, args);
            assert!(err.contains("wrong key") && err.contains("identity markers"), "{args:?}: {err}");
        }
    }
    assert_eq!(files_under(&d.join("stores")).iter().filter(|p| p.to_string_lossy().contains("/m/")).count(), 3);
    assert!(files_under(&d.join("stores/new")).is_empty(), "the new provider took a wrong key's marker");
    std::fs::write(d.join("outlast.toml"), cfg).unwrap();
    std::fs::remove_file(d.join("outlast.key")).unwrap();
    assert!(run_err(d, &["ls"]).contains("not found"));
    std::fs::write(d.join("outlast.key"), "garbage\n").unwrap();
    assert!(run_err(d, &["ls"]).contains("not an Outlast key file"));

    let cfg = std::fs::read_to_string(d.join("outlast.toml")).unwrap();
    std::fs::write(d.join("bad.toml"), cfg.replace("k = 2", "k = 3")).unwrap();
    let err = run_err(d, &["--config", "bad.toml", "ls"]);
    assert!(err.contains("coding.k") && err.contains("less than n"), "{err}");
    std::fs::write(d.join("bad.toml"), "this is [not toml").unwrap();
    assert!(run_err(d, &["--config", "bad.toml", "ls"]).contains("syntax"));
    std::fs::write(d.join("bad.toml"), cfg.replacen("scheme = \"fs\"", "scheme = \"floppy\"", 1)).unwrap();
    assert!(run_err(d, &["--config", "bad.toml", "ls"]).contains("unknown scheme `floppy`"));
    let err = run_err(d, &["--config", "nowhere.toml", "ls"]);
    assert!(err.contains("outlast init"), "{err}");
    let err = run_err(d, &["--config", "bad.toml", "init"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn passphrase_keys_work_and_a_wrong_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = outlast(d)
        .args(["init", "--local", "s", "--providers", "3", "--k", "2", "--passphrase"])
        .env("OUTLAST_PASSPHRASE", "")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&empty.stderr).contains("OUTLAST_PASSPHRASE is empty"), "{empty:?}");
    assert!(!d.join("outlast.key").exists() && !d.join("outlast.toml").exists());
    let ok = outlast(d)
        .args(["init", "--local", "s", "--providers", "3", "--k", "2", "--passphrase"])
        .env("OUTLAST_PASSPHRASE", "open sesame")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(!std::fs::read_to_string(d.join("outlast.key")).unwrap().contains(" raw "));
    std::fs::write(d.join("f"), b"locked").unwrap();
    assert!(outlast(d).args(["put", "f", "f"]).env("OUTLAST_PASSPHRASE", "open sesame").status().unwrap().success());
    let out = outlast(d).args(["get", "f"]).env("OUTLAST_PASSPHRASE", "open sesame").output().unwrap();
    assert_eq!(out.stdout, b"locked");
    let out = outlast(d).args(["get", "f"]).env("OUTLAST_PASSPHRASE", "close sesame").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("wrong passphrase") && err.contains("check the passphrase"), "{err}");
    assert!(run_err(d, &["get", "f"]).contains("OUTLAST_PASSPHRASE"));
}

#[test]
fn kill_9_mid_put_leaves_nothing_visible_and_gc_removes_its_blobs() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let mut child = outlast(d).args(["put", "-", "big"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Feed 48 MiB, then keep the stream open so the put cannot finish.
    let chunk = data(1 << 20, 3);
    for _ in 0..48 {
        stdin.write_all(&chunk).unwrap();
    }
    // Shard blobs, whole (`s/`) or still being written (`t/`, renamed into `s/` when durable).
    let shard_files = || {
        let in_dir = |p: &std::path::Path, dir: &str| p.parent().unwrap().ends_with(dir);
        files_under(&d.join("stores")).into_iter().filter(|p| in_dir(p, "s") || in_dir(p, "t")).count()
    };
    let start = Instant::now();
    while shard_files() == 0 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(shard_files() > 0, "the put never wrote a shard");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(json(&run_ok(d, &["--json", "ls"])).as_array().unwrap().len(), 0);
    assert!(run_err(d, &["get", "big"]).contains("no object named"));
    // The crashed write is known by name, so gc removes it even inside the grace period.
    let gc = json(&run_ok(d, &["--json", "gc"]));
    assert_eq!(gc["crashed_writes"], 1, "{gc}");
    assert_eq!(shard_files(), 0, "gc left shard blobs behind");
    // And the store still works.
    std::fs::write(d.join("f"), b"after").unwrap();
    run_ok(d, &["put", "f", "f"]);
    assert_eq!(run_ok(d, &["get", "f"]).stdout, b"after");
}

#[test]
fn bad_requests_are_refused_without_changes() {
    let dir = init_store("2", "3");
    let d = dir.path();
    assert!(run_err(d, &["put", "no-such-file", "x"]).contains("cannot open no-such-file"));
    std::fs::write(d.join("f"), b"x").unwrap();
    assert!(run_err(d, &["put", "f", "x", "--meta", "novalue"]).contains("KEY=VALUE"));
    assert!(run_err(d, &["put", "f", ""]).contains("invalid object name: object names are 1 to 1088 bytes"));
    assert!(run_err(d, &["get", "x", "--range", "9-1"]).contains("--range"));
    assert!(run_err(d, &["rm", "x"]).contains("no object named"));
    // The gateway's records are not the user's to write or remove.
    for cmd in [&["put", "f", ".outlast/key/AKIA"][..], &["rm", ".outlast/bucket/b"]] {
        assert!(run_err(d, cmd).contains("names under `.outlast/` are kept for the gateway's records"), "{cmd:?}");
    }
    // Metadata the S3 gateway could not serve back.
    for (flag, value, says) in [
        ("--meta", "a b=1", "not an HTTP header token"),
        ("--meta", "k=line\nSet-Cookie: x", "cannot go in an HTTP header"),
        ("--content-type", "text/plain\r\nX: y", "content type"),
        ("--meta", &format!("k={}", "v".repeat(2048)), "at most 2048"),
    ] {
        let err = run_err(d, &["put", "f", "x", flag, value]);
        assert!(err.contains(says), "{value:?}: {err}");
    }
    let err = run_err(d, &["put", "f", "x", "--meta", "Tag=1", "--meta", "tag=2"]);
    assert!(err.contains("twice"), "{err}");
    // A command line that does not parse has its own exit status, apart from "damage found".
    for args in [&["put"][..], &["--no-such-flag", "ls"], &["scrub", "--sample", "2"]] {
        let out = outlast(d).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(json(&run_ok(d, &["--json", "ls"])).as_array().unwrap().len(), 0);
    // Nothing but the identity markers `init` wrote.
    let files = files_under(&d.join("stores"));
    assert!(files.len() == 3 && files.iter().all(|f| f.parent().unwrap().ends_with("i")), "{files:?}");
    // A bucket-sized prefix plus the longest S3 key fits.
    let longest = format!("{}/{}", "b".repeat(63), "k".repeat(1024));
    run_ok(d, &["put", "f", &longest]);
    assert_eq!(run_ok(d, &["get", &longest]).stdout, b"x");
}

#[test]
fn demo_runs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(dir.path(), &["demo", "--dir", "demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("All 4 objects read back byte-for-byte with 2 of 6 providers gone"), "{text}");
    assert!(text.contains("Full redundancy is back") && text.contains("4 of 4 objects readable"), "{text}");
}

#[test]
fn providers_and_scrub_exit_2_while_redundancy_is_owed() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("in.bin"), data(100_000, 8)).unwrap();
    // local3 is out of reach during the put (its root is briefly not there): stored below
    // full redundancy.
    std::fs::rename(d.join("stores/local3"), d.join("away")).unwrap();
    run_ok(d, &["put", "in.bin", "x"]);
    std::fs::rename(d.join("away"), d.join("stores/local3")).unwrap();
    // Every provider answers again, yet the store is not healthy until repair pays.
    for cmd in ["providers", "scrub"] {
        let out = outlast(d).arg(cmd).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {text}");
        assert!(text.contains("local3 OWES 1 shard blobs, 1 manifest copies") && text.contains("run `outlast repair`"), "{text}");
    }
    run_ok(d, &["repair"]);
    run_ok(d, &["providers"]);
    run_ok(d, &["scrub"]);
}

#[test]
fn the_template_store_shows_no_provider_healthy_that_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(d, &["init"]);
    let out = outlast(d).args(["--json", "providers"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for r in json(&out).as_array().unwrap() {
        assert!(r["state"] != "healthy" && r["reachable"] == false, "{r}");
    }
}

#[test]
fn a_lost_state_folder_is_recovered_from_the_providers() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let bodies = put_objects(d, 5, 200_000, 30);
    run_ok(d, &["rm", "o4"]);
    let ls = run_ok(d, &["ls"]).stdout;
    std::fs::remove_dir_all(d.join(".outlast")).unwrap();
    // Without its index the store says where the data is, rather than look empty and healthy.
    let out = run_ok(d, &["ls"]);
    assert!(out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("outlast recover"));
    let err = run_err(d, &["get", "o1"]);
    assert!(err.contains("no object named"), "{err}");
    for cmd in ["providers", "scrub"] {
        let out = outlast(d).arg(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("outlast recover"), "{cmd}");
    }
    let r = json(&run_ok(d, &["--json", "recover"]));
    assert_eq!((r["objects"].as_u64(), r["deleted"].as_u64()), (Some(4), Some(1)), "{r}");
    assert_eq!(run_ok(d, &["ls"]).stdout, ls);
    check_objects(d, &bodies[..4]);
    assert!(run_err(d, &["get", "o4"]).contains("no object named"));
    run_ok(d, &["providers"]);
    run_ok(d, &["scrub"]);
    let again = json(&run_ok(d, &["--json", "recover"]));
    assert_eq!((again["added"].as_u64(), again["updated"].as_u64()), (Some(0), Some(0)), "{again}");
}

#[cfg(unix)]
#[test]
fn get_into_a_file_keeps_its_mode_leaves_no_temporary_file_and_writes_devices_in_place() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("in.bin"), b"secret plans").unwrap();
    run_ok(d, &["put", "in.bin", "plans"]);
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Over an existing private file: its content replaced, its mode kept.
    std::fs::write(out.join("private.txt"), b"old").unwrap();
    std::fs::set_permissions(out.join("private.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    run_ok(d, &["get", "plans", "out/private.txt"]);
    assert_eq!(std::fs::read(out.join("private.txt")).unwrap(), b"secret plans");
    assert_eq!(mode(&out.join("private.txt")), 0o600);
    // A new file gets what cp would give it (0666 less the umask), not the temporary 0600.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = u32::from_str_radix(status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap().trim(), 8).unwrap();
    run_ok(d, &["get", "plans", "out/new.txt"]);
    assert_eq!(mode(&out.join("new.txt")), 0o666 & !umask);
    // A failed get leaves nothing behind either.
    run_err(d, &["get", "missing", "out/never.txt"]);
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["new.txt", "private.txt"]);
    // A device is written in place, never renamed over.
    run_ok(d, &["get", "plans", "/dev/null"]);
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A folder is refused with a clear error.
    assert!(run_err(d, &["get", "plans", "out"]).contains("is a folder"));
}

#[test]
fn names_that_could_fake_lines_or_colour_the_terminal_print_escaped() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("f"), b"x").unwrap();
    let fake = "evil\n             1  2026-01-01T00:00:00Z  passwords.txt";
    let red = "\u{1b}[31mred\u{202e}txt.exe";
    for name in [fake, red] {
        let out = run_ok(d, &["put", "f", name]);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(name), "put printed {name:?} raw");
    }
    let ls = String::from_utf8(run_ok(d, &["ls"]).stdout).unwrap();
    assert_eq!(ls.lines().count(), 2, "one line per object: {ls}");
    assert!(ls.contains("evil\\n ") && ls.contains("\\u{1b}[31mred\\u{202e}txt.exe"), "{ls}");
    assert!(!ls.contains('\u{1b}') && !ls.contains('\u{202e}'), "{ls:?}");
    let stat = String::from_utf8(run_ok(d, &["stat", red]).stdout).unwrap();
    assert!(!stat.contains('\u{1b}'), "{stat:?}");
    // JSON carries the names as they are (escaped the JSON way).
    let names: Vec<String> =
        json(&run_ok(d, &["--json", "ls"])).as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect();
    assert!(names.contains(&fake.to_string()) && names.contains(&red.to_string()), "{names:?}");
    // An error naming one stays one line.
    let err = run_err(d, &["get", fake, "--range", "5-"]);
    assert!(err.contains("evil\\n"), "{err}");
    // Log lines that name one stay one line too.
    std::fs::rename(d.join("stores/local2"), d.join("stores/away")).unwrap();
    let out = run_ok(d, &["put", "f", "log\nfake line"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BELOW") || err.contains("below full redundancy"), "{err}");
    assert!(!err.contains("log\nfake line") && err.contains("log\\nfake line"), "{err}");
    std::fs::rename(d.join("stores/away"), d.join("stores/local2")).unwrap();
    // `get --json` into a file prints its report on stdout, where it parses.
    let report = json(&run_ok(d, &["--json", "get", red, "out.bin"]));
    assert_eq!(report["bytes"], 1);
}

#[test]
fn kill_9_mid_get_leaves_no_plaintext_behind() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let body = data(48 << 20, 5);
    std::fs::write(d.join("big.bin"), &body).unwrap();
    run_ok(d, &["put", "big.bin", "big"]);
    std::fs::remove_file(d.join("big.bin")).unwrap();
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    // Slow providers, so that the get is caught half-way.
    let slow = "local1:latency=150ms;local2:latency=150ms;local3:latency=150ms";
    let mut child = outlast(d).env("OUTLAST_FAULTS", slow).args(["get", "big", "out/big.bin"]).spawn().unwrap();
    // The file it fills, found through its descriptors (it may have no name at all).
    let filling = |pid: u32| -> Option<u64> {
        std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten().find_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            target.starts_with(&out_dir).then(|| std::fs::metadata(fd.path()).ok().map(|m| m.len())).flatten()
        })
    };
    let start = Instant::now();
    while filling(child.id()).unwrap_or(0) == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = filling(child.id()).unwrap_or(0);
    assert!(written > 0 && written < body.len() as u64, "not caught half-way: {written} bytes");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "a killed get left {left:?}");
    // And a get run through writes the whole file.
    run_ok(d, &["get", "big", "out/big.bin"]);
    assert!(std::fs::read(out_dir.join("big.bin")).unwrap() == body);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

#[test]
fn providers_says_each_providers_trouble_once_and_logs_stay_plain_when_redirected() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::rename(d.join("stores/local2"), d.join("stores/away")).unwrap();
    let out = outlast(d).args(["providers"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(all.matches("does not exist").count(), 1, "{all}");
    // Other commands log it, as plain text when stderr is not a terminal.
    std::fs::write(d.join("f"), b"x").unwrap();
    let put = outlast(d).args(["put", "f", "f"]).output().unwrap();
    let err = String::from_utf8_lossy(&put.stderr);
    assert!(err.contains("does not exist") && !err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn an_unreadable_object_is_one_short_line_with_the_next_step() {
    let dir = init_store("3", "5");
    let d = dir.path();
    std::fs::write(d.join("f"), data(300_000, 9)).unwrap();
    run_ok(d, &["put", "f", "f"]);
    for p in ["local1", "local2", "local3"] {
        for sub in ["s", "m"] {
            for e in std::fs::read_dir(d.join("stores").join(p).join(sub)).unwrap() {
                std::fs::write(e.unwrap().path(), b"rot").unwrap();
            }
        }
    }
    let err = run_err(d, &["get", "f"]);
    assert!(err.contains("unreadable") && err.contains("`outlast providers`"), "{err}");
    assert!(err.contains("range exceeds content length") && !err.contains("context:"), "{err}");
    assert!(err.len() < 700, "{} bytes: {err}", err.len());
}

#[test]
fn a_state_folder_another_command_holds_says_so_once_and_writes_nothing() {
    let dir = init_store("2", "3");
    let d = dir.path();
    std::fs::write(d.join("a.txt"), b"hello").unwrap();
    // Another command in the middle of a write to the index (as a long gc or repair is).
    let holder = rusqlite::Connection::open(d.join(".outlast/index.sqlite")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE; DELETE FROM health;").unwrap();
    let out = outlast(d).args(["put", "a.txt", "a"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // One line that says who holds it and what to do, and nothing else about it.
    let error = stderr.lines().last().unwrap();
    assert!(error.contains("in use by another outlast command on this state folder; run this again"), "{stderr}");
    assert_eq!(stderr.matches("in use by another").count(), 1, "{stderr}");
    assert!(!stderr.contains("database is locked"), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
    // Nothing was half written: the name is absent, and a put now goes through.
    assert!(run_err(d, &["get", "a"]).contains("no object named"));
    run_ok(d, &["put", "a.txt", "a"]);
    assert_eq!(run_ok(d, &["get", "a"]).stdout, b"hello");
}

#[test]
fn ctrl_c_stops_a_repair_cleanly_and_the_next_one_goes_on() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let bodies = put_objects(d, 24, 64 << 10, 40);
    // local3 loses everything and is taken back: 24 objects owe a shard and a manifest there.
    for sub in ["s", "m"] {
        std::fs::remove_dir_all(d.join("stores/local3").join(sub)).unwrap();
    }
    run_ok(d, &["provider", "reset", "local3"]);
    // Slow providers, so that the repair is caught part-way.
    // Under way once its first shard is rebuilt on local3.
    let rebuilt = || std::fs::read_dir(d.join("stores/local3/s")).is_ok_and(|s| s.count() > 0);
    let (_, stderr) = interrupted(d, &["repair"], rebuilt);
    assert!(stderr.contains("repair stopped before the end"), "{stderr}");
    // Stopped cleanly: what it did not reach still owes, and nothing is damaged.
    let scrub = outlast(d).args(["scrub", "--json"]).output().unwrap();
    let report = json(&scrub);
    let owed = report["owed"].as_array().unwrap();
    assert!(!owed.is_empty(), "the stop came after the end: {report}");
    assert!(report["providers"].as_array().unwrap().iter().all(|p| p["corrupt"] == 0), "{report}");
    // The next repair goes on, and everything is whole.
    run_ok(d, &["repair"]);
    run_ok(d, &["scrub"]);
    check_objects(d, &bodies);
}

/// Runs `args` over slow providers, presses Ctrl-C once `started` says its work is under way,
/// and returns its stdout and stderr once it has exited 130 (stopped at a clean point).
fn interrupted(d: &Path, args: &[&str], started: impl Fn() -> bool) -> (String, String) {
    let slow = "local1:latency=300ms;local2:latency=300ms;local3:latency=300ms;local4:latency=300ms";
    let child = outlast(d).env("OUTLAST_FAULTS", slow).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while !started() {
        assert!(start.elapsed() < Duration::from_secs(60), "{args:?} never got under way");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn ctrl_c_stops_an_evacuation_cleanly_and_the_next_one_goes_on() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let bodies = put_objects(d, 24, 64 << 10, 60);
    let root = d.join("stores/local4");
    let root_opt = format!("root={}", root.display());
    run_ok(d, &["provider", "add", "local4", "--scheme", "fs", "--option", &root_opt, "--domain", "elsewhere"]);
    let copied = || std::fs::read_dir(root.join("s")).is_ok_and(|s| s.count() > 0);
    let (stdout, stderr) = interrupted(d, &["evacuate", "local1", "--to", "local4"], copied);
    assert!(stderr.contains("evacuate stopped before the end"), "{stderr}");
    // Part-way: some objects still have their shard on local1, and every object reads.
    assert!(stdout.contains("still have a shard on local1"), "{stdout}");
    check_objects(d, &bodies);
    let moved = run_ok(d, &["evacuate", "local1", "--to", "local4"]);
    assert!(String::from_utf8_lossy(&moved.stdout).contains("local1 holds no shards now"), "{moved:?}");
    run_ok(d, &["scrub"]);
    check_objects(d, &bodies);
}
