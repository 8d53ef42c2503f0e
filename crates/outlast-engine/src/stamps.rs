//! What a new version is given: a name checked against the limits, and a stamp newer than any
//! the index knows for that name.

use std::time::{SystemTime, UNIX_EPOCH};

use outlast_codec::{VersionId, VersionStamp};

use crate::error::EngineError;
use crate::store::Store;

/// Longest object name accepted: a bucket name (at most 63 bytes), a slash and an S3 key (at
/// most 1,024), so that any legal key fits under any bucket (decision 0007).
pub const MAX_NAME_LEN: usize = 63 + 1 + 1024;

/// Prefix of the names the gateway keeps its records under (decision 0007). No bucket's object
/// can have it: a bucket name never starts with a dot.
pub const RESERVED_PREFIX: &str = ".outlast/";

/// Refuses a name that a person or an application may not write: outside the limits, or one
/// of the gateway's records (under [`RESERVED_PREFIX`]).
pub fn check_user_name(name: &str) -> Result<(), EngineError> {
    Store::check_name(name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(EngineError::InvalidName(format!("names under `{RESERVED_PREFIX}` are kept for the gateway's records")));
    }
    Ok(())
}

/// Nanoseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Store {
    pub(crate) fn check_name(name: &str) -> Result<(), EngineError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(EngineError::InvalidName(format!("object names are 1 to {MAX_NAME_LEN} bytes, without NUL")));
        }
        Ok(())
    }

    /// A stamp newer than anything the index knows for `name`.
    pub(crate) async fn next_stamp(&self, name: &str) -> Result<VersionStamp, EngineError> {
        self.next_stamp_with(name, VersionId::generate()).await
    }

    /// [`Self::next_stamp`] for a version whose id was chosen before (a composite takes its
    /// upload's).
    pub(crate) async fn next_stamp_with(&self, name: &str, vid: VersionId) -> Result<VersionStamp, EngineError> {
        let latest = self.index.latest_stamp(name).await?.unwrap_or(0);
        Ok(VersionStamp { time_ns: now_ns().max(latest + 1), vid })
    }
}
