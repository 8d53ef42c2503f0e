//! Outlast's engine: turns a configuration and a key into a store of objects spread over
//! independent providers.
//!
//! [`config`] reads and validates `outlast.toml`; [`keyfile`] loads the master key; [`placement`]
//! picks which provider holds which shard; [`index`] is the local SQLite cache of current
//! versions; [`store`] opens a store (its providers, key and index). Each operation on it is a
//! module of its own that adds to `impl Store`: `put`, `get`, `list`, `remove`, the provider
//! view (`fleet`, `probe`); the long jobs (scrub, repair, evacuate, drill, gc, recover) are in
//! `jobs`, sharing only `jobs::kit`.
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

mod composite;
mod fleet;
mod get;
mod identity;
mod intent;
mod jobs;
mod lease;
mod list;
mod owed;
mod probe;
mod put;
mod quorum;
mod remove;
mod scratch;
mod shards;
mod stamps;
mod unopened;

pub use composite::CompositeOptions;
pub use config::Config;
pub use error::{EngineError, IndexError, ProviderFailure};
pub use fleet::ProviderHealth;
pub use get::GetReport;
pub use get::{ByteRange, GetSink, WriteSink};
pub use index::{Fence, Precondition};
pub use jobs::drill::{DrillReport, Evacuation};
pub use jobs::evacuate::EvacuateReport;
pub use jobs::gc::{GcDeletion, GcOptions, GcReason, GcReport};
pub use jobs::recover::RecoverReport;
pub use jobs::repair::{RepairOptions, RepairReport};
pub use jobs::scrub::{ProviderScrub, ScrubOptions, ScrubReport};
pub use jobs::status::{JobError, JobErrorKind, JobStatus, LiveStatus, Phase};
pub use jobs::upkeep::BackgroundRepair;
pub use lease::LeaseTiming;
pub use list::ObjectInfo;
pub use owed::ProviderOwed;
pub use probe::ProviderReport;
pub use progress::Progress;
pub use put::{BodyMd5, PutOptions, PutReport};
pub use shards::ShardFault;
pub use stamps::{check_user_name, MAX_NAME_LEN, RESERVED_PREFIX};
pub use store::Store;
pub use unopened::Unopened;
