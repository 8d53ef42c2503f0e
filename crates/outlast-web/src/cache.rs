//! A bounded in-memory cache of small objects' bytes, keyed by version: a popular page costs
//! no provider reads once it is held, and an overwrite (through any gateway) is a new version,
//! so the old bytes are never served for it. Its hits and misses are counted for the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use outlast_codec::VersionId;

/// Objects up to this size are cached whole; larger ones stream from the providers.
pub const MAX_CACHED_OBJECT: u64 = 1 << 20;

/// Hot objects by version (random, so never the same for two names).
pub struct PageCache {
    bytes: moka::future::Cache<VersionId, Bytes>,
    /// A cache of no bytes: every request reads the providers, alone (not even requests
    /// for the same page at the same time share a read).
    off: bool,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache did, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from memory.
    pub hits: u64,
    /// Requests that read the providers (and then filled the cache).
    pub misses: u64,
    /// Bytes held now.
    pub held_bytes: u64,
}

impl CacheStats {
    /// Hits over all lookups, 0 before any.
    pub fn hit_rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 {
            0.0
        } else {
            self.hits as f64 / all as f64
        }
    }
}

impl PageCache {
    /// A cache holding at most `capacity_bytes` of objects.
    pub fn new(capacity_bytes: u64) -> Self {
        let bytes = moka::future::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|vid: &VersionId, b: &Bytes| (vid.0.len() + b.len()).try_into().unwrap_or(u32::MAX))
            .build();
        PageCache { bytes, off: capacity_bytes == 0, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The bytes of version `vid` if they are held (a hit), without building what a miss
    /// needs: a request's future stays small, and moving it is most of a hit's work.
    pub async fn held(&self, vid: VersionId) -> Option<Bytes> {
        let held = self.bytes.get(&vid).await;
        if held.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// The bytes of version `vid`, from memory or from `load` (run once however many requests
    /// ask at the same time, unless the cache is off).
    pub async fn get_or_load<E, F>(&self, vid: VersionId, load: F) -> Result<Bytes, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<Bytes, E>>,
    {
        if self.off {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return load.await.map_err(Arc::new);
        }
        let mut loaded = false;
        let got = self
            .bytes
            .try_get_with(vid, async {
                loaded = true;
                load.await
            })
            .await;
        if loaded {
            self.misses.fetch_add(1, Ordering::Relaxed);
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    /// Counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            held_bytes: self.bytes.weighted_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load(n: &AtomicU64) -> Result<Bytes, ()> {
        n.fetch_add(1, Ordering::Relaxed);
        Ok(Bytes::from_static(b"page"))
    }

    /// A cache reads a version once; a cache of no bytes reads it every time, as the option
    /// says, and counts each read as a miss.
    #[tokio::test]
    async fn a_version_is_read_once_unless_the_cache_is_off() {
        let vid = VersionId([7; 16]);
        for (capacity, reads) in [(1 << 20, 1), (0, 3)] {
            let (cache, n) = (PageCache::new(capacity), AtomicU64::new(0));
            for _ in 0..3 {
                assert_eq!(cache.get_or_load(vid, load(&n)).await.unwrap(), "page");
            }
            assert_eq!(n.load(Ordering::Relaxed), reads, "capacity {capacity}");
            let stats = cache.stats();
            assert_eq!((stats.hits, stats.misses), (3 - reads, reads));
            // A hit found without a load counts as one; a cache of no bytes holds nothing.
            assert_eq!(cache.held(vid).await.is_some(), capacity > 0);
            assert_eq!(cache.stats().hits, 3 - reads + u64::from(capacity > 0));
            assert!(cache.held(VersionId([8; 16])).await.is_none());
        }
    }
}
