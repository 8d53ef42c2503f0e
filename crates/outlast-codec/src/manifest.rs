//! The manifest: the sealed record of one object version (or of a deletion).
//!
//! It holds everything needed to read the version and to rebuild the store's index from the
//! providers alone: name, version stamp, size, content type, user metadata, plaintext hash, the
//! data key, coding parameters, placement and every shard's check. It is stored on every provider
//! that holds a shard of the version and sealed with the manifest key (format in `docs/FORMAT.md`).

use rand::RngCore;
use ring::aead::{Aad, Nonce, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::check::ShardCheck;
use crate::error::CodecError;
use crate::keys::StoreKeys;
use crate::layout::Layout;

/// Manifest format of objects and tombstones (first byte of their manifest blobs). Format 2
/// added [`Manifest::revision`]; format 1 blobs are still read (as revision 0).
pub const MANIFEST_FORMAT: u8 = 2;
/// Manifest format of a [`ManifestBody::Composite`] version: the same layout as format 2 with
/// one more body kind, under its own byte so that a build which does not know composites says
/// so rather than failing to decode. Objects and tombstones keep format 2.
pub const MANIFEST_FORMAT_COMPOSITE: u8 = 3;
const MANIFEST_FORMAT_1: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const AAD_PREFIX: &[u8] = b"outlast/manifest/v1";

/// Random identity of one object version; it keys nonces, names and associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub [u8; 16]);

impl VersionId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut v = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut v);
        VersionId(v)
    }

    /// Hex form, for logs and the index.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Orders versions of one name: the newer time wins, the id breaks ties. Recovery keeps the
/// greatest stamp per name, so a tombstone with a greater stamp keeps a delete deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionStamp {
    /// Wall-clock nanoseconds since the Unix epoch when the version was written.
    pub time_ns: u64,
    /// The version's id.
    pub vid: VersionId,
}

/// Where one shard of a version lives. Its blobs' names follow from the version id, the shard
/// index and the part index ([`crate::names::shard_blob`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// The provider's configured name (its stable identity).
    pub provider: String,
}

/// The readable part of an object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectManifest {
    /// Plaintext size in bytes.
    pub size: u64,
    /// MIME type given at upload, if any.
    pub content_type: Option<String>,
    /// User metadata, in the order given.
    pub user_metadata: Vec<(String, String)>,
    /// BLAKE3 of the plaintext (the object's ETag).
    pub blake3: [u8; 32],
    /// MD5 of the plaintext when a face computed one (S3 clients compare it to the ETag).
    pub md5: Option<[u8; 16]>,
    /// The version's data key.
    pub data_key: [u8; 32],
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Data shards per segment.
    pub k: u16,
    /// Total shards per segment.
    pub n: u16,
    /// Segments per shard blob (part).
    pub segments_per_part: u32,
    /// Shard `i` of every segment lives at `placement[i]`.
    pub placement: Vec<ShardPlacement>,
    /// Check of shard `i` of segment `s` at `checks[s * n + i]`.
    pub checks: Vec<ShardCheck>,
}

impl ObjectManifest {
    /// The version's geometry.
    pub fn layout(&self) -> Result<Layout, CodecError> {
        Ok(Layout::new(self.size, self.segment_size, self.k, self.n)?.with_segments_per_part(self.segments_per_part))
    }

    /// The entity tag clients are shown: the MD5 of the plaintext where a face computed it
    /// (S3 clients compare a single-part object's ETag with the MD5 of what they sent or
    /// received), the BLAKE3 otherwise; lowercase hex either way.
    pub fn etag(&self) -> String {
        match &self.md5 {
            Some(md5) => hex::encode(md5),
            None => hex::encode(self.blake3),
        }
    }

    /// The `n` checks of segment `s`.
    pub fn segment_checks(&self, s: u64) -> &[ShardCheck] {
        let n = self.n as usize;
        &self.checks[s as usize * n..(s as usize + 1) * n]
    }
}

/// A version whose bytes are other versions' bytes, in order: what an S3 multipart upload
/// completes to. Each part is a whole object version of its own (segmented, sealed, coded and
/// placed as any put), so scrub, repair and evacuation reach the parts as objects; this holds
/// no shards, only the list, and lives on every provider as a tombstone does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeManifest {
    /// Plaintext size: the sum of the parts' sizes.
    pub size: u64,
    /// MIME type given when the upload was created, if any.
    pub content_type: Option<String>,
    /// User metadata, in the order given.
    pub user_metadata: Vec<(String, String)>,
    /// The parts, in the order their bytes follow one another.
    pub parts: Vec<CompositePart>,
}

