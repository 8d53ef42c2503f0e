//! Composite versions: an object whose bytes are those of other object versions, in order
//! (what an S3 multipart upload completes to; decision 0008). The parts are ordinary objects
//! under names the face reserves, written, scrubbed, repaired and moved as any object; the
//! composite is one manifest listing them, kept on every provider as a tombstone is.
//!
//! Each commit gives its composite a fresh version id, listed first in its origin's claim on
//! the providers (`claim.rs` in the codec): the manifest name of a commit that fails is its
//! own, so deleting it can never take another attempt's, and the claim still lets any index
//! find the composites made from an origin.

use bytes::Bytes;
use futures::future::join_all;
use outlast_codec::{names, CompositeClaim, CompositeManifest, CompositePart, Manifest, ManifestBody, VersionId};
use outlast_provider::{Provider, ProviderError};

use crate::error::{EngineError, ProviderFailure};
use crate::index::{Fence, IndexEntry};
use crate::put::PutOptions;
use crate::store::Store;

/// What a composite is given besides its parts: its content type, metadata and precondition
/// as a put takes them, and its origin (the face's upload id), under which its version id is
/// claimed so that the parts can be told to belong to it.
#[derive(Debug, Clone)]
pub struct CompositeOptions {
    /// Content type, metadata and precondition, as for a put (`md5` is not used: each part's
    /// own hashes are kept).
    pub put: PutOptions,
    /// What the composite is made from.
    pub origin: VersionId,
    /// A name that must still be at its version when the composite commits (the upload's
    /// record, which a sweep removes before it lets the parts go), judged with the commit.
    pub fence: Option<Fence>,
}

impl Store {
    /// Makes `name` the concatenation of `parts` (each the current version of its name, as
    /// read by the caller, holding data of its own): one manifest under a fresh version id,
    /// claimed for `opts.origin` and then committed on every provider at the write quorum once
    /// `opts.put.precondition` holds. Returns the new index entry.
    pub async fn commit_composite(
        &self,
        name: &str,
        parts: &[IndexEntry],
        opts: CompositeOptions,
    ) -> Result<IndexEntry, EngineError> {
        Self::check_name(name)?;
        crate::metadata::check(&opts.put)?;
        let bad = |reason: String| EngineError::BadParts { name: name.to_string(), reason };
        if parts.is_empty() {
            return Err(bad("no parts".into()));
        }
        let mut listed = Vec::with_capacity(parts.len());
        for part in parts {
            let now = self.index.get(&part.name).await?;
            if now.as_ref().map(|e| e.stamp) != Some(part.stamp) {
                return Err(bad(format!("part `{}` changed since it was read", part.name)));
            }
            let ManifestBody::Object(om) = self.open_manifest(part)?.body else {
                return Err(bad(format!("part `{}` is not an object with data of its own", part.name)));
            };
            listed.push(CompositePart {
                name: part.name.clone(),
                stamp: part.stamp,
                size: om.size,
                blake3: om.blake3,
                md5: om.md5,
            });
        }
        let size = listed.iter().map(|p| p.size).sum();
        let composite = CompositeManifest {
            size,
            content_type: opts.put.content_type.clone(),
            user_metadata: opts.put.metadata.clone(),
            parts: listed,
        };
        let vid = VersionId::generate();
        self.claim_composite(name, &opts.origin, &vid).await?;
        let stamp = self.next_stamp_with(name, vid).await?;
        let etag = composite.etag();
        let entry = IndexEntry {
            name: name.to_string(),
            stamp,
            size,
            content_type: composite.content_type.clone(),
            etag: etag.clone(),
            sealed_manifest: Vec::new(),
            placed: None,
        };
        let manifest = Manifest { name: name.to_string(), stamp, body: ManifestBody::Composite(composite), revision: 0 };
        let committed = self.commit_everywhere(&manifest, entry, false, opts.put.precondition, opts.fence.as_ref()).await?;
        // Committed: from here no error may read as "nothing was committed" (a face would open
        // the upload again while its composite lives). An index that does not answer now is
        // told the version made; a newer one, if any, is found at the next look.
        match self.index.get(name).await {
            Ok(current) => {
                current.filter(|e| e.stamp == stamp).ok_or_else(|| EngineError::Superseded { name: name.to_string(), size, etag })
            }
            Err(e) => {
                tracing::warn!(name, "committed; the index did not answer right after: {e}");
                Ok(committed)
            }
        }
    }

