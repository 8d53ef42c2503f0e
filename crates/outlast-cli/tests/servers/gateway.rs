//! The gateway on real servers (`scripts/servers.sh`): S3 and website load while provider
//! servers are killed and restarted one kind at a time. No client hangs, no wrong byte,
//! writes resume, and what was written while a server was down is repaired by the running
//! gateway in the background. `scripts/test.sh` runs it with the other servers tests:
//! `cargo test --test servers -- --ignored gateway::`.

use crate::common;
use crate::kit;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kit::*;

#[test]
#[ignore = "needs the servers of scripts/servers.sh; kills and restarts them"]
fn under_load_with_servers_killed_clients_never_hang_or_see_a_wrong_byte_and_the_gateway_repairs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d);
    let k = json(&run_ok(d, &["--json", "key", "create"]));
    let page = "<h1>still here</h1>";
    std::fs::create_dir_all(d.join("www")).unwrap();
    std::fs::write(d.join("www/index.html"), page).unwrap();
    run_ok(d, &["site", "publish", "www", "www"]);

    let args = ["--site-listen", "127.0.0.1:0", "--repair-every", "3s"];
    let server = Server::start_args(d, None, &args);
    let stop_file = d.join("stop-load");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/load_under_faults.py");
    let load = Command::new("python3")
        .arg(script)
        .env_remove("AWS_CA_BUNDLE")
        .env("OUTLAST_S3_ENDPOINT", &server.endpoint)
        .env("OUTLAST_S3_KEY_ID", k["access_key_id"].as_str().unwrap())
        .env("OUTLAST_S3_SECRET", k["secret_access_key"].as_str().unwrap())
        .env("OUTLAST_SITE", server.site.as_ref().unwrap())
        .env("OUTLAST_SITE_PAGE", page)
        .env("OUTLAST_LOAD_STOP", &stop_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // moto keeps its data in memory, and azurite loses writes it acknowledged shortly before
    // a kill (its store is flushed now and then): a restart of either is a wiped or lying
    // provider, which servers/survive.rs covers. The kinds that keep what they acknowledged are
    // killed here, so that what is owed afterwards is exactly what the gateway must repair.
    for kind in ["sftp", "webdav"] {
        std::thread::sleep(Duration::from_secs(2));
        let down = Stopped::new(kind);
        std::thread::sleep(Duration::from_secs(4));
        drop(down);
    }
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop_file, b"").unwrap();
    let out = load.wait_with_output().unwrap();
    let log = || std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        out.status.success(),
        "the load failed:\n{}\n{}\nthe server's log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(counts["puts"].as_u64().unwrap() >= 10 && counts["pages"].as_u64().unwrap() >= 10, "{counts}");
    assert_eq!(counts["last_puts"], serde_json::json!([true, true, true, true, true]), "writes resumed: {counts}");
    assert_eq!(counts["verified"], counts["puts"]);

    // What was written with a server down is owed there; the gateway pays it by itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = outlast(d).args(["--json", "providers"]).output().unwrap();
        if st.status.code() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "still owed after 2 minutes:\n{}\n{}", String::from_utf8_lossy(&st.stdout), log());
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(log().contains("background repair:"), "{}", log());
    assert!(matches!(server.stop(), Some(0 | 3)));
    run_ok(d, &["scrub"]);
}
