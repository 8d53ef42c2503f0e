//! Segment encryption: AES-256-GCM under the object version's data key.
//!
//! The nonce is the segment index (big-endian, in the last 8 of 12 bytes); it never repeats
//! because every object version has its own random data key. The associated data binds the
//! object version id, the segment index and whether it is the last segment, so segments cannot
//! be reordered, dropped from the end, or swapped in from another object without failing.

use ring::aead::{Aad, Nonce, Tag};

use crate::error::CodecError;
use crate::keys::DataKey;
use crate::manifest::VersionId;

/// Bytes of authentication tag appended to every sealed segment.
pub const TAG_LEN: usize = 16;

const AAD_PREFIX: &[u8] = b"outlast/segment/v1";

fn segment_nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn segment_aad(vid: &VersionId, index: u64, is_last: bool) -> [u8; 18 + 16 + 8 + 1] {
    let mut a = [0u8; 18 + 16 + 8 + 1];
    a[..18].copy_from_slice(AAD_PREFIX);
    a[18..34].copy_from_slice(&vid.0);
    a[34..42].copy_from_slice(&index.to_be_bytes());
    a[42] = is_last as u8;
    a
}

/// Encrypts `buf[..plain_len]` in place and writes the tag right after it.
/// `buf` must be at least `plain_len + TAG_LEN` long; bytes beyond are left alone (padding).
pub fn seal_segment_in_place(key: &DataKey, vid: &VersionId, index: u64, is_last: bool, buf: &mut [u8], plain_len: usize) {
    let aad = segment_aad(vid, index, is_last);
    let tag: Tag = key
        .aead_key()
        .seal_in_place_separate_tag(segment_nonce(index), Aad::from(&aad[..]), &mut buf[..plain_len])
        .expect("segment below AES-GCM's length limit");
    buf[plain_len..plain_len + TAG_LEN].copy_from_slice(tag.as_ref());
}

/// Decrypts a sealed segment (`plaintext || tag`) in place, returning the plaintext length.
pub fn open_segment_in_place(
    key: &DataKey,
    vid: &VersionId,
    index: u64,
    is_last: bool,
    sealed: &mut [u8],
) -> Result<usize, CodecError> {
    let aad = segment_aad(vid, index, is_last);
    key.aead_key()
        .open_in_place(segment_nonce(index), Aad::from(&aad[..]), sealed)
        .map(|p| p.len())
        .map_err(|_| CodecError::SegmentAuth { segment: index })
}
