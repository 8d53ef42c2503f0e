//! What a new version is given: a name checked against the limits, and a stamp newer than any
//! the index knows for that name.

use std::time::{SystemTime, UNIX_EPOCH};

use outlast_codec::{VersionId, VersionStamp};

use crate::error::EngineError;
use crate::store::Store;

/// Longest object name accepted (the S3 limit).
pub const MAX_NAME_LEN: usize = 1024;

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
        let latest = self.index.latest_stamp(name).await?.unwrap_or(0);
        Ok(VersionStamp { time_ns: now_ns().max(latest + 1), vid: VersionId::generate() })
    }
}
