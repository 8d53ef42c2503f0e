//! From a request to what it asks for: the site by its Host header, the key by its path. A
//! path is percent-decoded and its dot segments resolved inside the site, so no URL names a
//! key above the site's root (decoded `..` included).

use outlast_s3::buckets::{BucketRecord, Website};

/// A bucket served as a website.
#[derive(Debug, Clone)]
pub struct Site {
    /// The bucket: its objects are the store's names under `BUCKET/`.
    pub bucket: String,
    /// How it is served.
    pub website: Website,
}

/// The website buckets among `buckets`.
pub fn sites_of(buckets: Vec<(String, BucketRecord)>) -> Vec<Site> {
    buckets.into_iter().filter_map(|(bucket, r)| r.website.map(|website| Site { bucket, website })).collect()
}

/// The site a request for `host` (a Host header, port and case ignored) is served from: the
/// one that lists the host, else the bucket named as the host, else the only site there is.
pub fn site_for<'a>(sites: &'a [Site], host: Option<&str>) -> Option<&'a Site> {
    let host = host.map(|h| h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(h, _)| h));
    let host = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    if let Some(h) = &host {
        if let Some(s) = sites.iter().find(|s| s.website.hosts.iter().any(|x| x.eq_ignore_ascii_case(h))) {
            return Some(s);
        }
        if let Some(s) = sites.iter().find(|s| s.bucket == *h) {
            return Some(s);
        }
    }
    match sites {
        [only] => Some(only),
        _ => None,
    }
}

/// What a URL path asks of a site.
#[derive(Debug, PartialEq, Eq)]
pub struct Asked {
    /// The key, dot segments resolved ("" for the root).
    pub key: String,
    /// Whether the path names a folder (ends with `/`, or is the root).
    pub folder: bool,
}

/// Decodes and resolves `path`; `None` when it does not decode to UTF-8 without NUL.
pub fn asked(path: &str) -> Option<Asked> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?;
    if decoded.contains('\0') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let last = decoded.rsplit('/').next().unwrap_or("");
    let folder = segments.is_empty() || matches!(last, "" | "." | "..");
    Some(Asked { key: segments.join("/"), folder })
}

/// The key of the index document of folder `key`.
pub fn index_of(key: &str, index: &str) -> String {
    if key.is_empty() {
        index.to_string()
    } else {
        format!("{key}/{index}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(bucket: &str, hosts: &[&str]) -> Site {
        let website = Website { index: "index.html".into(), error: None, hosts: hosts.iter().map(|h| h.to_string()).collect() };
        Site { bucket: bucket.into(), website }
    }

    #[test]
    fn dot_segments_never_climb_above_the_site() {
        let a = |p| asked(p).unwrap();
        assert_eq!(a("/"), Asked { key: "".into(), folder: true });
        assert_eq!(a("/a/b.html"), Asked { key: "a/b.html".into(), folder: false });
        assert_eq!(a("/a/"), Asked { key: "a".into(), folder: true });
        assert_eq!(a("/../../etc/passwd"), Asked { key: "etc/passwd".into(), folder: false });
        assert_eq!(a("/a/%2e%2e/%2E%2E/b"), Asked { key: "b".into(), folder: false });
        assert_eq!(a("/a/..%2f..%2f/c"), Asked { key: "c".into(), folder: false });
        assert_eq!(a("/a/b/.."), Asked { key: "a".into(), folder: true });
        assert_eq!(a("/x%20y.txt"), Asked { key: "x y.txt".into(), folder: false });
        assert!(asked("/a%00b").is_none() && asked("/%ff").is_none());
        assert_eq!(index_of("", "index.html"), "index.html");
        assert_eq!(index_of("docs", "index.html"), "docs/index.html");
    }

    #[test]
    fn the_host_header_picks_the_site() {
        let sites = vec![site("blog", &["blog.example.com"]), site("shop.example.com", &[])];
        assert_eq!(site_for(&sites, Some("Blog.Example.com:8443")).unwrap().bucket, "blog");
        assert_eq!(site_for(&sites, Some("shop.example.com")).unwrap().bucket, "shop.example.com");
        assert!(site_for(&sites, Some("other.example.com")).is_none());
        assert!(site_for(&sites, None).is_none());
        let one = vec![site("blog", &["blog.example.com"])];
        assert_eq!(site_for(&one, Some("127.0.0.1:8080")).unwrap().bucket, "blog", "the only site serves any host");
        assert!(site_for(&[], Some("x")).is_none());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No path, however it mixes slashes, dots and their encodings, names a key with an
        /// empty, `.` or `..` segment (so none climbs above the site), and the key it names
        /// asks for itself again.
        #[test]
        fn no_path_names_a_key_above_the_site(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("/"), Just("."), Just(".."), Just("%2e"), Just("%2E"), Just("%2f"), Just("%2F"),
                    Just("a"), Just("b c"), Just("%00"), Just("%ff"), Just("é"), Just("%")
                ],
                0..24,
            )
        ) {
            let path = format!("/{}", parts.concat());
            if let Some(a) = asked(&path) {
                prop_assert!(a.key.split('/').all(|s| !matches!(s, "." | "..")), "{} -> {}", path, a.key);
                prop_assert!(a.key.is_empty() || a.key.split('/').all(|s| !s.is_empty()), "{} -> {}", path, a.key);
                prop_assert!(!a.key.contains('\0'));
                if !a.key.contains('%') {
                    prop_assert_eq!(asked(&format!("/{}", a.key)).map(|b| b.key), Some(a.key.clone()));
                }
            }
        }
    }
}
