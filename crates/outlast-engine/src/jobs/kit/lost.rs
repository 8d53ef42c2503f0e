//! The lost-blob check: what each provider lists against what the index records there. A
//! recorded blob that is missing or of the wrong size is forgotten, so that it becomes debt
//! (scrub reports it, repair pays it).

use std::collections::HashMap;

use outlast_codec::names;

use super::nameset::NameSet;
use crate::error::EngineError;
use crate::index::BlobRef;
use crate::store::Store;

/// What a listing pass found.
#[derive(Debug, Default)]
pub(crate) struct LostBlobs {
    /// Recorded blobs missing or of the wrong size (now dropped from the index), by provider.
    pub by_provider: std::collections::BTreeMap<String, u64>,
    /// Providers that could not be listed, with the error.
    pub unlisted: Vec<(String, String)>,
}

impl Store {
    /// Lists every provider and drops from the index each recorded blob that is not there or
    /// has the wrong size, so it becomes repair debt. A provider that cannot be listed is left
    /// alone (its blobs may well be intact); one that lists none of its blobs counts towards
    /// "terminated".
    pub(crate) async fn find_lost_blobs(&self) -> Result<LostBlobs, EngineError> {
        let mut out = LostBlobs::default();
        for p in &self.providers {
            // What is recorded there, as hashed names and sizes (a few dozen bytes a blob,
            // whatever the provider holds), read before the listing: a blob recorded while
            // the listing runs is never called lost.
            let hashes = NameSet::new();
            let key = |name: &str| hashes.hash(name);
            let mut unmatched: HashMap<u128, u64> = HashMap::new();
            let mut pages = self.index.blob_pages(p.name());
            while let Some(page) = pages.next_page().await? {
                unmatched.extend(page.iter().map(|b| (key(&b.blob), b.size)));
            }
            let recorded = unmatched.len();
            if recorded == 0 {
                continue;
            }
            // Each listed blob of the recorded size is there. A size of 0 means "not
            // recorded"; any other difference is a torn or truncated blob. (Two names whose
            // 128-bit keyed hashes collide, odds about 2^-128 a pair, could only call a lost
            // blob present until the next run.)
            let mut failed = false;
            for prefix in [names::SHARD_PREFIX, names::MANIFEST_PREFIX] {
                let mut listing = p.listing(prefix);
                loop {
                    match listing.next().await {
                        Ok(Some(e)) => {
                            let k = key(&e.name);
                            if unmatched.get(&k).is_some_and(|&size| size == 0 || size == e.size) {
                                unmatched.remove(&k);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            out.unlisted.push((p.name().to_string(), e.to_string()));
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    break;
                }
            }
            if failed {
                continue;
            }
            // What is left is lost: forget each that is still recorded as it was (not moved
            // or replaced since), so that it becomes debt.
            let mut lost_here = 0u64;
            if !unmatched.is_empty() {
                let mut pages = self.index.blob_pages(p.name());
                while let Some(page) = pages.next_page().await? {
                    let lost: Vec<BlobRef> = page.into_iter().filter(|b| unmatched.get(&key(&b.blob)) == Some(&b.size)).collect();
                    lost_here += self.index.forget_blobs(&lost).await?;
                }
            }
            if lost_here > 0 {
                tracing::warn!(provider = p.name(), "{lost_here} of {} blobs recorded there are missing or damaged", recorded);
                // Each counts once towards the provider's health; all of them gone reads as an
                // ended account.
                for _ in 0..lost_here.min(outlast_provider::health::TERMINATED_AFTER as u64) {
                    p.note_known_blob(false);
                }
                if lost_here < recorded as u64 {
                    p.note_known_blob(true);
                }
            }
            if lost_here > 0 {
                out.by_provider.insert(p.name().to_string(), lost_here);
            }
        }
        Ok(out)
    }
}
