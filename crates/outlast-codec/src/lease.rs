//! The write lease: a small sealed blob a long put keeps fresh on its providers, so that a gc
//! run from another state folder or machine, which cannot see this put's local record, leaves
//! its blobs alone. gc judges its age by the provider's own clock (its listing's modification
//! times), never by a local one.

use serde::{Deserialize, Serialize};

use crate::error::CodecError;
use crate::keys::StoreKeys;
use crate::manifest::{open_record, seal_record, VersionId};

/// Format byte of a lease blob.
pub const LEASE_FORMAT: u8 = 1;
const AAD_PREFIX: &[u8] = b"outlast/lease/v1";

/// What a lease protects: the blobs of one version being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteLease {
    /// The version being written.
    pub vid: VersionId,
    /// Its shards per segment (shard blob names are those of shard indexes `0..n`).
    pub n: u16,
    /// Parts written or being written so far (part indexes `0..parts`).
    pub parts: u32,
}

impl WriteLease {
    /// Seals the lease for storage under blob name `blob`.
    pub fn seal(&self, keys: &StoreKeys, blob: &str) -> Vec<u8> {
        seal_record(keys, AAD_PREFIX, blob, LEASE_FORMAT, self)
    }

    /// Opens a lease blob read from blob name `blob`.
    pub fn open(keys: &StoreKeys, blob: &str, bytes: &[u8]) -> Result<WriteLease, CodecError> {
        open_record(keys, AAD_PREFIX, blob, LEASE_FORMAT, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn a_lease_opens_only_under_its_name_and_key() {
        let keys = MasterKey::generate().store_keys();
        let vid = VersionId::generate();
        let blob = crate::names::lease_blob(&keys, &vid);
        let lease = WriteLease { vid, n: 6, parts: 3 };
        let sealed = lease.seal(&keys, &blob);
        assert_eq!(WriteLease::open(&keys, &blob, &sealed).unwrap(), lease);
        assert!(WriteLease::open(&keys, &crate::names::clock_blob(&keys), &sealed).is_err());
        assert!(WriteLease::open(&MasterKey::generate().store_keys(), &blob, &sealed).is_err());
    }
}
