//! `outlast.toml`: providers, coding parameters, where the key and the local state live.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use outlast_provider::ProviderSpec;
use outlast_provider::{Patience, SCHEMES};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Default plaintext bytes per segment: large enough for efficient provider requests, small
/// enough that a ranged read or a repair touches little more than it needs.
pub const DEFAULT_SEGMENT_SIZE: u32 = 4 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder for local state (index); relative paths are relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Key file; relative to the config file. Default `outlast.key` beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Fingerprint of the store's master key, so a wrong key is refused up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Erasure-coding parameters.
    pub coding: Coding,
    /// How long to wait for one provider operation.
    #[serde(default, skip_serializing_if = "Timeouts::is_default")]
    pub timeouts: Timeouts,
    /// The providers, at least `n` of them.
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    /// Where the file was read from (not part of the file).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Erasure-coding parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    /// Shards needed to read.
    pub k: u16,
    /// Shards written per segment, one per provider.
    pub n: u16,
    /// Shards that must be durable before a write is acknowledged; default `k`: a write goes
    /// on while up to `n - k` providers are unreachable or refusing (stored below full
    /// redundancy, the rest owed to repair). A higher quorum refuses such writes instead, so
    /// that no acknowledged version is ever one failure from loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u16>,
    /// Plaintext bytes per segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<u32>,
    /// Segments per shard blob (default: 64 MiB of plaintext per part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_per_part: Option<u32>,
    /// Consecutive segments a read fetches with one ranged request per shard (default 1).
    /// Longer runs mean fewer requests (cheaper on providers that bill per request) but more
    /// memory, and were slower on local folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_run_segments: Option<u32>,
}

impl Coding {
    /// The effective write quorum.
    pub fn write_quorum(&self) -> usize {
        self.write_quorum.map(usize::from).unwrap_or(self.k as usize)
    }

    /// The effective segment size.
    pub fn segment_size(&self) -> u32 {
        self.segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE)
    }

    /// The layout every new version starts from (its size is filled in once known).
    pub fn layout(&self) -> Result<outlast_codec::Layout, outlast_codec::CodecError> {
        let l = outlast_codec::Layout::new(0, self.segment_size(), self.k, self.n)?;
        Ok(match self.segments_per_part {
            Some(spp) => l.with_segments_per_part(spp),
            None => l,
        })
    }
}

/// How long to wait for one provider operation. Reads that race and writes that wait for a
/// quorum give up on a straggler much sooner; these bound what waits on one provider alone
/// (repair, evacuation, scrub), which would otherwise sit out the transport's own timeouts and
/// retries, minutes per operation, on a provider that takes connections and never answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Seconds any operation may take, retries included, before it counts as failed
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_secs: Option<f64>,
    /// Slowest transfer still counted as working, in KiB/s (default 256): an operation gets
    /// its bytes' worth of time at this rate on top of `operation_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rate_kib: Option<u64>,
}

impl Timeouts {
    fn is_default(&self) -> bool {
        *self == Timeouts::default()
    }

    /// What the providers are built with.
    pub fn patience(&self) -> Patience {
        let default = Patience::default();
        Patience {
            floor: self.operation_secs.map_or(default.floor, Duration::from_secs_f64),
            min_rate: self.min_rate_kib.map_or(default.min_rate, |k| k * 1024),
        }
    }
}

/// Options each scheme cannot work without.
fn required_options(scheme: &str) -> &'static [&'static str] {
    match scheme {
        "fs" => &["root"],
        "s3" | "gcs" => &["bucket"],
        "azblob" => &["container"],
        "sftp" | "webdav" => &["endpoint"],
        _ => &[],
    }
}

