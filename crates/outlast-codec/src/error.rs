//! The codec's one error type.

use thiserror::Error;

/// Why a codec operation failed. Every variant means "do not trust these bytes".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// A segment's ciphertext failed authentication: wrong key, tampering, a truncated or
    /// reordered segment, or a segment from another object.
    #[error("segment {segment} failed authentication (tampered, swapped or wrong key)")]
    SegmentAuth {
        /// Index of the segment inside its object.
        segment: u64,
    },
    /// A sealed manifest failed authentication: wrong key or tampering.
    #[error("manifest failed authentication (wrong key, or the blob was tampered with)")]
    ManifestAuth,
    /// A manifest blob is too short or carries a format version this build cannot read.
    #[error("manifest blob is malformed: {0}")]
    ManifestFormat(String),
    /// Fewer than `k` shards with a valid check were available for a segment.
    #[error("segment {segment}: only {good} good shards, {needed} needed")]
    NotEnoughShards {
        /// Index of the segment inside its object.
        segment: u64,
        /// Shards that passed their integrity check.
        good: usize,
        /// Shards required (`k`).
        needed: usize,
    },
    /// Shards rebuilt for repair did not match their checks from the manifest: an input shard
    /// was wrong although it passed its own check.
    #[error("segment {segment}: rebuilt shards do not match the manifest")]
    RebuildMismatch {
        /// Index of the segment inside its object.
        segment: u64,
    },
    /// Coding parameters or shard sizes were inconsistent.
    #[error("invalid coding parameters: {0}")]
    Parameters(String),
    /// The passphrase key derivation failed.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}
