//! Tombstones live on every provider, so that a recovery from any k of them keeps a deleted
//! name deleted, and so do composites (decision 0008), which are their manifest alone: this
//! puts each one back where it is missing (repair, and the provider an evacuation fills).

use std::collections::HashSet;

use outlast_codec::{names, Manifest, ManifestBody};

use super::breaker::Breaker;
use crate::error::EngineError;
use crate::index::BlobRef;
use crate::jobs::status::{JobError, JobErrorKind};
use crate::store::Store;

/// What putting tombstones back did.
#[derive(Debug, Default)]
pub(crate) struct TombstoneRepair {
    /// Tombstone and composite copies written and recorded.
    pub written: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What failed.
    pub errors: Vec<JobError>,
}

impl Store {
    /// Puts each tombstone on every configured provider that lacks it (a tombstone lives on
    /// all of them, so that a recovery from any k keeps the name deleted). Its sealed bytes are
    /// read from a provider that holds it and checked before they are copied.
    pub(crate) async fn repair_tombstones(&self, breaker: &Breaker) -> Result<TombstoneRepair, EngineError> {
        let mut out = TombstoneRepair::default();
        let mut pages = self.index.tombstone_pages();
        while let Some(page) = pages.next_page().await? {
            for (name, stamp) in page {
                let blob = names::manifest_blob(&self.keys, &stamp.vid);
                let holders: HashSet<String> = self.index.blobs_of(&stamp.vid).await?.into_iter().map(|b| b.provider).collect();
                let lacking: Vec<&outlast_provider::Provider> =
                    self.providers.iter().filter(|p| !holders.contains(p.name()) && breaker.allows(p.name())).collect();
                if lacking.is_empty() {
                    continue;
                }
                let mut sealed = None;
                for h in self.providers.iter().filter(|p| holders.contains(p.name())) {
                    if let Ok(bytes) = h.read(&blob).await {
                        let genuine = Manifest::open(&self.keys, &blob, &bytes)
                            .is_ok_and(|m| m.name == name && m.stamp == stamp && matches!(m.body, ManifestBody::Tombstone));
                        if genuine {
                            sealed = Some(bytes);
                            break;
                        }
                    }
                }
                let Some(sealed) = sealed else {
                    out.errors.push(JobError::object(
                        &name,
                        None,
                        JobErrorKind::Unreadable,
                        "no provider serves its tombstone intact",
                    ));
                    continue;
                };
                for p in lacking {
                    let b = BlobRef { provider: p.name().into(), blob: blob.clone(), size: sealed.len() as u64 };
                    if self.copy_to(p, &name, &b, sealed.clone(), breaker, &mut out).await {
                        out.written += self.index.add_tombstone_copy(&stamp.vid, &b).await? as u64;
                    }
                }
            }
        }
        // Composites: the index holds their sealed manifest, the same bytes the providers do.
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            for entry in page.into_iter().filter(|e| e.placed.is_none()) {
                let Ok(Manifest { body: ManifestBody::Composite(_), .. }) = self.open_manifest(&entry) else { continue };
                let vid = entry.stamp.vid;
                let blob = names::manifest_blob(&self.keys, &vid);
                let holders: HashSet<String> =
                    self.index.blobs_of(&vid).await?.into_iter().filter(|b| b.blob == blob).map(|b| b.provider).collect();
                let sealed = bytes::Bytes::from(entry.sealed_manifest.clone());
                for p in self.providers.iter().filter(|p| !holders.contains(p.name()) && breaker.allows(p.name())) {
                    let b = BlobRef { provider: p.name().into(), blob: blob.clone(), size: sealed.len() as u64 };
                    if self.copy_to(p, &entry.name, &b, sealed.clone(), breaker, &mut out).await {
                        // Recorded only if it is still the current manifest of the version.
                        out.written += self.index.add_blob(&vid, &entry.sealed_manifest, &b).await? as u64;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes one copy of a manifest that lives everywhere; true once written (then the caller
    /// records it).
    async fn copy_to(
        &self,
        p: &outlast_provider::Provider,
        name: &str,
        b: &BlobRef,
        sealed: bytes::Bytes,
        breaker: &Breaker,
        out: &mut TombstoneRepair,
    ) -> bool {
        match p.write(&b.blob, sealed).await {
            Ok(()) => {
                breaker.record(p.name(), true);
                out.bytes += b.size;
                true
            }
            Err(e) => {
                out.errors.push(JobError::object(name, Some(p.name()), JobErrorKind::Provider, e));
                if breaker.record(p.name(), false) {
                    out.errors.push(Breaker::skipped(p.name()));
                }
                false
            }
        }
    }
}
