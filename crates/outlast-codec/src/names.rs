//! Opaque blob names.
//!
//! A provider sees only `s/<32 hex>` (shards), `m/<32 hex>` (manifests) and a few small
//! records of the same shape (`i/` marker, `l/` leases, `c/` composite claims). Each name is a keyed
//! HMAC of the version id, shard index and part index, so names reveal nothing, two providers cannot link
//! their shards of one object by name, and a reader can check that a manifest sits under the
//! name its own content implies.

use ring::hmac;

use crate::keys::StoreKeys;
use crate::manifest::VersionId;

/// Prefix of every shard blob.
pub const SHARD_PREFIX: &str = "s/";
/// Prefix of every manifest blob.
pub const MANIFEST_PREFIX: &str = "m/";
/// Prefix of a provider's identity marker.
pub const MARKER_PREFIX: &str = "i/";
/// Prefix of write leases (and of gc's clock probe).
pub const LEASE_PREFIX: &str = "l/";
/// Prefix of composite claims.
pub const CLAIM_PREFIX: &str = "c/";

fn tagged(keys: &StoreKeys, parts: &[&[u8]]) -> String {
    let mut ctx = hmac::Context::with_key(&keys.names);
    for p in parts {
        ctx.update(p);
    }
    hex::encode(&ctx.sign().as_ref()[..16])
}

/// Name of the blob holding shard `index` of part `part` of version `vid`.
pub fn shard_blob(keys: &StoreKeys, vid: &VersionId, index: u16, part: u32) -> String {
    format!("{SHARD_PREFIX}{}", tagged(keys, &[b"shard", &vid.0, &index.to_be_bytes(), &part.to_be_bytes()]))
}

/// Name of the manifest of version `vid` (the same on every provider that holds it).
pub fn manifest_blob(keys: &StoreKeys, vid: &VersionId) -> String {
    format!("{MANIFEST_PREFIX}{}", tagged(keys, &[b"manifest", &vid.0]))
}

/// Name of the identity marker every provider of the store holds (one name for all of them,
/// so a location that answers with another provider's marker is recognised).
pub fn marker_blob(keys: &StoreKeys) -> String {
    format!("{MARKER_PREFIX}{}", tagged(keys, &[b"identity"]))
}

/// Name of the lease a long write of version `vid` keeps fresh.
pub fn lease_blob(keys: &StoreKeys, vid: &VersionId) -> String {
    format!("{LEASE_PREFIX}{}", tagged(keys, &[b"lease", &vid.0]))
}

/// Name of the claim listing the composites made from `origin` (an upload id).
pub fn claim_blob(keys: &StoreKeys, origin: &VersionId) -> String {
    format!("{CLAIM_PREFIX}{}", tagged(keys, &[b"claim", &origin.0]))
}

/// Name of the blob gc rewrites on a provider to read that provider's clock (its modification
/// time), against which leases are judged.
pub fn clock_blob(keys: &StoreKeys) -> String {
    format!("{LEASE_PREFIX}{}", tagged(keys, &[b"clock"]))
}

/// Whether `name` has the exact shape of a blob this format writes under `prefix`: the prefix
/// and 32 lowercase hex digits. Maintenance touches only such names, never a stranger's file
/// that happens to sit under the same folder.
pub fn has_shape(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(is_tag)
}

/// Whether `s` is a tag as [`tagged`] makes it: 32 lowercase hex digits.
pub fn is_tag(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_shapes_are_ours() {
        let keys = crate::keys::MasterKey::generate().store_keys();
        let vid = VersionId::generate();
        assert!(has_shape(&shard_blob(&keys, &vid, 1, 2), SHARD_PREFIX));
        assert!(has_shape(&manifest_blob(&keys, &vid), MANIFEST_PREFIX));
        assert!(!has_shape(&manifest_blob(&keys, &vid), SHARD_PREFIX));
        for stranger in ["s/notes.txt", "s/0123456789ABCDEF0123456789ABCDEF", "s/0123456789abcdef0123456789abcde", "s/x/y", "s/"]
        {
            assert!(!has_shape(stranger, SHARD_PREFIX), "{stranger}");
        }
    }
}
