//! What stands between the engine and a provider's OpenDAL operator, in the order an operation
//! meets it, outermost first:
//!
//! 1. `health`: the outcome and latency of the whole operation, as the engine saw it, go to the
//!    provider's health record (an identity refusal says nothing of the provider's health).
//! 2. `deadline` ([`Patience`]): the operation fails as transient once its time (a floor plus
//!    its bytes at a slowest rate) has passed, however OpenDAL's retries are going.
//! 3. `identity` (the gate): a location must prove it is this provider before its first use,
//!    and again once the verdict is old; one check at a time, its operations not recorded.
//! 4. `faults` ([`Faults`], tests and drills only): injected errors, latency and hangs, outside
//!    OpenDAL's retry on purpose, so that an injected 503 reaches the engine as a provider that
//!    keeps failing would (docs/decisions/0004).
//! 5. OpenDAL's layers ([`opendal_stack`]): a timeout per request and per I/O, retries with
//!    backoff on temporary errors, and on SFTP a limit of operations in flight; then the
//!    service. A refused SSH handshake is retried around the call (`Provider::retry_handshake`).
//!
//! Health, deadline and gate wrap whole operations (a write is an open, writes and a close), so
//! they live in `Provider`'s methods rather than as OpenDAL layers, which see single requests.

pub(crate) mod deadline;
pub mod faults;
pub(crate) mod health;
pub(crate) mod identity;

use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::Operator;

use crate::error::{classify, ProviderError};

pub use deadline::Patience;
pub use faults::Faults;
pub use identity::{IdentityCheck, IdentityRecheck, Verdict};

/// Operations in flight on one SFTP provider at once, per process: below sshd's default limit
/// of ten connections being set up at once.
pub(crate) const SFTP_CONNECTIONS: usize = 8;

/// OpenDAL's layers over a service's operator, innermost first.
pub(crate) fn opendal_stack(op: Operator, scheme: &str) -> Operator {
    let op = op
        .layer(TimeoutLayer::new().with_timeout(Duration::from_secs(60)).with_io_timeout(Duration::from_secs(30)))
        .layer(RetryLayer::new().with_max_times(3).with_jitter().with_min_delay(Duration::from_millis(50)));
    // OpenDAL's SFTP service holds one SSH connection (of a pool of 64) per operation in
    // flight, opening more as needed; sshd's default `MaxStartups 10:30:100` drops
    // handshakes beyond ten at once, which jobs that work on several objects side by side
    // reach. Operations past the limit wait their turn outside OpenDAL's timeout and retry
    // (a wait is no failure to retry).
    if scheme == "sftp" {
        op.layer(ConcurrentLimitLayer::new(SFTP_CONNECTIONS))
    } else {
        op
    }
}

/// A provider error for `op` on `path`, classified.
pub(crate) fn err(provider: &str, path: &str, op: &'static str, source: opendal::Error) -> ProviderError {
    let class = classify(&source, op);
    ProviderError::Op { provider: provider.to_string(), op, path: path.to_string(), class, source: Box::new(source) }
}
