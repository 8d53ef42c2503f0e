//! The composite claim: a small sealed blob at a name derived from an origin (an S3 upload
//! id), listing the version ids of the composites made from it. Each complete gives its
//! composite a fresh version id, so that a complete that fails deletes only its own manifest;
//! the claim is how a gateway with a stale index still finds, on the providers, a composite
//! made elsewhere before it lets go of the parts that composite names.

use serde::{Deserialize, Serialize};

use crate::error::CodecError;
use crate::keys::StoreKeys;
use crate::manifest::{open_record, seal_record, VersionId};

/// Format byte of a claim blob.
pub const CLAIM_FORMAT: u8 = 1;
const AAD_PREFIX: &[u8] = b"outlast/claim/v1";

/// The composites one origin's completes made or tried to make (a listed id whose manifest is
/// nowhere never committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeClaim {
    /// What the composites are made from (an upload id).
    pub origin: VersionId,
    /// Their version ids, oldest first.
    pub composites: Vec<VersionId>,
}

impl CompositeClaim {
    /// Seals the claim for storage under blob name `blob`.
    pub fn seal(&self, keys: &StoreKeys, blob: &str) -> Vec<u8> {
        seal_record(keys, AAD_PREFIX, blob, CLAIM_FORMAT, self)
    }

    /// Opens a claim blob read from blob name `blob`.
    pub fn open(keys: &StoreKeys, blob: &str, bytes: &[u8]) -> Result<CompositeClaim, CodecError> {
        open_record(keys, AAD_PREFIX, blob, CLAIM_FORMAT, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;
    use crate::names;

    #[test]
    fn a_claim_opens_only_under_its_name_and_key_and_never_as_a_lease() {
        let keys = MasterKey::generate().store_keys();
        let origin = VersionId::generate();
        let blob = names::claim_blob(&keys, &origin);
        let claim = CompositeClaim { origin, composites: vec![VersionId::generate(), VersionId::generate()] };
        let sealed = claim.seal(&keys, &blob);
        assert_eq!(CompositeClaim::open(&keys, &blob, &sealed).unwrap(), claim);
        assert!(CompositeClaim::open(&keys, &names::claim_blob(&keys, &VersionId::generate()), &sealed).is_err());
        assert!(CompositeClaim::open(&MasterKey::generate().store_keys(), &blob, &sealed).is_err());
        assert!(crate::WriteLease::open(&keys, &blob, &sealed).is_err());
    }
}
