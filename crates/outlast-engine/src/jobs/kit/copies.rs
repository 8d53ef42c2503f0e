//! Judging what a provider returns for a manifest copy, and finding whether a version still
//! places a blob: what scrub, repair and evacuation decide before they write or record.

use outlast_codec::{Manifest, ManifestBody, VersionId};

use crate::error::EngineError;
use crate::index::IndexEntry;
use crate::store::Store;

/// What a manifest copy read back from a provider is, beside the index's sealed manifest.
pub(crate) enum CopyVerdict {
    /// The index's manifest, byte for byte.
    Current,
    /// The same version at a lower revision (the provider went back on what it held:
    /// `blame`), or at the same revision with other bytes (a move that lost a race to another
    /// wrote it: no fault of the provider's).
    Stale { blame: bool },
    /// A higher revision than the index holds: the index is the stale one.
    Newer(u32),
    /// Does not open with the store's key as this version's manifest: damaged, or another
    /// blob swapped in.
    Corrupt,
}

impl Store {
    /// Whether `entry` is still its name's current version with the same manifest.
    pub(crate) async fn unchanged(&self, entry: &IndexEntry) -> Result<bool, EngineError> {
        Ok(self.index.get(&entry.name).await?.is_some_and(|e| e.sealed_manifest == entry.sealed_manifest))
    }

    /// Judges `bytes`, read from `blob`, against `entry` (whose manifest is at `revision`).
    pub(crate) fn judge_manifest_copy(&self, entry: &IndexEntry, revision: u32, blob: &str, bytes: &[u8]) -> CopyVerdict {
        if bytes == &entry.sealed_manifest[..] {
            return CopyVerdict::Current;
        }
        match Manifest::open(&self.keys, blob, bytes) {
            Ok(m) if m.stamp == entry.stamp && m.revision < revision => CopyVerdict::Stale { blame: true },
            Ok(m) if m.stamp == entry.stamp && m.revision == revision => CopyVerdict::Stale { blame: false },
            Ok(m) if m.stamp == entry.stamp => CopyVerdict::Newer(m.revision),
            _ => CopyVerdict::Corrupt,
        }
    }
}

impl Store {
    /// The current index entry of `name` if it is still version `vid` and its manifest places
    /// shard `shard` (`None`: any shard, as for a manifest copy) on `provider`.
    pub(crate) async fn current_placing(
        &self,
        name: &str,
        vid: &VersionId,
        shard: Option<usize>,
        provider: &str,
    ) -> Result<Option<IndexEntry>, EngineError> {
        let Some(entry) = self.index.get(name).await?.filter(|e| e.stamp.vid == *vid) else { return Ok(None) };
        let ManifestBody::Object(om) = self.open_manifest(&entry)?.body else { return Ok(None) };
        let placed = match shard {
            Some(i) => om.placement.get(i).is_some_and(|p| p.provider == provider),
            None => om.placement.iter().any(|p| p.provider == provider),
        };
        Ok(placed.then_some(entry))
    }
}