    /// Whether `vid` is the current version of its name in this index.
    pub async fn is_current(&self, vid: &VersionId) -> Result<bool, EngineError> {
        self.index.is_current(vid).await
    }

    /// Adds `vid` to the claim of `origin` on every provider (read, merged, written back),
    /// before any manifest of `vid` is written; fails below the write quorum. As for the
    /// manifest, a provider known to be slow is not waited for once the quorum is in. A claim
    /// that does not open (damaged) is replaced.
    async fn claim_composite(&self, name: &str, origin: &VersionId, vid: &VersionId) -> Result<(), EngineError> {
        let blob = names::claim_blob(&self.keys, origin);
        let needed = self.config.coding.write_quorum();
        let writes = self.providers.iter().enumerate().map(|(i, p)| (i, self.claim_on(p, &blob, origin, vid))).collect();
        let out = crate::quorum::gather(writes, needed, &self.impatient()).await;
        let mut failures = self.not_in_time(&out.abandoned, "claim");
        let mut ok = 0;
        for (i, r) in out.answered {
            match r {
                Ok(()) => ok += 1,
                Err(e) => failures.push(ProviderFailure::new(self.providers[i].name(), e.to_string())),
            }
        }
        if ok < needed {
            return Err(EngineError::Quorum { name: name.to_string(), ok, needed, failures });
        }
        Ok(())
    }

    async fn claim_on(&self, p: &Provider, blob: &str, origin: &VersionId, vid: &VersionId) -> Result<(), ProviderError> {
        let mut claim = CompositeClaim { origin: *origin, composites: Vec::new() };
        match p.read(blob).await {
            Ok(bytes) => {
                if let Ok(held) = CompositeClaim::open(&self.keys, blob, &bytes) {
                    claim.composites = held.composites;
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        claim.composites.push(*vid);
        p.write(blob, Bytes::from(claim.seal(&self.keys, blob))).await
    }

    /// The version ids the providers' claims list for `origin` (none for an origin from before
    /// claims, whose composite took the origin's own id), or `None` when a provider cannot say
    /// (unreachable, or a claim that does not open): then nothing may be decided from them.
    pub async fn composites_claimed(&self, origin: &VersionId) -> Result<Option<Vec<VersionId>>, EngineError> {
        let blob = names::claim_blob(&self.keys, origin);
        let mut all: Vec<VersionId> = Vec::new();
        for r in join_all(self.providers.iter().map(|p| p.read(&blob))).await {
            let bytes = match r {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(_) => return Ok(None),
            };
            let Ok(claim) = CompositeClaim::open(&self.keys, &blob, &bytes) else { return Ok(None) };
            for vid in claim.composites {
                if !all.contains(&vid) {
                    all.push(vid);
                }
            }
        }
        Ok(Some(all))
    }

    /// Deletes the claim of `origin` wherever it can, once nothing it lists may live and the
    /// parts are gone: best effort, a claim left behind only costs its few bytes.
    pub async fn release_claim(&self, origin: &VersionId) {
        let blob = names::claim_blob(&self.keys, origin);
        let _ = join_all(self.providers.iter().map(|p| p.delete(&blob))).await;
    }

    /// Whether a composite with version id `vid` may still need its parts: it is current in
    /// this index; or a provider holds its manifest and this index knows no newer version of
    /// its name (a gateway on another state folder committed it); or a provider cannot say.
    /// A face lets go of an upload's parts only when this is false: one index alone may be
    /// stale, the providers are the record (decision 0001).
    pub async fn composite_may_live(&self, vid: &VersionId) -> Result<bool, EngineError> {
        if self.index.is_current(vid).await? {
            return Ok(true);
        }
        let blob = names::manifest_blob(&self.keys, vid);
        for p in &self.providers {
            let bytes = match p.read(&blob).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(_) => return Ok(true),
            };
            // One that does not open (damaged, planted) cannot be judged: it keeps the parts.
            let Ok(m) = Manifest::open(&self.keys, &blob, &bytes) else { return Ok(true) };
            let newer = self.index.latest_stamp(&m.name).await?.is_some_and(|t| t > m.stamp.time_ns);
            if m.stamp.vid != *vid || !newer {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The parts of version `entry`, if it is a composite.
    pub fn composite_parts(&self, entry: &IndexEntry) -> Result<Option<Vec<CompositePart>>, EngineError> {
        Ok(match self.open_manifest(entry)?.body {
            ManifestBody::Composite(c) => Some(c.parts),
            _ => None,
        })
    }
}
