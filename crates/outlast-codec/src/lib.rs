//! Outlast's codec: everything that turns an object into opaque shards and back, with no I/O.
//!
//! Data flows one way through it: plaintext is cut into segments ([`layout`]), each segment is
//! sealed with AES-256-GCM under the object's own data key ([`seal`]), the ciphertext is split
//! into `k` data shards and `n - k` Reed-Solomon parity shards ([`erasure`]) and every shard gets
//! a keyed integrity check ([`check`]). The manifest that describes a version ([`manifest`]) is
//! sealed under a key derived from the master key ([`keys`]), and every blob gets an opaque name
//! ([`names`]). [`pipeline`] ties these steps together for one segment at a time. The byte-level
//! format is specified in `docs/FORMAT.md`.
#![deny(missing_docs)]

pub mod check;
pub mod claim;
pub mod erasure;
pub mod error;
pub mod keys;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod marker;
pub mod names;
pub mod pipeline;
pub mod seal;

pub use claim::CompositeClaim;
pub use error::CodecError;
pub use keys::{DataKey, KdfParams, MasterKey, StoreKeys};
pub use layout::Layout;
pub use lease::WriteLease;
pub use manifest::{
    CompositeManifest, CompositePart, Manifest, ManifestBody, ObjectManifest, ShardPlacement, VersionId, VersionStamp,
};
pub use marker::ProviderMarker;
pub use pipeline::{DecodedSegment, EncodedSegment, SegmentCodec};
