//! Websites: `outlast site publish` and `outlast serve --site-listen`, checked with curl as a
//! browser or a CDN would ask: index pages, redirects to folders, the site's 404 page, paths
//! that try to climb out, content types, ETag and Last-Modified with 304s, ranges, HEAD,
//! compression, Host routing, HTTPS with a certificate renewed in place, a cache that never
//! serves an overwritten page, and a site that keeps serving with a provider refusing.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// curl with `args`; its output (stdout is the body, or what `-w` writes).
fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-s", "--max-time", "20"]).args(args).env_remove("CURL_CA_BUNDLE").output().expect("curl runs")
}

/// The status and body of a GET of `url` with `extra` arguments.
fn get(url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let mut args = vec!["-o", "-", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).stdout;
    let cut = out.iter().rposition(|&b| b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&out[cut + 1..]).parse().unwrap();
    (status, out[..cut].to_vec())
}

/// The status line and headers of a request's response.
fn head(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-D", "-", "-o", "/dev/null"];
    args.extend_from_slice(extra);
    args.push(url);
    String::from_utf8_lossy(&curl(&args).stdout).to_string()
}

/// Header `name` (lowercase) of `headers`.
fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A small site: pages, a style sheet, a video, a 404 page, a name with a space.
fn site_folder(root: &Path, title: &str) -> Vec<u8> {
    let home = format!("<html><h1>{title}</h1>{}</html>", "<p>words words words</p>".repeat(100)).into_bytes();
    write(root, "index.html", &home);
    write(root, "docs/index.html", format!("<h1>{title} docs</h1>").as_bytes());
    write(root, "style.css", b"body { color: black }");
    write(root, "404.html", b"<h1>not here</h1>");
    write(root, "a b.txt", b"spaced");
    write(root, "video.mp4", &data(2_500_000, 7));
    home
}

