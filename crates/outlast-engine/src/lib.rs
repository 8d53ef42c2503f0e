//! Outlast's engine: turns a configuration and a key into a store of objects spread over
//! independent providers.
//!
//! [`config`] reads and validates `outlast.toml`; [`keyfile`] loads the master key; [`placement`]
//! picks which provider holds which shard; [`index`] is the local SQLite cache of current
//! versions; [`store`] runs put, get, list, delete and gc, writing through the codec to the
//! providers.
#![deny(missing_docs)]

pub mod config;
pub mod config_edit;
pub mod display;
pub mod error;
pub mod index;
pub mod keyfile;
pub mod metadata;
pub mod placement;
pub mod progress;
pub mod sample;
pub mod store;

mod breaker;
mod buffers;
mod drill;
mod evacuate;
mod gc;
mod get;
mod identity;
mod intent;
mod lease;
mod listed;
mod nameset;
mod owed;
mod put;
mod quorum;
mod recover;
mod repair;
pub mod scrub;
mod shards;
mod unopened;

pub use config::Config;
pub use drill::{DrillReport, Evacuation};
pub use error::EngineError;
pub use evacuate::EvacuateReport;
pub use gc::{GcDeletion, GcOptions, GcReason, GcReport};
pub use get::{ByteRange, GetSink, WriteSink};
pub use lease::LeaseTiming;
pub use owed::ProviderOwed;
pub use progress::Progress;
pub use recover::RecoverReport;
pub use repair::{RepairOptions, RepairReport};
pub use scrub::{ProviderScrub, ScrubOptions, ScrubReport};
pub use store::{GetReport, ObjectInfo, ProviderHealth, ProviderReport, PutOptions, PutReport, Store};
pub use unopened::Unopened;
