//! Ctrl-C typed on a terminal while scrub, drill, gc and recover run, as a person would: the
//! command runs under util-linux `script` (a pseudo-terminal, so the progress bar shows), the
//! test waits for the bar, types Ctrl-C, and checks that the job stopped at a clean point
//! (exit 130, one line saying what stands) and that running it again finishes the work.
//! Repair and evacuation have theirs in `cli.rs`.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Every provider answers `latency` late, so that a job lasts long enough to be caught.
fn slow(latency: &str) -> String {
    (1..=4).map(|i| format!("local{i}:latency={latency}")).collect::<Vec<_>>().join(";")
}

/// Runs `outlast args` on a pseudo-terminal over slow providers, types Ctrl-C once its progress
/// bar shows, and returns everything it printed once it has exited 130.
fn ctrl_c_once_the_bar_shows(d: &Path, args: &[&str]) -> String {
    ctrl_c_over(d, args, "300ms")
}

/// As [`ctrl_c_once_the_bar_shows`], with every provider `latency` late.
fn ctrl_c_over(d: &Path, args: &[&str], latency: &str) -> String {
    let mut line = shell_quote(env!("CARGO_BIN_EXE_outlast"));
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let mut child = Command::new("script")
        .args(["--quiet", "--flush", "--return", "--command", &line, "/dev/null"])
        .current_dir(d)
        .env_remove("OUTLAST_CONFIG")
        .env_remove("OUTLAST_PASSPHRASE")
        .env("OUTLAST_FAULTS", slow(latency))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` runs");
    let printed = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                printed.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let start = Instant::now();
    // The bar is drawn once the job has run a second: it shows the job's words and its bar.
    let job = args[0];
    while !String::from_utf8_lossy(&printed.lock().unwrap()).contains(&format!("{job} [")) {
        assert!(start.elapsed() < Duration::from_secs(90), "{args:?} never showed its bar");
        assert!(child.try_wait().unwrap().is_none(), "{args:?} ended before its bar showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-C, as typed: the terminal turns it into SIGINT for the command.
    let mut keys = child.stdin.take().unwrap();
    keys.write_all(b"\x03").unwrap();
    keys.flush().unwrap();
    let status = child.wait().unwrap();
    drop(keys);
    reader.join().unwrap();
    let printed = String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();
    assert_eq!(status.code(), Some(130), "{args:?}: {printed}");
    printed
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn ctrl_c_stops_a_scrub_and_the_next_one_checks_everything() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let bodies = put_objects(d, 30, 16 << 10, 70);
    let printed = ctrl_c_once_the_bar_shows(d, &["scrub"]);
    assert!(printed.contains("scrub stopped before the end; it made"), "{printed}");
    let whole = json(&run_ok(d, &["--json", "scrub"]));
    assert_eq!(whole["objects"], 30, "{whole}");
    check_objects(d, &bodies);
}

#[test]
fn ctrl_c_stops_a_drill_and_says_how_far_it_read() {
    let dir = init_store("2", "4");
    let d = dir.path();
    put_objects(d, 30, 16 << 10, 80);
    let printed = ctrl_c_once_the_bar_shows(d, &["drill", "local1"]);
    assert!(printed.contains("drill stopped before the end; it read"), "{printed}");
    let whole = json(&run_ok(d, &["--json", "drill", "local1"]));
    assert_eq!(whole["objects"], 30, "{whole}");
}

#[test]
fn ctrl_c_stops_a_gc_and_the_next_one_deletes_the_rest() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let bodies = put_objects(d, 4, 16 << 10, 90);
    // Blobs of a write the index never heard of, a day old: garbage for any gc.
    let stray: Vec<_> = (0..40u32).map(|i| d.join(format!("stores/local2/s/{:032x}", 0xbad0 + i))).collect();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
    for s in &stray {
        std::fs::write(s, b"left by a crashed write").unwrap();
        std::fs::File::options().write(true).open(s).unwrap().set_modified(day_ago).unwrap();
    }
    let printed = ctrl_c_once_the_bar_shows(d, &["gc"]);
    assert!(printed.contains("gc stopped before the end; the blobs it did not reach wait"), "{printed}");
    assert!(stray.iter().any(|s| s.exists()), "the stop came after the end: {printed}");
    check_objects(d, &bodies);
    run_ok(d, &["gc"]);
    assert!(stray.iter().all(|s| !s.exists()));
    check_objects(d, &bodies);
}

#[test]
fn ctrl_c_stops_a_recovery_and_the_next_one_takes_everything_in() {
    let dir = init_store("2", "4");
    let d = dir.path();
    let bodies = put_objects(d, 30, 16 << 10, 100);
    std::fs::remove_dir_all(d.join(".outlast")).unwrap();
    // Its reads run 16 at a time: a second per read keeps it going for seconds after its bar
    // shows, however loaded the machine.
    let printed = ctrl_c_over(d, &["recover"], "1s");
    assert!(printed.contains("recovery stopped before the end; `outlast recover` again"), "{printed}");
    let whole = json(&run_ok(d, &["--json", "recover"]));
    assert_eq!(whole["objects"], 30, "{whole}");
    check_objects(d, &bodies);
}
