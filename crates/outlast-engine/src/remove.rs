//! Removing an object: a tombstone committed on a write quorum (so that recovery keeps the
//! name deleted), then the old version's blobs deleted; and the clean-up of writes that did
//! not commit.

use std::time::Duration;

use futures::future::join_all;
use outlast_codec::{names, Manifest, ManifestBody, VersionId};

use crate::error::{EngineError, ProviderFailure};
use crate::index::{BlobRef, Fence, IndexEntry, Precondition};
use crate::intent::WriteIntent;
use crate::stamps::now_ns;
use crate::store::Store;

/// How long cleanup deletes wait for a provider that does not answer.
const DELETE_PATIENCE: Duration = Duration::from_secs(5);

impl Store {
    /// Deletes `name` by committing a tombstone (so recovery keeps it deleted), then removes the
    /// old version's blobs.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        self.remove_if(name, Precondition::Any).await
    }

    /// [`Self::remove`] once `precondition` holds at the commit ([`EngineError::Conflict`]
    /// otherwise, and nothing changes): a face that removes what it read (an upload record)
    /// must not remove what another writer put there since.
    pub async fn remove_if(&self, name: &str, precondition: Precondition) -> Result<(), EngineError> {
        Self::check_name(name)?;
        if self.index.get(name).await?.is_none() {
            return Err(EngineError::NotFound(name.to_string()));
        }
        let stamp = self.next_stamp(name).await?;
        let manifest = Manifest { name: name.to_string(), stamp, body: ManifestBody::Tombstone, revision: 0 };
        let entry = IndexEntry {
            name: name.to_string(),
            stamp,
            size: 0,
            content_type: None,
            etag: String::new(),
            sealed_manifest: Vec::new(),
            placed: None,
        };
        self.commit_everywhere(&manifest, entry, true, precondition, None).await.map(|_| ())
    }

    /// Commits a version that is its manifest alone (a tombstone, a composite) on every
    /// provider, at the write quorum, then removes the blobs of the version it replaced.
    /// `entry` is the index row, without its sealed manifest; returns it as committed.
    pub(crate) async fn commit_everywhere(
        &self,
        manifest: &Manifest,
        mut entry: IndexEntry,
        tombstone: bool,
        precondition: Precondition,
        fence: Option<&Fence>,
    ) -> Result<IndexEntry, EngineError> {
        let stamp = manifest.stamp;
        let blob = names::manifest_blob(&self.keys, &stamp.vid);
        let sealed = bytes::Bytes::from(manifest.seal(&self.keys, &blob));
        entry.sealed_manifest = sealed.to_vec();
        let targets: Vec<BlobRef> =
            self.providers.iter().map(|p| BlobRef { provider: p.name().into(), blob: blob.clone(), size: 0 }).collect();
        // One small blob per provider: its intent takes no lease.
        let intent = WriteIntent::begin(self, stamp.vid, targets, 0, Vec::new()).await?;
        let committed = async {
            let written = self.write_everywhere(&entry.name, &blob, sealed).await?;
            let garbage = intent.commit(&entry, &written, tombstone, precondition, fence).await?;
            if written.len() < self.providers.len() {
                self.note_debt(); // it lives on every provider
            }
            Ok(garbage)
        };
        match committed.await {
            Ok(garbage) => {
                intent.finish().await;
                self.delete_blobs(&garbage).await;
                Ok(entry)
            }
            Err(e) => {
                intent.abandon(self).await?;
                Err(e)
            }
        }
    }

    /// Writes the sealed manifest `blob` to every provider; returns where it was written, at
    /// least the write quorum.
    async fn write_everywhere(&self, name: &str, blob: &str, sealed: bytes::Bytes) -> Result<Vec<BlobRef>, EngineError> {
        let q = self.config.coding.write_quorum();
        let writes = self.providers.iter().enumerate().map(|(i, p)| (i, p.write(blob, sealed.clone()))).collect();
        // As for a put: a provider known to be slow is not waited for once the quorum is in
        // (its copy is debt that repair pays).
        let out = crate::quorum::gather(writes, q, &self.impatient()).await;
        out.note_write_times(|i| &self.providers[i]);
        let mut written = Vec::new();
        let mut failures = self.not_in_time(&out.abandoned, "manifest");
        for (i, r) in out.answered {
            match r {
                Ok(()) => written.push(BlobRef {
                    provider: self.providers[i].name().to_string(),
                    blob: blob.to_string(),
                    size: sealed.len() as u64,
                }),
                Err(e) => failures.push(ProviderFailure::new(self.providers[i].name(), e.to_string())),
            }
        }
        if written.len() < q {
            return Err(EngineError::Quorum { name: name.into(), ok: written.len(), needed: q, failures });
        }
        Ok(written)
    }

    /// Indexes of the providers known to be slow, which a write to every provider does not
    /// wait for once its quorum is in.
    pub(crate) fn impatient(&self) -> Vec<usize> {
        let slow = self.slow_providers();
        (0..self.providers.len()).filter(|&i| slow.iter().any(|s| s == self.providers[i].name())).collect()
    }

    /// The failures of the providers a write stopped waiting for (`abandoned`, by index),
    /// saying which `what` they did not take.
    pub(crate) fn not_in_time(&self, abandoned: &[usize], what: &str) -> Vec<ProviderFailure> {
        abandoned
            .iter()
            .map(|&i| {
                let p = self.providers[i].name();
                ProviderFailure::new(p, format!("`{p}` did not take the {what} in time"))
            })
            .collect()
    }

    /// Removes what an uncommitted write may have left; what cannot be removed now stays
    /// recorded as pending, for gc.
    pub(crate) async fn abandon_write(&self, vid: &VersionId) -> Result<(), EngineError> {
        let pending = self.index.pending_blobs(vid).await?;
        if self.delete_blobs(&pending).await == pending.len() {
            self.index.end_pending(vid).await?;
        } else {
            self.index.release_pending(vid).await?;
        }
        Ok(())
    }

    /// Best-effort deletion, all at once, waiting at most [`DELETE_PATIENCE`] for a provider
    /// that does not answer; what is not deleted is recorded as garbage, which gc removes after
    /// its grace period.
    pub(crate) async fn delete_blobs(&self, blobs: &[BlobRef]) -> usize {
        let results = join_all(blobs.iter().map(|b| async move {
            match self.provider(&b.provider) {
                Some(p) => tokio::time::timeout(DELETE_PATIENCE, p.delete(&b.blob)).await.is_ok_and(|r| r.is_ok()),
                None => false,
            }
        }))
        .await;
        let left: Vec<BlobRef> = blobs.iter().zip(&results).filter(|(_, ok)| !**ok).map(|(b, _)| b.clone()).collect();
        if let Err(e) = self.index.note_garbage(&left, now_ns()).await {
            tracing::warn!("could not record {} blobs left to gc: {e}", left.len());
        }
        results.into_iter().filter(|ok| *ok).count()
    }
}
