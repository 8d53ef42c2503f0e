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
    /// Hex BLAKE3 of the plaintext.
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
        }
    }

    /// Objects whose names start with `prefix`, from the index alone.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, EngineError> {
        Ok(self.index.list(prefix).await?.iter().map(Self::info).collect())
    }

    /// Everything known about `name`, from the index and its sealed manifest.
    pub async fn stat(&self, name: &str) -> Result<ObjectInfo, EngineError> {
        let e = self.index.get(name).await?.ok_or_else(|| EngineError::NotFound(name.to_string()))?;
        let mut info = Self::info(&e);
        if let ManifestBody::Object(o) = self.open_manifest(&e)?.body {
            info.metadata = o.user_metadata;
            info.placement = o.placement.into_iter().map(|p| p.provider).collect();
            info.coding = Some((o.k, o.n));
        }
        Ok(info)
    }
}
