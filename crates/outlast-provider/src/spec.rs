//! How a provider is described in `outlast.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProviderError;

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