impl Config {
    /// Finds the config path: `--config`, then `OUTLAST_CONFIG`, then `./outlast.toml`.
    pub fn locate(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("OUTLAST_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("outlast.toml"))
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::Config {
            path: path.to_path_buf(),
            field: "(file)".into(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "not found; create one with `outlast init` or pass --config".into()
            } else {
                e.to_string()
            },
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, EngineError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| EngineError::Config {
            path: path.to_path_buf(),
            field: e.span().map(|s| format!("(syntax at byte {})", s.start)).unwrap_or_else(|| "(syntax)".into()),
            message: e.message().to_string(),
        })?;
        cfg.path = path.to_path_buf();
        cfg.validate()?;
        Ok(cfg)
    }

    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> EngineError {
        EngineError::Config { path: self.path.clone(), field: field.into(), message: message.into() }
    }

    /// Checks every rule a store depends on and names the field that breaks one.
    pub fn validate(&self) -> Result<(), EngineError> {
        let Coding { k, n, .. } = self.coding;
        if k == 0 {
            return Err(self.invalid("coding.k", "must be at least 1"));
        }
        if k >= n {
            return Err(self.invalid(
                "coding.k",
                format!("k ({k}) must be less than n ({n}): with k >= n a single lost provider loses data"),
            ));
        }
        if let Err(e) = self.coding.layout() {
            return Err(self.invalid("coding", e.to_string()));
        }
        if self.coding.read_run_segments == Some(0) {
            return Err(self.invalid("coding.read_run_segments", "must be at least 1"));
        }
        if self.coding.segments_per_part == Some(0) {
            return Err(self.invalid("coding.segments_per_part", "must be at least 1"));
        }
        let q = self.coding.write_quorum();
        if q < k as usize || q > n as usize {
            return Err(self.invalid("coding.write_quorum", format!("{q} must be between k ({k}) and n ({n})")));
        }
        let seg = self.coding.segment_size();
        if !(64 * 1024..=64 * 1024 * 1024).contains(&seg) {
            return Err(self.invalid("coding.segment_size", format!("{seg} bytes is outside 64 KiB ..= 64 MiB")));
        }
        if let Some(secs) = self.timeouts.operation_secs {
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                return Err(self.invalid("timeouts.operation_secs", format!("{secs} must be more than 0 and at most a day")));
            }
        }
        if self.timeouts.min_rate_kib == Some(0) {
            return Err(self.invalid("timeouts.min_rate_kib", "must be at least 1"));
        }
        let mut names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let field = |f: &str| format!("providers[{i}].{f}");
            if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(self.invalid(field("name"), format!("`{}` must be non-empty letters, digits, - or _", p.name)));
            }
            if !names.insert(p.name.as_str()) {
                return Err(self.invalid(field("name"), format!("`{}` is used twice", p.name)));
            }
            if p.domain.is_empty() {
                return Err(self.invalid(field("domain"), "must name the organisation that could end this provider"));
            }
            if !SCHEMES.contains(&p.scheme.as_str()) {
                return Err(
                    self.invalid(field("scheme"), format!("unknown scheme `{}` (known: {})", p.scheme, SCHEMES.join(", ")))
                );
            }
            for opt in required_options(&p.scheme) {
                if !p.options.contains_key(*opt) && !p.env.contains_key(*opt) {
                    return Err(self.invalid(field("options"), format!("`{opt}` is required for scheme `{}`", p.scheme)));
                }
            }
        }
        // Two providers at one location each take the other's blobs for their own: a copy
        // counted twice, and maintenance that deletes "its" garbage deletes the other's data.
        let locations: Vec<_> = self.providers.iter().map(ProviderSpec::location).collect();
        for (j, b) in locations.iter().enumerate() {
            if let Some(i) = locations[..j].iter().position(|a| a.overlaps(b)) {
                let (a, b) = (&self.providers[i], &self.providers[j]);
                let how = if locations[i] == locations[j] { "are one location" } else { "overlap (one lies inside the other)" };
                return Err(self.invalid(
                    format!("providers[{j}].options"),
                    format!("`{}` and `{}` {how}: {}; give each provider a place of its own", a.name, b.name, locations[j]),
                ));
            }
        }
        if self.providers.len() < n as usize {
            return Err(
                self.invalid("providers", format!("n = {n} needs at least {n} providers, {} configured", self.providers.len()))
            );
        }
        let cap = (n - k) as usize;
        let mut per_domain: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.providers {
            *per_domain.entry(p.domain.as_str()).or_default() += 1;
        }
        let placeable: usize = per_domain.values().map(|c| (*c).min(cap)).sum();
        if placeable < n as usize {
            let list: Vec<String> = per_domain.iter().map(|(d, c)| format!("{d}: {c}")).collect();
            return Err(self.invalid(
                "providers.domain",
                format!(
                    "with k={k}, n={n} one failure domain may hold at most {cap} shards (losing it must leave k), \
                     so these domains ({}) can hold only {placeable} of {n}; add providers at other organisations or change k/n",
                    list.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Folder holding the config file.
    pub fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."))
    }

    /// The local state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(self.state_dir.clone().unwrap_or_else(|| PathBuf::from(".outlast")))
    }

    /// The key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir().join(self.key_file.clone().unwrap_or_else(|| PathBuf::from("outlast.key")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(body: &str) -> Result<Config, EngineError> {
        Config::parse(body, Path::new("/x/outlast.toml"))
    }

    fn fs(name: &str, domain: &str) -> String {
        format!(
            "[[providers]]\nname = \"{name}\"\ndomain = \"{domain}\"\nscheme = \"fs\"\noptions = {{ root = \"/tmp/{name}\" }}\n"
        )
    }

    fn field_of(r: Result<Config, EngineError>) -> String {
        match r {
            Err(EngineError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn valid_config_loads() {
        let text = format!("[coding]\nk = 2\nn = 3\n{}{}{}", fs("a", "x"), fs("b", "y"), fs("c", "z"));
        let c = cfg(&text).unwrap();
        assert_eq!(c.coding.write_quorum(), 2);
        assert_eq!(c.state_dir(), PathBuf::from("/x/.outlast"));
    }

    #[test]
    fn errors_name_the_field() {
        let three = format!("{}{}{}", fs("a", "x"), fs("b", "y"), fs("c", "z"));
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 3\nn = 3\n{three}"))), "coding.k");
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 4\n{three}"))), "providers");
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 3\nwrite_quorum = 1\n{three}"))), "coding.write_quorum");
        let same = format!("{}{}{}", fs("a", "x"), fs("b", "x"), fs("c", "z"));
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 3\n{same}"))), "providers.domain");
        let bad = three.replacen("scheme = \"fs\"", "scheme = \"ftpx\"", 1);
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 3\n{bad}"))), "providers[0].scheme");
        let noroot = three.replacen("options = { root = \"/tmp/a\" }", "", 1);
        assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 3\n{noroot}"))), "providers[0].options");
        assert!(field_of(cfg("[coding]\nk = 2\nn = ")).starts_with("(syntax"));
        assert!(field_of(cfg("[coding]\nk = 2\nn = 3\nbogus = 1\n")).starts_with("(syntax"));
        for (bad, field) in [("operation_secs = 0", "timeouts.operation_secs"), ("min_rate_kib = 0", "timeouts.min_rate_kib")] {
            assert_eq!(field_of(cfg(&format!("[coding]\nk = 2\nn = 3\n[timeouts]\n{bad}\n{three}"))), field);
        }
    }

    #[test]
    fn two_providers_at_one_location_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, root: &std::path::Path| {
            format!(
                "[[providers]]\nname = \"{name}\"\ndomain = \"{name}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
                root.display()
            )
        };
        let a = dir.path().join("a");
        let ok = format!(
            "[coding]\nk = 2\nn = 3\n{}{}{}",
            at("a", &a),
            at("b", &dir.path().join("b")),
            at("c", &dir.path().join("c"))
        );
        cfg(&ok).unwrap();
        // The same folder with a trailing slash, and a folder inside another.
        let slash = format!("[coding]\nk = 2\nn = 3\n{}{}{}", at("a", &a), at("b", &a.join("")), at("c", &dir.path().join("c")));
        let text = match cfg(&slash) {
            Err(EngineError::Config { field, message, .. }) => format!("{field}: {message}"),
            other => panic!("accepted: {other:?}"),
        };
        assert!(text.starts_with("providers[1].options") && text.contains("`a` and `b` are one location"), "{text}");
        let inside =
            format!("[coding]\nk = 2\nn = 3\n{}{}{}", at("a", &a), at("b", &a.join("sub")), at("c", &dir.path().join("c")));
        assert_eq!(field_of(cfg(&inside)), "providers[1].options");
    }

    #[test]
    fn timeouts_default_and_override() {
        let three = format!("{}{}{}", fs("a", "x"), fs("b", "y"), fs("c", "z"));
        let c = cfg(&format!("[coding]\nk = 2\nn = 3\n{three}")).unwrap();
        assert_eq!(c.timeouts.patience(), Patience::default());
        let c = cfg(&format!("[coding]\nk = 2\nn = 3\n[timeouts]\noperation_secs = 2.5\nmin_rate_kib = 64\n{three}")).unwrap();
        let p = c.timeouts.patience();
        assert_eq!((p.floor, p.min_rate), (Duration::from_millis(2500), 64 * 1024));
        // A 1 MiB transfer gets 16 s at 64 KiB/s on top of the floor.
        assert_eq!(p.limit(1 << 20), Duration::from_millis(18_500));
    }
}
