//! Write leases: how a put that runs long keeps gc elsewhere off its blobs.
//!
//! gc deletes a blob its own index does not know only once it is older than
//! [`crate::gc::UNKNOWN_MIN_AGE`]; a put from another state folder or machine that runs longer
//! than that would lose its early parts. Such a put writes a sealed lease (`l/` + tag of its
//! version id) to every placed provider once it has run for [`LeaseTiming::after`], and
//! rewrites it every [`LeaseTiming::renew`] until it commits or gives up, then deletes it. gc
//! honours a lease whose age, by the provider's own clock (the modification time of a blob gc
//! writes there just before), is under [`LeaseTiming::ttl`]: every blob name of that version
//! is kept, on every provider. A put shorter than `after` writes no lease and pays nothing.
//!
//! The lease is the providers' half of a write intent (`intent.rs`), which writes and renews
//! it; this module reads leases for gc.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use outlast_codec::{names, WriteLease};
use outlast_provider::Provider;

use crate::Store;

/// When a put takes a lease, how often it renews it, and how long gc honours one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A put that has run this long takes a lease: well inside gc's floor for unknown blobs.
    pub after: Duration,
    /// How often the lease is rewritten.
    pub renew: Duration,
    /// A lease not rewritten for this long (by the provider's clock) protects nothing.
    pub ttl: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming { after: Duration::from_secs(5 * 60), renew: Duration::from_secs(2 * 60), ttl: Duration::from_secs(10 * 60) }
    }
}

/// What gc learned of the leases on the providers.
#[derive(Default)]
pub(crate) struct LeaseScan {
    /// Blob names that live leases protect, on every provider.
    pub protected: HashSet<String>,
    /// Leases that live.
    pub live: u64,
    /// (provider index, lease blob) of leases long dead: gc may delete them.
    pub dead: Vec<(usize, String)>,
    /// Providers whose leases could not be read: gc deletes nothing unknown anywhere then.
    pub errors: Vec<String>,
}

impl Store {
    /// Reads every lease on every provider and judges its age by that provider's clock.
    pub(crate) async fn scan_leases(&self) -> LeaseScan {
        let mut scan = LeaseScan::default();
        let clock = names::clock_blob(&self.keys);
        for (i, p) in self.providers.iter().enumerate() {
            let listed = match p.list(names::LEASE_PREFIX).await {
                Ok(l) => l,
                Err(e) => {
                    scan.errors.push(format!("cannot list the leases on `{}`: {e}", p.name()));
                    continue;
                }
            };
            let leases: Vec<_> =
                listed.into_iter().filter(|e| e.name != clock && names::has_shape(&e.name, names::LEASE_PREFIX)).collect();
            if leases.is_empty() {
                continue;
            }
            let now = match provider_now(p, &clock).await {
                Ok(now) => now,
                Err(e) => {
                    scan.errors.push(format!("cannot read the clock of `{}`: {e}", p.name()));
                    continue;
                }
            };
            for entry in leases {
                let age = entry.modified.and_then(|m| now.duration_since(m).ok()).unwrap_or(Duration::ZERO);
                if age >= self.lease_timing.ttl {
                    if age >= self.lease_timing.ttl + crate::gc::UNKNOWN_MIN_AGE {
                        scan.dead.push((i, entry.name));
                    }
                    continue;
                }
                let lease = match p.read(&entry.name).await.map(|b| WriteLease::open(&self.keys, &entry.name, &b)) {
                    Ok(Ok(lease)) => lease,
                    Ok(Err(_)) => continue, // not a lease of this store
                    Err(e) => {
                        scan.errors.push(format!("cannot read a lease on `{}`: {e}", p.name()));
                        continue;
                    }
                };
                scan.live += 1;
                scan.protected.insert(names::manifest_blob(&self.keys, &lease.vid));
                for shard in 0..lease.n {
                    // One part past what it names: the put may have opened it since.
                    for part in 0..=lease.parts {
                        scan.protected.insert(names::shard_blob(&self.keys, &lease.vid, shard, part));
                    }
                }
            }
        }
        scan
    }
}

/// The provider's current time: the modification time it gives a blob written now.
async fn provider_now(p: &Provider, clock: &str) -> Result<SystemTime, outlast_provider::ProviderError> {
    p.write(clock, Bytes::from_static(b"clock")).await?;
    let st = p.stat(clock).await?;
    Ok(st.modified.unwrap_or_else(SystemTime::now))
}
