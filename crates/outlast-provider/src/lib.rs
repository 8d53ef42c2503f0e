//! Providers: places that store opaque blobs, built from configuration with Apache OpenDAL.
//!
//! A provider knows blob names and bytes, nothing about objects, shards or keys. Each one is an
//! OpenDAL [`Operator`](opendal::Operator); `layers` says, in order, what stands around each
//! operation (health record, deadline, identity gate, injected faults, OpenDAL's timeout and
//! retry). `staging` says what a provider has half-written.
#![deny(missing_docs)]

mod error;
pub mod health;
pub mod layers;
mod provider;
mod spec;
mod staging;

pub use error::{ErrorClass, ProviderError};
pub use health::{HealthState, HealthStats};
pub use layers::faults;
pub use layers::{Faults, IdentityCheck, IdentityRecheck, Patience, Verdict};
pub use provider::{BlobEntry, BlobWriter, Listing, Provider};
pub use spec::{Location, ProviderSpec, SCHEMES};
pub use staging::{staged_base, staged_target, TEMP_PREFIX};
