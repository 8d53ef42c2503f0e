//! `outlast serve` with real S3 clients (boto3, installed by `scripts/servers.sh`) against a
//! store of local folders: what the clients write the CLI sees as `BUCKET/KEY`, and the
//! gateway's records (buckets, keys) live in the store, so they survive `outlast recover`.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::*;

fn key(d: &Path, allow: &[&str]) -> (String, String) {
    let mut args = vec!["--json", "key", "create"];
    for a in allow {
        args.extend(["--allow", a]);
    }
    let k = json(&run_ok(d, &args));
    (k["access_key_id"].as_str().unwrap().to_string(), k["secret_access_key"].as_str().unwrap().to_string())
}

fn python(script: &str, server: &Server, env: &[(&str, &str)]) {
    client("python3", script, server, env)
}

/// Runs the client script `script` (from `tests/s3`) with `interpreter` against `server`.
fn client(interpreter: &str, script: &str, server: &Server, env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3").join(script);
    let mut cmd = Command::new(interpreter);
    cmd.arg(&path).env("OUTLAST_S3_ENDPOINT", &server.endpoint).env_remove("AWS_CA_BUNDLE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}\nthe server's log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}

#[test]
fn boto3_uses_buckets_objects_listings_conditions_and_grants_and_the_records_survive_recovery() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let (ro_id, ro_secret) = key(d, &["photos:read"]);
    let listed = json(&run_ok(d, &["--json", "key", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains(&secret), "secrets are not listed");

    let server = Server::start(d);
    let env = [
        ("OUTLAST_S3_KEY_ID", id.as_str()),
        ("OUTLAST_S3_SECRET", secret.as_str()),
        ("OUTLAST_S3_READ_KEY_ID", ro_id.as_str()),
        ("OUTLAST_S3_READ_SECRET", ro_secret.as_str()),
    ];
    python("boto3_basics.py", &server, &env);
    assert_eq!(server.stop(), Some(0), "SIGTERM stops it cleanly");
    // A line per request, and never a credential: no secret, signature or Authorization header
    // (presigned URLs carry theirs in the query string, which is not logged).
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert!(log.contains("PUT /photos/2026/cat.jpg 200"), "{log}");
    assert!(log.contains("GET /photos/new.txt 403"), "the anonymous read: {log}");
    for secret in [secret.as_str(), ro_secret.as_str(), "Signature", "Authorization", "Credential"] {
        assert!(!log.contains(secret), "the log shows {secret}: {log}");
    }

    // The CLI sees what the clients wrote, by BUCKET/KEY, and not the gateway's records.
    let names: Vec<String> =
        json(&run_ok(d, &["--json", "ls"])).as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect();
    assert!(names.contains(&"photos/new.txt".to_string()), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with(".outlast/")), "{names:?}");
    assert_eq!(run_ok(d, &["get", "photos/new.txt"]).stdout, b"second");

    // Buckets and keys live in the store: a lost state folder brings them back.
    std::fs::remove_dir_all(d.join(".outlast")).unwrap();
    run_ok(d, &["recover"]);
    let keys = json(&run_ok(d, &["--json", "key", "list"]));
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    run_ok(d, &["key", "delete", &ro_id]);
    assert!(run_err(d, &["key", "delete", &ro_id]).contains(&format!("no access key `{ro_id}`")));
    assert_eq!(json(&run_ok(d, &["--json", "key", "list"])).as_array().unwrap().len(), 1);
    let server = Server::start(d);
    python("boto3_after_recovery.py", &server, &env);
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn with_providers_refusing_the_gateway_serves_from_any_k_and_says_503_below_that() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let step = |faults: Option<&str>, step: &str| {
        let server = Server::start_with(d, faults);
        let env = [("OUTLAST_S3_KEY_ID", id.as_str()), ("OUTLAST_S3_SECRET", secret.as_str()), ("OUTLAST_S3_STEP", step)];
        python("boto3_faults.py", &server, &env);
        // A provider that refused every call looks terminated: exit 3 says so, as for any command.
        let want = if faults.is_some() { Some(3) } else { Some(0) };
        assert_eq!(server.stop(), want, "{step}");
    };
    step(None, "fill");
    // One of three refusing: reads and writes go on (write quorum k = 2).
    step(Some("local1:deny"), "one-down");
    // Two of three: too few for anything; every answer is a prompt 503, never a hang or a 500.
    step(Some("local1:deny;local2:deny"), "two-down");
    // Back to health: what was written with one down reads whole.
    step(None, "healed");
}

/// Names under `prefix`, the gateway's own included.
fn all_names(d: &Path, prefix: &str) -> Vec<String> {
    let listed = json(&run_ok(d, &["--json", "ls", "--all", prefix]));
    listed.as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn multipart_uploads_complete_to_composites_and_the_sweep_lets_go_of_what_no_upload_or_object_holds() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let run = |server: &Server, step: &str| {
        let env = [("OUTLAST_S3_KEY_ID", id.as_str()), ("OUTLAST_S3_SECRET", secret.as_str()), ("OUTLAST_S3_STEP", step)];
        python("boto3_multipart.py", server, &env);
    };
    let server = Server::start(d);
    run(&server, "upload");
    assert_eq!(server.stop(), Some(0));
    // Left behind: the kept object's 3 parts, the overwritten one's 2, the deleted copy's 2,
    // the abandoned upload's record and part; nothing of the aborted upload or of the
    // attempts a complete did not list.
    let parts = all_names(d, ".outlast/part/");
    assert_eq!(parts.len(), 8, "{parts:?}");
    assert_eq!(all_names(d, ".outlast/upload/").len(), 1);
    // The CLI reads the composite as any object.
    let stat = json(&run_ok(d, &["--json", "stat", "big/kept.bin"]));
    assert_eq!(stat["parts"], 3, "{stat}");
    assert_eq!(stat["size"], 2 * 5 * 1024 * 1024 + 7 + 1000, "{stat}");

    // A gateway with a short expiry sweeps: the abandoned upload goes, and so do the
    // overwritten and deleted objects' parts; the kept object's stay and read whole.
    let server = Server::start_args(d, None, &["--upload-expiry", "1s"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while all_names(d, ".outlast/part/").len() != 3 || !all_names(d, ".outlast/upload/").is_empty() {
        assert!(std::time::Instant::now() < deadline, "not swept: {:?}", all_names(d, ".outlast/"));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    run(&server, "after-sweep");
    assert_eq!(server.stop(), Some(0));
    let kept = json(&run_ok(d, &["--json", "stat", "big/kept.bin"]));
    assert_eq!(kept["etag"], stat["etag"]);

    // The whole store from the providers alone: the composite comes back and reads whole.
    std::fs::remove_dir_all(d.join(".outlast")).unwrap();
    run_ok(d, &["recover"]);
    assert_eq!(json(&run_ok(d, &["--json", "stat", "big/kept.bin"]))["etag"], stat["etag"]);
    assert_eq!(all_names(d, ".outlast/part/").len(), 3);
    let server = Server::start(d);
    run(&server, "after-sweep");
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn the_aws_cli_rclone_and_restic_write_list_read_and_check_through_the_gateway() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let server = Server::start(d);
    let env = [("OUTLAST_S3_KEY_ID", id.as_str()), ("OUTLAST_S3_SECRET", secret.as_str())];
    client("bash", "cli_clients.sh", &server, &env);
    assert_eq!(server.stop(), Some(0));
    // What they wrote is the store's: restic's repository reads back through the CLI too.
    let names = all_names(d, "restic/");
    assert!(names.iter().any(|n| n == "restic/config"), "{names:?}");
}

#[test]
fn buckets_are_made_public_from_the_cli_or_by_acl_their_cors_rules_answer_browsers_and_a_website_set_by_s3_is_served() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    run_ok(d, &["bucket", "create", "site", "--public"]);
    run_ok(d, &["bucket", "create", "closed"]);
    assert!(run_err(d, &["bucket", "create", "closed"]).contains("exists already"));
    assert!(run_err(d, &["bucket", "create", "Bad_Name"]).contains("is not a bucket name"));
    assert!(run_err(d, &["bucket", "set", "nowhere", "--public"]).contains("no bucket `nowhere`"));
    let listed = json(&run_ok(d, &["--json", "bucket", "list"]));
    let shown: Vec<(String, bool)> =
        listed.as_array().unwrap().iter().map(|b| (b["name"].as_str().unwrap().to_string(), b["public"] == true)).collect();
    assert_eq!(shown, vec![("closed".to_string(), false), ("site".to_string(), true)]);

    let server = Server::start_args(d, None, &["--site-listen", "127.0.0.1:0"]);
    let site = server.site.clone().unwrap();
    let env = [("OUTLAST_S3_KEY_ID", id.as_str()), ("OUTLAST_S3_SECRET", secret.as_str()), ("OUTLAST_SITE", site.as_str())];
    python("boto3_buckets.py", &server, &env);
    assert_eq!(server.stop(), Some(0));

    // What clients set, the CLI sees; a bucket holding objects is not deleted.
    let listed = json(&run_ok(d, &["--json", "bucket", "list"]));
    assert_eq!(listed[1]["cors_rules"], 0, "{listed}");
    assert_eq!(listed[1]["website"]["index"], "home.html", "{listed}");
    assert_eq!(listed[1]["website"]["error"], "missing.html", "{listed}");
    assert!(listed[0]["website"].is_null(), "{listed}");
    run_ok(d, &["rm", "site/home.html"]);
    run_ok(d, &["rm", "site/missing.html"]);
    run_ok(d, &["bucket", "set", "site", "--private"]);
    assert_eq!(json(&run_ok(d, &["--json", "bucket", "list"]))[1]["public"], false);
    assert!(run_err(d, &["bucket", "delete", "site"]).contains("is not empty"));
    run_ok(d, &["rm", "site/index.html"]);
    run_ok(d, &["bucket", "delete", "site"]);
    assert_eq!(json(&run_ok(d, &["--json", "bucket", "list"])).as_array().unwrap().len(), 1);
}

#[test]
fn two_gateways_on_one_store_read_each_others_writes_at_once() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let a = Server::start(d);
    let b = Server::start_args(d, None, &[]);
    let env = [
        ("OUTLAST_S3_KEY_ID", id.as_str()),
        ("OUTLAST_S3_SECRET", secret.as_str()),
        ("OUTLAST_S3_ENDPOINT_B", b.endpoint.as_str()),
    ];
    python("boto3_two_gateways.py", &a, &env);
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
}

#[test]
fn over_https_boto3_sends_bodies_unsigned_with_trailing_checksums_and_the_gateway_checks_them() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let (id, secret) = key(d, &[]);
    let (cert, key_file) = (d.join("s3.crt"), d.join("s3.key"));
    let ca = certificate(&cert, &key_file, &["127.0.0.1", "localhost"]);
    std::fs::write(d.join("ca.pem"), ca).unwrap();
    let server = Server::start_args(d, None, &["--tls-cert", "s3.crt", "--tls-key", "s3.key"]);
    assert!(server.endpoint.starts_with("https://"), "{}", server.endpoint);
    // Handshakes that never finish hold no one up: twenty silent connections and one that
    // speaks plain HTTP stay open while the client works.
    let addr = server.endpoint.trim_start_matches("https://").to_string();
    let opened = std::time::Instant::now();
    let silent: Vec<std::net::TcpStream> = (0..20).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let ca = d.join("ca.pem").display().to_string();
    python(
        "boto3_https.py",
        &server,
        &[("OUTLAST_S3_KEY_ID", id.as_str()), ("OUTLAST_S3_SECRET", secret.as_str()), ("OUTLAST_S3_CA", ca.as_str())],
    );
    // The plain HTTP one was refused; the silent ones are let go once the handshake
    // time (10 s) is up, not kept for ever.
    let ended = |mut c: &std::net::TcpStream| {
        c.set_read_timeout(Some(
            std::time::Duration::from_secs(20).saturating_sub(opened.elapsed()).max(std::time::Duration::from_secs(1)),
        ))
        .unwrap();
        let mut buf = [0u8; 256];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // a TLS alert
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    };
    assert!(ended(&plain), "a connection that is not TLS stays open");
    assert!(ended(&silent[0]), "a handshake that never starts holds its connection");
    assert!(opened.elapsed() >= std::time::Duration::from_secs(9), "silent connections were cut before their time");
    assert_eq!(server.stop(), Some(0));
    // What the clients wrote, as the CLI sees it.
    let names: Vec<String> = json(&run_ok(d, &["--json", "ls", "tls/"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["tls/big", "tls/one", "tls/trailed"]);
}

/// A client that sends its request head slowly, or nothing at all, does not hold its socket
/// for ever on either listener: past `--header-timeout` it is closed, while others are served.
#[test]
fn slow_or_silent_clients_are_let_go_after_the_header_timeout_on_both_listeners() {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let dir = init_store("2", "3");
    let d = dir.path();
    let server = Server::start_args(d, None, &["--site-listen", "127.0.0.1:0", "--header-timeout", "1s"]);
    let site = server.site.clone().unwrap();
    for url in [server.endpoint.as_str(), site.as_str()] {
        let addr = url.trim_start_matches("http://");
        let opened = Instant::now();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        // Meanwhile a whole request is answered.
        let mut whole = TcpStream::connect(addr).unwrap();
        whole.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        whole.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 "), "{url}: {answer}");
        for (what, mut c) in [("a slow head", slow), ("a silent client", silent)] {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut sink = Vec::new();
            let ended = c.read_to_end(&mut sink);
            assert!(ended.is_ok(), "{url}: {what} was not let go: {ended:?}");
            assert!(opened.elapsed() >= Duration::from_millis(900), "{url}: {what} was cut before its time");
        }
    }
    assert_eq!(server.stop(), Some(0));
}

/// Over TLS too: a client that chooses HTTP/2 or HTTP/1.1 in its handshake and then says
/// nothing is let go after the header timeout, on both listeners.
#[test]
fn silent_clients_over_tls_are_let_go_after_the_header_timeout_whichever_protocol_they_chose() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let ca = certificate(&d.join("s3.crt"), &d.join("s3.key"), &["127.0.0.1", "localhost"]);
    std::fs::write(d.join("ca.pem"), ca).unwrap();
    let args = ["--site-listen", "127.0.0.1:0", "--tls-cert", "s3.crt", "--tls-key", "s3.key", "--header-timeout", "1s"];
    let server = Server::start_args(d, None, &args);
    let site = server.site.clone().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/tls_silent.py");
    for url in [server.endpoint.as_str(), site.as_str()] {
        let port = url.rsplit(':').next().unwrap();
        for protocol in ["h2", "http/1.1"] {
            let out = Command::new("python3")
                .arg(&script)
                .args(["localhost", port])
                .arg(d.join("ca.pem"))
                .arg(protocol)
                .output()
                .unwrap();
            assert!(out.status.success(), "{url} {protocol}: {}", String::from_utf8_lossy(&out.stderr));
            let kept: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            assert!((0.9..10.0).contains(&kept), "{url} {protocol}: kept {kept} s");
        }
    }
    assert_eq!(server.stop(), Some(0));
}
