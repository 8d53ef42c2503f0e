//! Reading the write leases on the providers for gc (`lease.rs` says what a lease is): which
//! are alive by each provider's own clock, and what they protect.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use outlast_codec::{names, WriteLease};
use outlast_provider::Provider;

use crate::jobs::status::{JobError, JobErrorKind};
use crate::store::Store;

/// The least age of a blob that gc deletes without knowing why it exists: a write in progress
/// elsewhere (another state folder, another machine) names its blobs in its own index only.
/// Long enough for any write's parts to be committed or abandoned in the normal course.
pub(crate) const UNKNOWN_MIN_AGE: Duration = Duration::from_secs(15 * 60);

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
    pub errors: Vec<JobError>,
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
                    scan.errors.push(JobError::provider(
                        p.name(),
                        JobErrorKind::Listing,
                        format!("cannot list the leases on `{}`: {e}", p.name()),
                    ));
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
                    scan.errors.push(JobError::provider(
                        p.name(),
                        JobErrorKind::Provider,
                        format!("cannot read the clock of `{}`: {e}", p.name()),
                    ));
                    continue;
                }
            };
            for entry in leases {
                let age = entry.modified.and_then(|m| now.duration_since(m).ok()).unwrap_or(Duration::ZERO);
                if age >= self.lease_timing.ttl {
                    if age >= self.lease_timing.ttl + UNKNOWN_MIN_AGE {
                        scan.dead.push((i, entry.name));
                    }
                    continue;
                }
                let lease = match p.read(&entry.name).await.map(|b| WriteLease::open(&self.keys, &entry.name, &b)) {
                    Ok(Ok(lease)) => lease,
                    Ok(Err(_)) => continue, // not a lease of this store
                    Err(e) => {
                        scan.errors.push(JobError::provider(
                            p.name(),
                            JobErrorKind::Provider,
                            format!("cannot read a lease on `{}`: {e}", p.name()),
                        ));
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
