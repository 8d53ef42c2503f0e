//! The per-shard integrity check kept in the manifest.
//!
//! A check is XXH3-128 keyed with a seed derived from the master key. It exists to tell *which*
//! shard is bad (attribution, scrub, repair) at memory speed; it is not what makes reads safe.
//! Safety comes from the segment AEAD: a shard that somehow passes its check but is wrong makes
//! the segment fail authentication, and the reader then rebuilds it from other shards. A
//! cryptographic hash here (BLAKE3) would cut pipeline throughput by more than half; see
//! `docs/FORMAT.md` for the measurements behind the choice.

use serde::{Deserialize, Serialize};

/// 16-byte check of one shard of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardCheck(pub [u8; 16]);

impl ShardCheck {
    /// Computes the check of `shard` under the store's seed.
    pub fn of(seed: u64, shard: &[u8]) -> Self {
        ShardCheck(xxhash_rust::xxh3::xxh3_128_with_seed(shard, seed).to_le_bytes())
    }

    /// Whether `shard` matches this check.
    pub fn verifies(&self, seed: u64, shard: &[u8]) -> bool {
        Self::of(seed, shard) == *self
    }
}
