//! Write intents: a write that has begun and has neither committed nor been abandoned.
//!
//! One intent is two records kept together. In the index, the pending row names every blob
//! the write may have written (before it writes it), is owned by a random id, and carries an
//! expiry that its holder pushes forward while it runs: gc claims an intent whose expiry has
//! passed (or whose holding process on this machine is gone), after which it can never
//! commit, and removes its blobs. On the providers, a write that runs longer than
//! [`LeaseTiming::after`] keeps a sealed lease (`lease.rs`), renewed on the same timer, so
//! that gc run from another state folder or machine leaves its early parts alone.
//!
//! The holder here is a process; an intent that lives across processes (an S3 multipart
//! upload) is the same record with no process and an expiry of its own.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outlast_codec::{names, StoreKeys, VersionId, WriteLease};
use outlast_provider::Provider;
use tokio::time::Instant;

use crate::error::EngineError;
use crate::index::{BlobRef, Fence, Index, IndexEntry, PendingWrite, Precondition};
use crate::lease::LeaseTiming;
use crate::stamps::now_ns;
use crate::store::Store;

/// A write in progress, held by this process: begun before any blob is written, renewed in the
/// background, then committed (under a precondition) or abandoned. Put and remove write through
/// it; gc claims dead ones ([`Index::claim_pending`]), after which they can never commit.
pub(crate) struct WriteIntent {
    vid: VersionId,
    index: Arc<dyn Index>,
    renewal: tokio::task::JoinHandle<()>,
    /// Parts opened so far, which the next lease names.
    parts: Arc<AtomicU32>,
    /// Where the lease goes (empty: this write takes none).
    lease_on: Vec<Provider>,
    lease_blob: String,
    /// Whether a lease was written (so that finishing deletes it).
    leased: Arc<AtomicBool>,
}

impl WriteIntent {
    /// Records the intent to write version `vid`, which may first write `blobs`, before any
    /// blob is written. A write of `n` shards that may run long passes the providers it is
    /// placed on as `lease_on`; one that is short by nature (a tombstone) passes none.
    pub(crate) async fn begin(
        store: &Store,
        vid: VersionId,
        blobs: Vec<BlobRef>,
        n: u16,
        lease_on: Vec<Provider>,
    ) -> Result<WriteIntent, EngineError> {
        let timing = store.lease_timing;
        let now = now_ns();
        let record = PendingWrite {
            vid,
            owner: VersionId::generate().to_hex(),
            pid: std::process::id(),
            started_ns: now,
            expires_ns: now + timing.ttl.as_nanos() as u64,
            claimed: false,
            blobs,
        };
        store.index.begin_pending(&record).await?;
        let parts = Arc::new(AtomicU32::new(1));
        let leased = Arc::new(AtomicBool::new(false));
        let lease_blob = names::lease_blob(&store.keys, &vid);
        let renewal = tokio::spawn(renew(Renewal {
            timing,
            vid,
            n,
            owner: record.owner,
            index: store.index.clone(),
            keys: store.keys.clone(),
            providers: lease_on.clone(),
            blob: lease_blob.clone(),
            parts: parts.clone(),
            leased: leased.clone(),
        }));
        Ok(WriteIntent { vid, index: store.index.clone(), renewal, parts, lease_on, lease_blob, leased })
    }

    /// Adds part `part`'s blobs to the intent before they are written.
    pub(crate) async fn covers(&self, part: u32, blobs: &[BlobRef]) -> Result<(), EngineError> {
        self.index.add_pending_blobs(&self.vid, blobs).await?;
        self.parts.fetch_max(part + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the version current if `precondition` and `fence` hold, ending the record (see
    /// [`Index::commit`]); the intent is then [`Self::finish`]ed by its holder.
    pub(crate) async fn commit(
        &self,
        entry: &IndexEntry,
        blobs: &[BlobRef],
        tombstone: bool,
        precondition: Precondition,
        fence: Option<&Fence>,
    ) -> Result<Vec<BlobRef>, EngineError> {
        self.index.commit(entry, blobs, tombstone, precondition, fence).await
    }

    /// Gives the write up: stops renewing, then removes what it may have written; what cannot
    /// be removed now stays recorded, released for the next gc to claim.
    pub(crate) async fn abandon(self, store: &Store) -> Result<(), EngineError> {
        let vid = self.vid;
        self.finish().await;
        store.abandon_write(&vid).await
    }

    /// Stops renewing and deletes the lease if one was written. The index record was ended by
    /// the commit, or is ended by [`Self::abandon`] once the blobs are gone.
    pub(crate) async fn finish(mut self) {
        self.renewal.abort();
        // Wait until it has stopped: a lease write still under way on another thread would
        // otherwise land after the delete below.
        let _ = (&mut self.renewal).await;
        if self.leased.load(Ordering::Relaxed) {
            let deletes = self.lease_on.iter().map(|p| p.delete(&self.lease_blob));
            let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(deletes)).await;
        }
    }
}

impl Drop for WriteIntent {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// What the background renewal of one intent needs.
struct Renewal {
    timing: LeaseTiming,
    vid: VersionId,
    n: u16,
    owner: String,
    index: Arc<dyn Index>,
    keys: Arc<StoreKeys>,
    providers: Vec<Provider>,
    blob: String,
    parts: Arc<AtomicU32>,
    leased: Arc<AtomicBool>,
}

/// Pushes the index expiry forward every `renew`, and from `after` on rewrites the lease on
/// the providers on the same beat.
async fn renew(r: Renewal) {
    let start = Instant::now();
    let mut next_record = start + r.timing.renew;
    let mut next_lease = (!r.providers.is_empty()).then_some(start + r.timing.after);
    loop {
        let wake = next_lease.map_or(next_record, |l| l.min(next_record));
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if now >= next_record {
            next_record = now + r.timing.renew;
            let expires = now_ns() + r.timing.ttl.as_nanos() as u64;
            match r.index.renew_pending(&r.vid, &r.owner, expires).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("gc took this write for a crashed one; it will not commit"),
                Err(e) => tracing::warn!("could not renew a write in progress in the index: {e}"),
            }
        }
        if next_lease.is_some_and(|l| now >= l) {
            next_lease = Some(now + r.timing.renew);
            let lease = WriteLease { vid: r.vid, n: r.n, parts: r.parts.load(Ordering::Relaxed) };
            let sealed = Bytes::from(lease.seal(&r.keys, &r.blob));
            r.leased.store(true, Ordering::Relaxed);
            let wrote = futures::future::join_all(r.providers.iter().map(|p| p.write(&r.blob, sealed.clone()))).await;
            if wrote.iter().all(Result::is_err) {
                tracing::warn!("could not write the lease of a long put to any provider; a gc elsewhere may remove its early parts (the put then fails rather than lose data)");
            }
        }
    }
}
