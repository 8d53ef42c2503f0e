//! Providers: places that store opaque blobs, built from configuration with Apache OpenDAL.
//!
//! A provider knows blob names and bytes, nothing about objects, shards or keys. Each one is an
//! OpenDAL [`Operator`](opendal::Operator) wrapped in layers (timeout, retry with backoff on
//! temporary errors); later layers (health tracking, hedging, fault injection) stack the same way.
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
