//! Listing and describing objects: from the index alone, or with the sealed manifest.

use outlast_codec::ManifestBody;
use serde::Serialize;

use crate::error::EngineError;
use crate::index::IndexEntry;
use crate::store::Store;

/// One object as `ls` and `stat` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    /// Name.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// MIME type.
    pub content_type: Option<String>,
    /// Entity tag: hex MD5 of the plaintext where the put took it (S3), else hex BLAKE3.
    pub etag: String,
    /// Version id (hex).
    pub version: String,
    /// When the version was written (ns since the Unix epoch).
    pub modified_ns: u64,
    /// User metadata (`stat` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    /// Provider of each shard (`stat` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
    /// Coding parameters (`stat` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coding: Option<(u16, u16)>,
    /// Parts, for a version made of others (a multipart upload's; `stat` only, 0 otherwise).
    #[serde(skip_serializing_if = "is_zero")]
    pub parts: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Store {
    fn info(e: &IndexEntry) -> ObjectInfo {
        ObjectInfo {
            name: e.name.clone(),
            size: e.size,
            content_type: e.content_type.clone(),
            etag: e.etag.clone(),
            version: e.stamp.vid.to_hex(),
            modified_ns: e.stamp.time_ns,
            metadata: Vec::new(),
            placement: Vec::new(),
            coding: None,
            parts: 0,
        }
    }

    /// Objects whose names start with `prefix`, from the index alone.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, EngineError> {
        Ok(self.index.list(prefix).await?.iter().map(Self::info).collect())
    }

    /// Everything known about `name`, from the index and its sealed manifest.
    pub async fn stat(&self, name: &str) -> Result<ObjectInfo, EngineError> {
        let e = self.index.get(name).await?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
        self.describe(&e)
    }

    /// The current version of `name`, if any, from the index alone: a face that answers a
    /// request about it reads this version ([`Store::get_version_into`]) and describes it.
    pub async fn current(&self, name: &str) -> Result<Option<IndexEntry>, EngineError> {
        self.index.get(name).await
    }

    /// Everything known about the version `e`, from its sealed manifest.
    pub fn describe(&self, e: &IndexEntry) -> Result<ObjectInfo, EngineError> {
        let mut info = Self::info(e);
        match self.open_manifest(e)?.body {
            ManifestBody::Object(o) => {
                info.metadata = o.user_metadata;
                info.placement = o.placement.into_iter().map(|p| p.provider).collect();
                info.coding = Some((o.k, o.n));
            }
            // Its parts are placed each on its own; the composite itself is on every provider.
            ManifestBody::Composite(c) => {
                info.metadata = c.user_metadata;
                info.parts = c.parts.len();
            }
            ManifestBody::Tombstone => {}
        }
        Ok(info)
    }
}