/// One part of a [`CompositeManifest`]: the object version that holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositePart {
    /// Name of the object holding the part (a reserved name no user writes).
    pub name: String,
    /// Its version: a read checks that this is still the one there.
    pub stamp: VersionStamp,
    /// Plaintext size.
    pub size: u64,
    /// BLAKE3 of the part's plaintext.
    pub blake3: [u8; 32],
    /// MD5 of the part's plaintext, when its put took one.
    pub md5: Option<[u8; 16]>,
}

impl CompositeManifest {
    /// The entity tag S3 clients expect of a multipart object: the MD5 of the parts' MD5s,
    /// then `-` and the number of parts. Where a part has no MD5, the BLAKE3 of the parts'
    /// BLAKE3s stands in, in the same form.
    pub fn etag(&self) -> String {
        use md5::Digest;
        let n = self.parts.len();
        if self.parts.iter().all(|p| p.md5.is_some()) {
            let mut h = md5::Md5::new();
            for p in &self.parts {
                h.update(p.md5.expect("checked"));
            }
            format!("{}-{n}", hex::encode(h.finalize()))
        } else {
            let mut h = blake3::Hasher::new();
            for p in &self.parts {
                h.update(&p.blake3);
            }
            format!("{}-{n}", h.finalize().to_hex())
        }
    }

    /// The parts that hold plaintext `range`, each with the range inside it.
    pub fn parts_for(&self, range: std::ops::Range<u64>) -> Vec<(&CompositePart, std::ops::Range<u64>)> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for p in &self.parts {
            let end = start + p.size;
            if p.size > 0 && range.start < end && range.end > start {
                out.push((p, range.start.max(start) - start..range.end.min(end) - start));
            }
            start = end;
        }
        out
    }
}

/// What a version is: data, the record of a deletion, or data held by other versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestBody {
    /// An object version with data.
    Object(ObjectManifest),
    /// The name was deleted at this stamp.
    Tombstone,
    /// An object version whose bytes are those of other versions (format 3).
    Composite(CompositeManifest),
}

/// One version of one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The object's name (key).
    pub name: String,
    /// The version's stamp.
    pub stamp: VersionStamp,
    /// Data or tombstone.
    pub body: ManifestBody,
    /// Placement revision of this version: 0 when written, one more each time its shards are
    /// moved (evacuation) and the manifest is rewritten under the same name. Of two copies of
    /// one version's manifest, the higher revision is current.
    pub revision: u32,
}

/// Format 1 of [`Manifest`]: the same fields without the revision.
#[derive(Serialize, Deserialize)]
struct ManifestFormat1 {
    name: String,
    stamp: VersionStamp,
    body: ManifestBody,
}

impl Manifest {
    /// Serializes and seals the manifest for storage under blob name `blob`.
    pub fn seal(&self, keys: &StoreKeys, blob: &str) -> Vec<u8> {
        let format = match self.body {
            ManifestBody::Composite(_) => MANIFEST_FORMAT_COMPOSITE,
            _ => MANIFEST_FORMAT,
        };
        seal_body(keys, blob, format, postcard::to_stdvec(self).expect("manifest serializes"))
    }

