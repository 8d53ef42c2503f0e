//! What the long jobs share: the context each runs with ([`context::JobContext`]: status and
//! stop, the breaker that gives up on a failing provider, the memory budget of a job's buffers,
//! the write pace), hashed name sets, the lease scan, the lost-blob check, manifest-copy
//! judgement, tombstone repair and versions the index lacks. (Listings staged on disk for one
//! job are in `scratch`.)

pub(crate) mod breaker;
pub(crate) mod buffers;
pub(crate) mod context;
pub(crate) mod copies;
pub(crate) mod leases;
pub(crate) mod lost;
pub(crate) mod nameset;
pub(crate) mod pacer;
pub(crate) mod tombstones;
pub(crate) mod unknown;
