//! What the long jobs share: the breaker that gives up on a failing provider, the memory
//! budget of a job's buffers, hashed name sets, the lease scan, the lost-blob check,
//! manifest-copy judgement, tombstone repair and versions the index lacks. (Listings staged on
//! disk are the index's: `index::listed`.)

pub(crate) mod breaker;
pub(crate) mod buffers;
pub(crate) mod copies;
pub(crate) mod leases;
pub(crate) mod lost;
pub(crate) mod nameset;
pub(crate) mod tombstones;
pub(crate) mod unknown;
