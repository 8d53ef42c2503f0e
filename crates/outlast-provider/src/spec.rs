//! How a provider is described in `outlast.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ProviderError;

/// OpenDAL schemes compiled into this build.
pub const SCHEMES: &[&str] = &["fs", "s3", "azblob", "gcs", "sftp", "webdav"];

/// One provider entry of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Stable name; manifests record shards by this name, so it must not change.
    pub name: String,
    /// The organisation that could end this provider. Two buckets at one company share a domain.
    pub domain: String,
    /// OpenDAL scheme (`fs`, `s3`, `azblob`, `gcs`, `sftp`, `webdav`).
    pub scheme: String,
    /// OpenDAL options for the scheme (bucket, endpoint, root, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Options whose values come from environment variables: option name -> variable name.
    /// Keeps secrets out of the config file.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ProviderSpec {
    /// The options with environment-supplied values filled in.
    pub fn resolved_options(&self) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut opts = self.options.clone();
        for (opt, var) in &self.env {
            let value = std::env::var(var).map_err(|_| ProviderError::Config {
                provider: self.name.clone(),
                message: format!("option `{opt}` should come from environment variable `{var}`, which is not set"),
            })?;
            opts.insert(opt.clone(), value);
        }
        Ok(opts)
    }

    /// Checks what can be checked without building: the scheme is known.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if !SCHEMES.contains(&self.scheme.as_str()) {
            return Err(ProviderError::Config {
                provider: self.name.clone(),
                message: format!("unknown scheme `{}` (this build knows {})", self.scheme, SCHEMES.join(", ")),
            });
        }
        Ok(())
    }
}

/// Where a provider's blobs live, normalised so that two specs naming one place compare equal:
/// the service (scheme, endpoint, bucket or container) and the root as path components.
/// Two providers at one location (a copied root, a trailing slash, a symlink), or one inside
/// another, would each take the other's blobs for their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The service holding the root: `fs`, or scheme, endpoint and bucket.
    pub service: String,
    /// The root's path components inside it.
    pub path: Vec<String>,
}

impl Location {
    /// Whether the two are one place, or one lies inside the other.
    pub fn overlaps(&self, other: &Location) -> bool {
        self.service == other.service && {
            let n = self.path.len().min(other.path.len());
            self.path[..n] == other.path[..n]
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.path.join("/"))
    }
}

impl ProviderSpec {
    /// The option's value, from the file or (when set) its environment variable.
    fn option(&self, key: &str) -> Option<String> {
        self.options.get(key).cloned().or_else(|| self.env.get(key).and_then(|var| std::env::var(var).ok()))
    }

    /// Where this provider's blobs live. Local roots are resolved as the file system resolves
    /// them (symlinks and `..`) as far as they exist; the rest is normalised as written.
    pub fn location(&self) -> Location {
        let root = self.option("root").unwrap_or_default();
        if self.scheme == "fs" {
            return Location { service: "fs".into(), path: components(&resolve_local(&root)) };
        }
        let endpoint = self.option("endpoint").map(|e| normalise_endpoint(&e)).unwrap_or_else(|| "(default)".into());
        let bucket = ["bucket", "container"].iter().find_map(|k| self.option(k)).unwrap_or_default();
        // S3-compatible, Azure and GCS buckets are one namespace per endpoint; SFTP and WebDAV
        // roots are paths on the endpoint's host.
        Location { service: format!("{}://{endpoint}/{bucket}", self.scheme), path: components(&root) }
    }
}

/// Lower-cases the scheme and host of an endpoint and drops a trailing slash and default port.
fn normalise_endpoint(e: &str) -> String {
    let e = e.trim().trim_end_matches('/');
    let (scheme, rest) = e.split_once("://").unwrap_or(("", e));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = authority.to_ascii_lowercase();
    let authority = match scheme.to_ascii_lowercase().as_str() {
        "https" => authority.strip_suffix(":443").unwrap_or(&authority).to_string(),
        "http" => authority.strip_suffix(":80").unwrap_or(&authority).to_string(),
        "ssh" | "sftp" => authority.strip_suffix(":22").unwrap_or(&authority).to_string(),
        _ => authority,
    };
    let path = components(path).join("/");
    if path.is_empty() {
        authority
    } else {
        format!("{authority}/{path}")
    }
}

/// Path components with `.` and empty ones dropped and `..` applied.
fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// The canonical form of a local root: the longest part that exists resolved by the file
/// system (symlinks, `..`), the rest appended as written. Relative roots are relative to the
/// working folder, as the file system provider takes them.
fn resolve_local(root: &str) -> String {
    let path = std::path::Path::new(root);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let lexical = std::path::PathBuf::from(format!("/{}", components(&absolute.to_string_lossy()).join("/")));
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out.to_string_lossy().into_owned();
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical.to_string_lossy().into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scheme: &str, options: &[(&str, &str)]) -> ProviderSpec {
        ProviderSpec {
            name: "x".into(),
            domain: "d".into(),
            scheme: scheme.into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env: Default::default(),
        }
    }

    #[test]
    fn one_folder_written_two_ways_is_one_location() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(&a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("link")).unwrap();
        let loc = |root: String| spec("fs", &[("root", &root)]).location();
        let base = loc(a.display().to_string());
        for same in [format!("{}/", a.display()), format!("{}/../a", a.display()), dir.path().join("link").display().to_string()]
        {
            assert_eq!(loc(same.clone()), base, "{same}");
        }
        // One inside another overlaps; siblings do not, nor do folders that do not exist yet.
        assert!(loc(a.join("inner").display().to_string()).overlaps(&base));
        assert!(base.overlaps(&loc(dir.path().display().to_string())));
        assert!(!loc(dir.path().join("b/x").display().to_string()).overlaps(&base));
        assert!(!loc(dir.path().join("ab").display().to_string()).overlaps(&base));
    }

    #[test]
    fn object_stores_compare_endpoint_bucket_and_root() {
        let s3 = |endpoint: &str, bucket: &str, root: &str| {
            spec("s3", &[("endpoint", endpoint), ("bucket", bucket), ("root", root)]).location()
        };
        let base = s3("http://127.0.0.1:9000", "b", "/outlast");
        assert_eq!(s3("HTTP://127.0.0.1:9000/", "b", "outlast/"), base);
        assert!(s3("http://127.0.0.1:9000", "b", "/").overlaps(&base));
        assert!(!s3("http://127.0.0.1:9000", "other", "/outlast").overlaps(&base));
        assert!(!s3("http://127.0.0.1:9001", "b", "/outlast").overlaps(&base));
        assert!(!s3("http://127.0.0.1:9000", "b", "/outlast2").overlaps(&base));
        assert_eq!(normalise_endpoint("https://Example.COM:443/"), "example.com");
    }
}
