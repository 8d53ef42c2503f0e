//! Versions on the providers that the local index does not know: what scrub reports and
//! `outlast recover` brings in.

use outlast_codec::{names, Manifest};

use super::nameset::NameSet;
use crate::error::EngineError;
use crate::store::Store;

impl Store {
    /// Versions on the providers newer than what this index records for their names (or of
    /// names it does not know): what a lost, copied or outdated index is missing, and what
    /// `outlast recover` brings in. Only manifests the index cannot account for are read.
    /// Providers that cannot be listed are skipped (their own reports say why).
    pub async fn unknown_manifests(&self) -> Result<u64, EngineError> {
        // Hashed: a few bytes a version, whatever the store.
        let mut known = NameSet::new();
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            for e in page {
                known.insert(&names::manifest_blob(&self.keys, &e.stamp.vid));
            }
        }
        let mut pages = self.index.tombstone_pages();
        while let Some(page) = pages.next_page().await? {
            for (_, stamp) in page {
                known.insert(&names::manifest_blob(&self.keys, &stamp.vid));
            }
        }
        for p in self.index.pending().await? {
            known.extend(p.blobs.iter().map(|b| &b.blob));
        }
        known.extend(self.index.garbage().await?.iter().map(|(_, blob)| blob));
        let mut unknown: std::collections::HashSet<String> = std::collections::HashSet::new();
        for p in &self.providers {
            let mut listing = p.listing(names::MANIFEST_PREFIX);
            while let Ok(Some(e)) = listing.next().await {
                let blob = e.name;
                if !names::has_shape(&blob, names::MANIFEST_PREFIX) || known.contains(&blob) || unknown.contains(&blob) {
                    continue;
                }
                // An older version of a name the index knows (or junk) is gc's business, not
                // recover's: only what would change the index counts.
                let Ok(bytes) = p.read(&blob).await else { continue };
                let Ok(m) = Manifest::open(&self.keys, &blob, &bytes) else { continue };
                if self.index.latest_stamp(&m.name).await?.is_none_or(|t| t < m.stamp.time_ns) {
                    unknown.insert(blob);
                }
            }
        }
        Ok(unknown.len() as u64)
    }
}
