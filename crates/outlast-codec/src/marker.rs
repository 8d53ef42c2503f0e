//! The identity marker: a small sealed blob that tells a provider's location which provider of
//! which store it is. A location that answers with another provider's marker (two providers
//! configured at one place, a provider renamed by hand), another store's, or none where one
//! was written, is not the configured provider, and nothing is written to or deleted from it.

use serde::{Deserialize, Serialize};

use crate::error::CodecError;
use crate::keys::StoreKeys;
use crate::manifest::{open_record, seal_record};

/// Format byte of a marker blob.
pub const MARKER_FORMAT: u8 = 1;
const AAD_PREFIX: &[u8] = b"outlast/marker/v1";

/// What a marker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderMarker {
    /// The configured name of the provider this location is.
    pub provider: String,
    /// When it was written (ns since the Unix epoch): a reset writes a newer one.
    pub written_ns: u64,
}

impl ProviderMarker {
    /// Seals the marker for storage under blob name `blob`.
    pub fn seal(&self, keys: &StoreKeys, blob: &str) -> Vec<u8> {
        seal_record(keys, AAD_PREFIX, blob, MARKER_FORMAT, self)
    }

    /// Opens a marker blob read from blob name `blob`; another store's key, another kind of
    /// blob or tampering fail.
    pub fn open(keys: &StoreKeys, blob: &str, bytes: &[u8]) -> Result<ProviderMarker, CodecError> {
        open_record(keys, AAD_PREFIX, blob, MARKER_FORMAT, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;
    use crate::manifest::{Manifest, ManifestBody, VersionId, VersionStamp};

    #[test]
    fn a_marker_opens_only_with_its_store_key_and_name() {
        let keys = MasterKey::generate().store_keys();
        let blob = crate::names::marker_blob(&keys);
        let m = ProviderMarker { provider: "aws".into(), written_ns: 7 };
        let sealed = m.seal(&keys, &blob);
        assert_eq!(ProviderMarker::open(&keys, &blob, &sealed).unwrap(), m);
        let other = MasterKey::generate().store_keys();
        assert!(ProviderMarker::open(&other, &blob, &sealed).is_err());
        assert!(ProviderMarker::open(&keys, "i/0", &sealed).is_err());
        // A manifest sealed under the same name is not a marker, nor the reverse.
        let manifest = Manifest {
            name: "x".into(),
            stamp: VersionStamp { time_ns: 1, vid: VersionId::generate() },
            body: ManifestBody::Tombstone,
            revision: 0,
        };
        assert!(ProviderMarker::open(&keys, &blob, &manifest.seal(&keys, &blob)).is_err());
        assert!(Manifest::open(&keys, &blob, &sealed).is_err());
    }
}
