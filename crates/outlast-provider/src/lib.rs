//! Providers: places that store opaque blobs, built from configuration with Apache OpenDAL.
//!
//! A provider knows blob names and bytes, nothing about objects, shards or keys. Each one is an
//! OpenDAL [`Operator`](opendal::Operator) with OpenDAL's layers (a timeout, retries with
//! backoff on temporary errors, and on SFTP a limit of operations in flight). Around each
//! operation, outermost first: the health record, the operation's deadline ([`Patience`]),
//! the identity gate (a location must prove it is this provider before its first use),
//! injected faults ([`Faults`], outside OpenDAL's retry on purpose: docs/decisions/0004), and a
//! retry of refused SSH handshakes. `staging` says what a provider has half-written.
#![deny(missing_docs)]

mod error;
pub mod faults;
pub mod health;
mod provider;
mod spec;
mod staging;

pub use error::{ErrorClass, ProviderError};
pub use faults::Faults;
pub use health::{HealthState, HealthStats};
pub use provider::{BlobEntry, BlobWriter, IdentityCheck, IdentityRecheck, Listing, Patience, Provider, Verdict};
pub use spec::{Location, ProviderSpec, SCHEMES};
pub use staging::{staged_base, staged_target, TEMP_PREFIX};