#[test]
fn a_published_folder_is_served_with_index_pages_404s_conditionals_ranges_and_compression() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let folder = d.join("www");
    let home = site_folder(&folder, "home");
    let r = json(&run_ok(d, &["--json", "site", "publish", "www", "site", "--error-page", "404.html"]));
    assert_eq!((r["uploaded"].as_u64(), r["unchanged"].as_u64()), (Some(6), Some(0)), "{r}");
    // Only what changed is sent again.
    write(&folder, "style.css", b"body { color: navy }");
    let r = json(&run_ok(d, &["--json", "site", "publish", "www", "site", "--error-page", "404.html"]));
    assert_eq!((r["uploaded"].as_u64(), r["unchanged"].as_u64()), (Some(1), Some(5)), "{r}");

    let server = Server::start_args(d, None, &["--site-listen", "127.0.0.1:0"]);
    let base = server.site.clone().unwrap();
    let url = |p: &str| format!("{base}{p}");

    assert_eq!(get(&url("/"), &[]), (200, home.clone()));
    let h = head(&url("/"), &[]);
    assert_eq!(header(&h, "content-type"), Some("text/html"), "{h}");
    assert!(header(&h, "cache-control").is_some_and(|c| c.starts_with("public")), "{h}");
    assert_eq!(get(&url("/docs/"), &[]), (200, b"<h1>home docs</h1>".to_vec()));
    let h = head(&url("/docs"), &[]);
    assert!(h.starts_with("HTTP/1.1 301"), "{h}");
    assert_eq!(header(&h, "location"), Some("/docs/"));
    assert_eq!(get(&url("/a%20b.txt"), &[]), (200, b"spaced".to_vec()));
    assert_eq!(get(&url("/style.css"), &[]).1, b"body { color: navy }");
    assert_eq!(header(&head(&url("/style.css"), &[]), "content-type"), Some("text/css"));
    // The site's own 404 page, with a 404; paths that climb stay inside the site.
    assert_eq!(get(&url("/nothing/here"), &[]), (404, b"<h1>not here</h1>".to_vec()));
    assert_eq!(get(&url("/../../../etc/passwd"), &["--path-as-is"]).0, 404);
    assert_eq!(get(&url("/docs/../%2e%2e/index.html"), &["--path-as-is"]), (200, home.clone()));
    assert_eq!(get(&url("/"), &["-X", "POST"]).0, 405);

    // ETag and Last-Modified: a cache revalidates with either and gets a 304.
    let h = head(&url("/"), &[]);
    let (etag, modified) = (header(&h, "etag").unwrap().to_string(), header(&h, "last-modified").unwrap().to_string());
    assert_eq!(get(&url("/"), &["-H", &format!("If-None-Match: {etag}")]).0, 304);
    assert_eq!(get(&url("/"), &["-H", &format!("If-Modified-Since: {modified}")]).0, 304);
    assert_eq!(get(&url("/"), &["-H", "If-None-Match: \"other\""]).0, 200);

    // Ranges, as a video player seeks: 206 with the bytes, a suffix, 416 past the end.
    let video = data(2_500_000, 7);
    assert_eq!(get(&url("/video.mp4"), &["-r", "1000000-1000999"]), (206, video[1_000_000..1_001_000].to_vec()));
    assert_eq!(get(&url("/video.mp4"), &["-H", "Range: bytes=-100"]), (206, video[video.len() - 100..].to_vec()));
    assert_eq!(get(&url("/video.mp4"), &["-r", "2500000-"]).0, 416);
    assert_eq!(get(&url("/video.mp4"), &[]), (200, video.clone()));
    let h = head(&url("/video.mp4"), &["-I"]);
    assert_eq!(header(&h, "content-length"), Some("2500000"), "HEAD: {h}");
    assert_eq!(header(&h, "content-type"), Some("video/mp4"));

    // Compression where the client asks for it; never for a range.
    let h = head(&url("/"), &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"), "{h}");
    assert_eq!(get(&url("/"), &["--compressed"]), (200, home.clone()));
    assert_eq!(header(&head(&url("/"), &["-H", "Accept-Encoding: gzip", "-r", "0-9"]), "content-encoding"), None);

    // An overwrite through another process is served at once: the cache is keyed by version.
    for _ in 0..3 {
        assert_eq!(get(&url("/"), &[]).1, home);
    }
    std::fs::write(d.join("new.html"), b"<h1>new home</h1>").unwrap();
    run_ok(d, &["put", "new.html", "site/index.html", "--content-type", "text/html"]);
    assert_eq!(get(&url("/"), &[]), (200, b"<h1>new home</h1>".to_vec()));

    assert_eq!(server.stop(), Some(0));
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    let line = log.lines().find(|l| l.contains("site cache:")).unwrap_or_else(|| panic!("no cache report: {log}"));
    let hits: u64 = line.split("site cache: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(hits >= 3, "{line}");
    assert!(log.contains("GET") && log.contains("/video.mp4 206"), "the request log: {log}");
}

/// The names the sites' certificate is for.
const NAMES: &[&str] = &["alpha.test", "beta.test", "localhost"];

#[test]
fn sites_are_chosen_by_host_and_served_over_https_with_a_renewed_certificate_picked_up() {
    let dir = init_store("2", "3");
    let d = dir.path();
    site_folder(&d.join("a"), "alpha");
    site_folder(&d.join("b"), "beta");
    run_ok(d, &["site", "publish", "a", "alpha", "--host", "alpha.test"]);
    run_ok(d, &["site", "publish", "b", "beta", "--host", "beta.test"]);
    let (cert, key) = (d.join("site.crt"), d.join("site.key"));
    let first = certificate(&cert, &key, NAMES);
    std::fs::write(d.join("first-ca.pem"), &first).unwrap();

    let tls = ["--site-listen", "127.0.0.1:0", "--tls-cert", "site.crt", "--tls-key", "site.key"];
    let server = Server::start_args(d, None, &tls);
    let base = server.site.clone().unwrap();
    let port = base.rsplit(':').next().unwrap().to_string();
    assert!(base.starts_with("https://"), "{base}");
    let at = |host: &str, ca: &str| {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let ca = d.join(ca).display().to_string();
        get(&format!("https://{host}:{port}/docs/"), &["--resolve", &resolve, "--cacert", &ca])
    };
    assert_eq!(at("alpha.test", "first-ca.pem"), (200, b"<h1>alpha docs</h1>".to_vec()));
    assert_eq!(at("beta.test", "first-ca.pem"), (200, b"<h1>beta docs</h1>".to_vec()));
    // Each connection speaks what its handshake chose.
    let resolve = format!("alpha.test:{port}:127.0.0.1");
    let ca = d.join("first-ca.pem").display().to_string();
    for (flag, status_line) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let shown = head(&format!("https://alpha.test:{port}/docs/"), &[flag, "--resolve", &resolve, "--cacert", &ca]);
        assert!(shown.starts_with(status_line), "{flag}: {shown}");
    }
    let (status, body) = at("localhost", "first-ca.pem");
    assert_eq!(status, 404, "two sites, and neither is this host's: {}", String::from_utf8_lossy(&body));
    assert_eq!(get(&format!("http://127.0.0.1:{port}/"), &[]).0, 0, "plain HTTP is not spoken on the TLS port");

    // Renewed in place: new handshakes get the new certificate, without a restart.
    let second = certificate(&cert, &key, NAMES);
    std::fs::write(d.join("second-ca.pem"), &second).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while at("alpha.test", "second-ca.pem").0 != 200 {
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(at("alpha.test", "first-ca.pem").0, 0, "the old certificate is no longer served");
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn a_site_keeps_serving_with_a_provider_refusing_and_says_503_below_k() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let home = site_folder(&d.join("www"), "home");
    run_ok(d, &["site", "publish", "www", "site"]);
    let video = data(2_500_000, 7);

    let server = Server::start_args(d, Some("local1:deny"), &["--site-listen", "127.0.0.1:0"]);
    let base = server.site.clone().unwrap();
    assert_eq!(get(&format!("{base}/"), &[]), (200, home));
    assert_eq!(get(&format!("{base}/video.mp4"), &[]), (200, video.clone()));
    assert_eq!(get(&format!("{base}/video.mp4"), &["-r", "2000000-2000099"]), (206, video[2_000_000..2_000_100].to_vec()));
    // 3 when the refusing provider was judged terminated (it answered no call at all).
    assert!(matches!(server.stop(), Some(0 | 3)));

    // Two of three refusing: fewer than k; a prompt 503, never a hang or a wrong byte.
    let server = Server::start_args(d, Some("local1:deny;local2:deny"), &["--site-listen", "127.0.0.1:0"]);
    let base = server.site.clone().unwrap();
    let started = Instant::now();
    let (status, _) = get(&format!("{base}/video.mp4"), &[]);
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(matches!(server.stop(), Some(0 | 3)));
}

/// `--delete` removes what the folder no longer has, and only that: not a key left out as a
/// link, not a page another folder's index (over the same providers) has never seen, and
/// nothing without the flag.
#[test]
fn publish_delete_removes_only_what_the_folder_dropped_and_this_index_listed() {
    let dir = init_store("2", "3");
    let d = dir.path();
    let folder = d.join("www");
    for page in ["index.html", "a.html", "b.html", "c.html", "link.html"] {
        write(&folder, page, page.as_bytes());
    }
    run_ok(d, &["site", "publish", "www", "site"]);
    let names = || {
        let out = run_ok(d, &["--json", "ls", "site/"]);
        let mut v: Vec<String> = json(&out).as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };

    std::fs::remove_file(folder.join("c.html")).unwrap();
    run_ok(d, &["site", "publish", "www", "site"]);
    assert!(names().contains(&"site/c.html".to_string()), "removed without --delete: {:?}", names());

    std::fs::remove_file(folder.join("a.html")).unwrap();
    std::fs::remove_file(folder.join("link.html")).unwrap();
    std::os::unix::fs::symlink(folder.join("b.html"), folder.join("link.html")).unwrap();
    let r = json(&run_ok(d, &["--json", "site", "publish", "www", "site", "--delete"]));
    assert_eq!(r["deleted"].as_u64(), Some(2), "{r}");
    assert_eq!(names(), ["site/b.html", "site/index.html", "site/link.html"]);

    // A second state folder over the same providers, its index empty: it lists nothing, so
    // its --delete removes nothing, though its folder has none of these pages.
    let other = tempfile::tempdir().unwrap();
    for f in ["outlast.toml", "outlast.key"] {
        std::fs::copy(d.join(f), other.path().join(f)).unwrap();
    }
    write(&other.path().join("www"), "index.html", b"elsewhere");
    let r = json(&run_ok(other.path(), &["--json", "site", "publish", "www", "site", "--delete"]));
    assert_eq!((r["deleted"].as_u64(), r["uploaded"].as_u64()), (Some(0), Some(1)), "{r}");
    assert_eq!(names(), ["site/b.html", "site/index.html", "site/link.html"]);
}