    /// Opens a manifest blob read from blob name `blob`.
    pub fn open(keys: &StoreKeys, blob: &str, bytes: &[u8]) -> Result<Manifest, CodecError> {
        if bytes.len() < HEADER_LEN + 16 {
            return Err(CodecError::ManifestFormat(format!("{} bytes is too short", bytes.len())));
        }
        let format = bytes[0];
        if !(MANIFEST_FORMAT_1..=MANIFEST_FORMAT_COMPOSITE).contains(&format) {
            return Err(CodecError::ManifestFormat(format!(
                "format version {format} is not known to this build (it reads versions 1 to {MANIFEST_FORMAT_COMPOSITE})"
            )));
        }
        let (_, plain) = open_sealed(keys, AAD_PREFIX, blob, bytes)?;
        let plain = &plain[..];
        let bad = |e: postcard::Error| CodecError::ManifestFormat(e.to_string());
        let m: Manifest = if format == MANIFEST_FORMAT_1 {
            let v1: ManifestFormat1 = postcard::from_bytes(plain).map_err(bad)?;
            Manifest { name: v1.name, stamp: v1.stamp, body: v1.body, revision: 0 }
        } else {
            postcard::from_bytes(plain).map_err(bad)?
        };
        if matches!(m.body, ManifestBody::Composite(_)) != (format == MANIFEST_FORMAT_COMPOSITE) {
            return Err(CodecError::ManifestFormat(format!("format {format} does not match the kind of version")));
        }
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), CodecError> {
        if let ManifestBody::Composite(c) = &self.body {
            let sum = c.parts.iter().try_fold(0u64, |a, p| a.checked_add(p.size));
            if c.parts.is_empty() || sum != Some(c.size) {
                return Err(CodecError::ManifestFormat("a composite's parts do not add up to its size".into()));
            }
        }
        if let ManifestBody::Object(o) = &self.body {
            if o.segments_per_part == 0 {
                return Err(CodecError::ManifestFormat("zero segments per part".into()));
            }
            let layout = o.layout()?;
            let want = layout.segment_count() as usize * o.n as usize;
            if o.checks.len() != want || o.placement.len() != o.n as usize {
                return Err(CodecError::ManifestFormat("placement or checks do not match the layout".into()));
            }
        }
        Ok(())
    }
}

/// Seals a serialized manifest body under `format`.
fn seal_body(keys: &StoreKeys, blob: &str, format: u8, plain: Vec<u8>) -> Vec<u8> {
    seal_sealed(keys, AAD_PREFIX, blob, format, plain)
}

/// Seals `plain` with the manifest key: `format`, key epoch, nonce, then the AES-256-GCM
/// ciphertext, bound to `aad_prefix`, the header and the blob name (so a sealed blob moved to
/// another name, or read as another kind of blob, does not open).
pub(crate) fn seal_sealed(keys: &StoreKeys, aad_prefix: &[u8], blob: &str, format: u8, plain: Vec<u8>) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
    out.push(format);
    out.extend_from_slice(&0u32.to_le_bytes()); // key epoch, for key rotation
    out.extend_from_slice(&nonce);
    let aad = aad(aad_prefix, &out[..HEADER_LEN], blob);
    let mut body = plain;
    keys.manifest
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut body)
        .expect("manifest below AES-GCM's length limit");
    out.extend_from_slice(&body);
    out
}

/// Opens what [`seal_sealed`] made; returns the format byte and the plaintext.
pub(crate) fn open_sealed(keys: &StoreKeys, aad_prefix: &[u8], blob: &str, bytes: &[u8]) -> Result<(u8, Vec<u8>), CodecError> {
    if bytes.len() < HEADER_LEN + 16 {
        return Err(CodecError::ManifestFormat(format!("{} bytes is too short", bytes.len())));
    }
    let nonce: [u8; NONCE_LEN] = bytes[5..HEADER_LEN].try_into().expect("length checked");
    let aad = aad(aad_prefix, &bytes[..HEADER_LEN], blob);
    let mut body = bytes[HEADER_LEN..].to_vec();
    let len = keys
        .manifest
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut body)
        .map_err(|_| CodecError::ManifestAuth)?
        .len();
    body.truncate(len);
    Ok((bytes[0], body))
}

/// Seals a small record (a marker, a lease) as postcard under its own associated-data prefix
/// and format byte.
pub(crate) fn seal_record<T: Serialize>(keys: &StoreKeys, aad_prefix: &[u8], blob: &str, format: u8, record: &T) -> Vec<u8> {
    seal_sealed(keys, aad_prefix, blob, format, postcard::to_stdvec(record).expect("record serializes"))
}

/// Opens what [`seal_record`] made, refusing any other format byte.
pub(crate) fn open_record<T: serde::de::DeserializeOwned>(
    keys: &StoreKeys,
    aad_prefix: &[u8],
    blob: &str,
    format: u8,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let (found, plain) = open_sealed(keys, aad_prefix, blob, bytes)?;
    if found != format {
        return Err(CodecError::ManifestFormat(format!("record format {found} is not known to this build")));
    }
    postcard::from_bytes(&plain).map_err(|e| CodecError::ManifestFormat(e.to_string()))
}

