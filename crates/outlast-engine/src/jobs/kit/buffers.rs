//! A bound on the bytes that the objects a maintenance job (repair, evacuation) works on side by
//! side hold in memory at once. The jobs run many objects at a time because each is a few
//! latency-bound round trips; without this, a batch of large objects would multiply memory by
//! that count.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Bytes a job's objects in flight may hold at once.
pub(crate) const JOB_BUFFER_BYTES: u64 = 128 << 20;

/// What a job may still hold, in KiB.
pub(crate) struct Buffers {
    free_kib: Semaphore,
    total_kib: u32,
}

impl Buffers {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> Self {
        let total_kib = bytes.div_ceil(1024).min(u32::MAX as u64) as u32;
        Buffers { free_kib: Semaphore::new(total_kib as usize), total_kib }
    }

    /// Waits until `bytes` fit (a single object larger than the whole budget gets all of it)
    /// and holds them until the permit is dropped.
    pub(crate) async fn hold(&self, bytes: u64) -> SemaphorePermit<'_> {
        let kib = bytes.div_ceil(1024).min(self.total_kib as u64) as u32;
        self.free_kib.acquire_many(kib).await.expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_block_until_bytes_are_given_back() {
        let buffers = Buffers::new(10 << 10);
        let first = buffers.hold(6 << 10).await;
        // 6 + 6 KiB exceed 10: the second waits for the first.
        let second = buffers.hold(6 << 10);
        tokio::pin!(second);
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(first);
        drop(second.await);
        // Larger than the whole budget: capped, so it does not wait forever.
        let _all = buffers.hold(u64::MAX).await;
    }
}
