//! Buckets as both faces change them: the S3 API (create, delete, ACL, CORS) and the CLI
//! (`outlast bucket ...`). A bucket is a record `.outlast/bucket/NAME` (decision 0007); its
//! settings change by a read, a change and a put conditional on the version read, so two
//! gateways changing one bucket at once never lose one of the changes.

use std::sync::Arc;

use outlast_engine::{EngineError, Precondition, Store};
use serde::{Deserialize, Serialize};

use crate::records::{now_ns, Records, BUCKETS};

/// A bucket's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// When it was created (ns since the Unix epoch).
    pub created_ns: u64,
    /// Whether anonymous requests may read its objects (and list it).
    #[serde(default)]
    pub public: bool,
    /// Its CORS rules, in the order S3 clients gave them (the first that matches applies).
    #[serde(default)]
    pub cors: Vec<CorsRule>,
    /// Served as a website by `outlast serve --site-listen`, when set.
    #[serde(default)]
    pub website: Option<Website>,
}

/// How a bucket is served as a website.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Website {
    /// The document a folder's URL serves (`index.html`).
    pub index: String,
    /// The page served with a 404 when nothing else is found, if any (`404.html`).
    #[serde(default)]
    pub error: Option<String>,
    /// Host names it answers to; empty: any host, when it is the only website.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// One CORS rule, as S3's `CORSRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// Origins allowed; one `*` may stand for any run of characters.
    pub allowed_origins: Vec<String>,
    /// Methods allowed (GET, PUT, POST, DELETE, HEAD).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for; one `*` may stand for any run of characters.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may show the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// Whether `value` matches `pattern`, where one `*` stands for any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value[..head.len()].eq_ignore_ascii_case(head)
                && value[value.len() - tail.len()..].eq_ignore_ascii_case(tail)
        }
    }
}

impl CorsRule {
    /// Whether this rule lets `origin` make a `method` request sending `headers`.
    pub fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.allowed_origins.iter().any(|o| wildcard(o, origin))
            && self.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && headers.iter().all(|h| self.allowed_headers.iter().any(|a| wildcard(a, h)))
    }

    /// What `Access-Control-Allow-Origin` says for `origin`: `*` when the rule allows any.
    pub fn allow_origin(&self, origin: &str) -> String {
        if self.allowed_origins.iter().any(|o| o == "*") {
            "*".into()
        } else {
            origin.to_string()
        }
    }
}

/// Why a bucket could not be created, changed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// Not a name S3 allows.
    #[error("`{0}` is not a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end, not an IP address")]
    InvalidName(String),
    /// It exists already.
    #[error("bucket `{0}` exists already")]
    Exists(String),
    /// It does not exist.
    #[error("no bucket `{0}` (`outlast bucket list` shows them)")]
    NoSuchBucket(String),
    /// It still holds objects.
    #[error("bucket `{0}` is not empty")]
    NotEmpty(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Checks S3's rules for bucket names.
pub fn check_bucket_name(name: &str) -> Result<(), BucketError> {
    let bad = || BucketError::InvalidName(name.to_string());
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ip_like = name.parse::<std::net::Ipv4Addr>().is_ok();
    if !(3..=63).contains(&name.len()) || !ok_chars || !ends(name.bytes().next()) || !ends(name.bytes().last()) || ip_like {
        return Err(bad());
    }
    if name.contains("..") {
        return Err(bad());
    }
    Ok(())
}

fn record_name(name: &str) -> String {
    format!("{BUCKETS}{name}")
}

/// The buckets of one store.
pub struct Buckets {
    records: Arc<Records>,
}

impl Buckets {
    /// The buckets of the store `records` reads.
    pub fn new(records: Arc<Records>) -> Self {
        Buckets { records }
    }

    /// The buckets of `store`, for a command that has no gateway.
    pub fn of(store: &Arc<Store>) -> Self {
        Buckets::new(Arc::new(Records::new(store.clone())))
    }

    /// Creates bucket `name`.
    pub async fn create(&self, name: &str, public: bool) -> Result<BucketRecord, BucketError> {
        check_bucket_name(name)?;
        let record = BucketRecord { created_ns: now_ns(), public, ..Default::default() };
        match self.records.put(&record_name(name), &record, Precondition::Absent).await {
            Ok(()) => Ok(record),
            Err(EngineError::Conflict(_)) => Err(BucketError::Exists(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Every bucket, by name.
    pub async fn list(&self) -> Result<Vec<(String, BucketRecord)>, EngineError> {
        let mut out = Vec::new();
        for name in self.records.names(BUCKETS).await? {
            if let Some(r) = self.records.bucket(&name).await? {
                out.push((name, r));
            }
        }
        Ok(out)
    }

    /// Changes bucket `name`'s settings with `change`, conditional on the version read (and
    /// read again if another gateway changed it meanwhile).
    pub async fn update(&self, name: &str, change: impl Fn(&mut BucketRecord)) -> Result<BucketRecord, BucketError> {
        for _ in 0..5 {
            let Some((vid, mut record)) = self.records.get_versioned::<BucketRecord>(&record_name(name)).await? else {
                return Err(BucketError::NoSuchBucket(name.to_string()));
            };
            change(&mut record);
            match self.records.put(&record_name(name), &record, Precondition::Current(vid)).await {
                Ok(()) => return Ok(record),
                Err(EngineError::Conflict(_) | EngineError::Superseded { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::IndexBusy.into())
    }

    /// Deletes bucket `name` if it holds no object.
    pub async fn delete(&self, name: &str) -> Result<(), BucketError> {
        if self.records.bucket(name).await?.is_none() {
            return Err(BucketError::NoSuchBucket(name.to_string()));
        }
        let store = self.records.store();
        if !store.index().objects_page(&format!("{name}/"), None, 1).await?.is_empty() {
            return Err(BucketError::NotEmpty(name.to_string()));
        }
        self.records.remove(&record_name(name)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for good in ["abc", "my.site-2026", "a".repeat(63).as_str()] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a_b", "a..b", "192.168.1.1", ".outlast", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cors_rule_matches_origins_methods_and_headers_with_one_wildcard() {
        let rule = CorsRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["x-amz-*".into(), "content-type".into()],
            ..Default::default()
        };
        assert!(rule.allows("https://www.example.com", "GET", &[]));
        assert!(rule.allows("https://a.example.com", "put", &["X-Amz-Date", "Content-Type"]));
        assert!(!rule.allows("https://example.org", "GET", &[]));
        assert!(!rule.allows("http://www.example.com", "GET", &[]));
        assert!(!rule.allows("https://www.example.com", "DELETE", &[]));
        assert!(!rule.allows("https://www.example.com", "PUT", &["authorization"]));
        assert_eq!(rule.allow_origin("https://a.example.com"), "https://a.example.com");
        let any = CorsRule { allowed_origins: vec!["*".into()], allowed_methods: vec!["GET".into()], ..Default::default() };
        assert!(any.allows("null", "GET", &[]) && any.allow_origin("https://x") == "*");
    }
}
