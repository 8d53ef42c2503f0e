//! Write leases: how a put that runs long keeps gc elsewhere off its blobs.
//!
//! gc deletes a blob its own index does not know only once it is older than its floor for
//! unknown blobs ([`crate::jobs::kit::leases::UNKNOWN_MIN_AGE`]); a put from another state
//! folder or machine that runs longer than that would lose its early parts. Such a put writes a
//! sealed lease (`l/` + tag of its version id) to every placed provider once it has run for
//! [`LeaseTiming::after`], and rewrites it every [`LeaseTiming::renew`] until it commits or
//! gives up, then deletes it. gc honours a lease whose age, by the provider's own clock (the
//! modification time of a blob gc writes there just before), is under [`LeaseTiming::ttl`]:
//! every blob name of that version is kept, on every provider. A put shorter than `after`
//! writes no lease and pays nothing.
//!
//! The lease is the providers' half of a write intent (`intent.rs`), which writes and renews
//! it; `jobs/kit/leases.rs` reads them for gc.

use std::time::Duration;

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
