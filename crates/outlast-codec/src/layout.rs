//! Where each byte of an object lives: segments, shard sizes and offsets inside shard blobs.
//!
//! An object of `size` bytes is cut into segments of `segment_size` plaintext bytes (the last one
//! shorter; an empty object still has one empty segment, so that even it is authenticated). Each
//! sealed segment (plaintext + 16-byte tag) is zero-padded to `k * shard_len` and split into `k`
//! data shards; `n - k` parity shards of the same length follow. Segments are grouped into
//! parts of `segments_per_part`; the shard blob of shard `i` and part `p` is the concatenation
//! of shard `i` of the part's segments, so segment `s` starts at
//! `(s % segments_per_part) * full_shard_len` in blob `(i, s / segments_per_part)`. Parts bound
//! what a provider without multipart uploads must buffer, and hide the exact size of large
//! objects behind blobs of one fixed size.

use std::ops::Range;

use crate::error::CodecError;
use crate::seal::TAG_LEN;

/// The geometry of one object version, fully determined by four numbers in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext size of the object in bytes.
    pub size: u64,
    /// Plaintext bytes per segment (all but the last).
    pub segment_size: u32,
    /// Data shards per segment.
    pub k: u16,
    /// Total shards per segment.
    pub n: u16,
    /// Segments per shard blob.
    pub segments_per_part: u32,
}

/// Plaintext bytes per part by default: 64 MiB, i.e. shard blobs of 64 MiB / k.
pub const DEFAULT_PART_BYTES: u64 = 64 * 1024 * 1024;

impl Layout {
    /// Checks the parameters: `1 <= k < n`, Reed-Solomon support, a non-zero segment size.
    pub fn new(size: u64, segment_size: u32, k: u16, n: u16) -> Result<Self, CodecError> {
        if k == 0 || k >= n {
            return Err(CodecError::Parameters(format!("need 1 <= k < n, got k={k} n={n}")));
        }
        if !reed_solomon_simd::ReedSolomonEncoder::supports(k as usize, (n - k) as usize) {
            return Err(CodecError::Parameters(format!("reed-solomon cannot code {k}-of-{n}")));
        }
        if segment_size == 0 {
            return Err(CodecError::Parameters("segment size must be positive".into()));
        }
        let segments_per_part = (DEFAULT_PART_BYTES / segment_size as u64).max(1) as u32;
        Ok(Layout { size, segment_size, k, n, segments_per_part })
    }

    /// The same layout with `segments_per_part` segments per shard blob (at least one).
    pub fn with_segments_per_part(mut self, segments_per_part: u32) -> Self {
        self.segments_per_part = segments_per_part.max(1);
        self
    }

    /// The part (shard blob) that holds segment `s`.
    pub fn part_of(&self, s: u64) -> u32 {
        (s / self.segments_per_part as u64) as u32
    }

    /// Number of parts, hence of blobs per shard.
    pub fn part_count(&self) -> u32 {
        self.segment_count().div_ceil(self.segments_per_part as u64) as u32
    }

    /// The segments part `part` holds (the last part may hold fewer).
    pub fn part_segments(&self, part: u32) -> Range<u64> {
        let first = part as u64 * self.segments_per_part as u64;
        first..(first + self.segments_per_part as u64).min(self.segment_count())
    }

    /// Length of each shard blob of part `part`.
    pub fn part_blob_len(&self, part: u32) -> u64 {
        let last = self.part_segments(part).end - 1;
        self.shard_offset(last) + self.shard_len(last) as u64
    }

    /// Number of segments (at least one).
    pub fn segment_count(&self) -> u64 {
        self.size.div_ceil(self.segment_size as u64).max(1)
    }

    /// Plaintext byte range of segment `s` inside the object.
    pub fn segment_range(&self, s: u64) -> Range<u64> {
        let start = s * self.segment_size as u64;
        start..(start + self.segment_size as u64).min(self.size)
    }

    /// Plaintext length of segment `s`.
    pub fn segment_plain_len(&self, s: u64) -> usize {
        let r = self.segment_range(s);
        (r.end - r.start) as usize
    }

    /// Length of segment `s` once sealed (plaintext plus tag).
    pub fn segment_sealed_len(&self, s: u64) -> usize {
        self.segment_plain_len(s) + TAG_LEN
    }

    /// Length of each of segment `s`'s shards: the sealed length over `k`, rounded up to an even
    /// number of bytes as the Reed-Solomon coder requires.
    pub fn shard_len(&self, s: u64) -> usize {
        self.shard_len_for(self.segment_plain_len(s))
    }

    /// Shard length of a segment holding `plain_len` plaintext bytes.
    pub fn shard_len_for(&self, plain_len: usize) -> usize {
        let per = (plain_len + TAG_LEN).div_ceil(self.k as usize);
        per + (per & 1)
    }

    /// Offset of segment `s`'s shard inside its part's shard blobs.
    pub fn shard_offset(&self, s: u64) -> u64 {
        (s % self.segments_per_part as u64) * self.full_shard_len() as u64
    }

    /// Shard length of a full-size segment.
    pub fn full_shard_len(&self) -> usize {
        self.shard_len_for(self.segment_size as usize)
    }

    /// The segments that hold the plaintext bytes `range` (end exclusive, clamped to the size).
    pub fn segments_for(&self, range: Range<u64>) -> Range<u64> {
        let end = range.end.min(self.size);
        if range.start >= end {
            return 0..0;
        }
        let seg = self.segment_size as u64;
        (range.start / seg)..end.div_ceil(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_has_one_segment() {
        let l = Layout::new(0, 1024, 3, 5).unwrap();
        assert_eq!(l.segment_count(), 1);
        assert_eq!(l.segment_plain_len(0), 0);
        assert_eq!(l.shard_len(0), 6); // 16 bytes of tag over 3 shards, rounded up to even
        assert_eq!(l.part_count(), 1);
        assert_eq!(l.part_blob_len(0), 6);
        assert_eq!(l.part_segments(0), 0..1);
        assert_eq!(l.segments_for(0..10), 0..0);
    }

    #[test]
    fn exact_multiple_and_tail() {
        let l = Layout::new(2048, 1024, 4, 6).unwrap();
        assert_eq!(l.segment_count(), 2);
        assert_eq!(l.segment_plain_len(1), 1024);
        let l = Layout::new(2049, 1024, 4, 6).unwrap();
        assert_eq!(l.segment_count(), 3);
        assert_eq!(l.segment_plain_len(2), 1);
        assert_eq!(l.shard_offset(2), 2 * l.full_shard_len() as u64);
        let l = l.with_segments_per_part(2);
        assert_eq!((l.part_count(), l.part_of(1), l.part_of(2)), (2, 0, 1));
        assert_eq!(l.shard_offset(2), 0);
        assert_eq!(l.part_blob_len(0), 2 * l.full_shard_len() as u64);
        assert_eq!(l.part_blob_len(1), l.shard_len(2) as u64);
        assert_eq!((l.part_segments(0), l.part_segments(1)), (0..2, 2..3));
        assert_eq!(l.segments_for(1023..1025), 0..2);
        assert_eq!(l.segments_for(2048..5000), 2..3);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Layout::new(1, 1024, 3, 3).is_err());
        assert!(Layout::new(1, 1024, 0, 3).is_err());
        assert!(Layout::new(1, 0, 2, 3).is_err());
    }
}