fn aad(prefix: &[u8], header: &[u8], blob: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(prefix.len() + header.len() + blob.len());
    a.extend_from_slice(prefix);
    a.extend_from_slice(header);
    a.extend_from_slice(blob.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn format_1_manifests_are_still_read_as_revision_0() {
        let keys = MasterKey::generate().store_keys();
        let stamp = VersionStamp { time_ns: 42, vid: VersionId::generate() };
        let v1 = ManifestFormat1 { name: "old".into(), stamp, body: ManifestBody::Tombstone };
        let blob = seal_body(&keys, "m/x", MANIFEST_FORMAT_1, postcard::to_stdvec(&v1).unwrap());
        let m = Manifest::open(&keys, "m/x", &blob).unwrap();
        assert_eq!((m.name.as_str(), m.stamp, m.revision), ("old", stamp, 0));

        let v2 = Manifest { revision: 3, ..m };
        assert_eq!(Manifest::open(&keys, "m/x", &v2.seal(&keys, "m/x")).unwrap(), v2);
        let mut unknown = v2.seal(&keys, "m/x");
        unknown[0] = 4;
        assert!(matches!(Manifest::open(&keys, "m/x", &unknown), Err(CodecError::ManifestFormat(_))));
    }

    fn composite(sizes: &[u64]) -> Manifest {
        let parts = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| CompositePart {
                name: format!("p/{i}"),
                stamp: VersionStamp { time_ns: i as u64, vid: VersionId::generate() },
                size,
                blake3: [i as u8; 32],
                md5: Some([i as u8; 16]),
            })
            .collect();
        let c = CompositeManifest { size: sizes.iter().sum(), content_type: None, user_metadata: vec![], parts };
        Manifest {
            name: "b/k".into(),
            stamp: VersionStamp { time_ns: 9, vid: VersionId::generate() },
            body: ManifestBody::Composite(c),
            revision: 0,
        }
    }

    #[test]
    fn composites_are_format_3_and_objects_stay_format_2() {
        let keys = MasterKey::generate().store_keys();
        let c = composite(&[5, 3]);
        let sealed = c.seal(&keys, "m/c");
        assert_eq!(sealed[0], MANIFEST_FORMAT_COMPOSITE);
        assert_eq!(Manifest::open(&keys, "m/c", &sealed).unwrap(), c);
        // A format byte that does not match the body is refused, either way.
        let mut relabelled = sealed.clone();
        relabelled[0] = MANIFEST_FORMAT;
        assert!(Manifest::open(&keys, "m/c", &relabelled).is_err(), "the header is authenticated too");
        let t = Manifest { body: ManifestBody::Tombstone, ..c.clone() };
        assert_eq!(t.seal(&keys, "m/t")[0], MANIFEST_FORMAT);
        let forged = seal_body(&keys, "m/t", MANIFEST_FORMAT, postcard::to_stdvec(&c).unwrap());
        assert!(matches!(Manifest::open(&keys, "m/t", &forged), Err(CodecError::ManifestFormat(_))));
        // Parts that do not add up to the size are refused.
        let mut wrong = c.clone();
        if let ManifestBody::Composite(w) = &mut wrong.body {
            w.size += 1;
        }
        let forged = seal_body(&keys, "m/w", MANIFEST_FORMAT_COMPOSITE, postcard::to_stdvec(&wrong).unwrap());
        assert!(matches!(Manifest::open(&keys, "m/w", &forged), Err(CodecError::ManifestFormat(_))));
    }

    #[test]
    fn a_composite_maps_ranges_onto_its_parts_and_has_the_s3_etag() {
        let ManifestBody::Composite(c) = composite(&[5, 0, 3, 4]).body else { unreachable!() };
        let spans = |r| c.parts_for(r).into_iter().map(|(p, r)| (p.name.clone(), r)).collect::<Vec<_>>();
        assert_eq!(spans(0..12), vec![("p/0".into(), 0..5), ("p/2".into(), 0..3), ("p/3".into(), 0..4)]);
        assert_eq!(spans(4..6), vec![("p/0".into(), 4..5), ("p/2".into(), 0..1)]);
        assert_eq!(spans(9..10), vec![("p/3".into(), 1..2)]);
        assert!(spans(12..20).is_empty());
        // md5(md5_0 || md5_1 || md5_2 || md5_3) and the part count.
        use md5::Digest;
        let mut h = md5::Md5::new();
        for i in 0..4u8 {
            h.update([i; 16]);
        }
        assert_eq!(c.etag(), format!("{}-4", hex::encode(h.finalize())));
    }
}
