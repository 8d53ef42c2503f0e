//! The engine's errors as S3 answers: what a client can act on gets its own code, a provider
//! quorum that is not there is a 503 a client retries, and nothing becomes a 500 whose cause
//! is known.

use outlast_engine::EngineError;
use s3s::{S3Error, S3ErrorCode};

/// The S3 answer to `e`, met while serving `key` (an object key, or a bucket name).
pub(crate) fn s3_error(e: EngineError, key: &str) -> S3Error {
    use S3ErrorCode as C;
    let (code, message) = match &e {
        EngineError::NotFound(_) => (C::NoSuchKey, format!("The specified key does not exist: {key}")),
        EngineError::InvalidName(m) => (C::KeyTooLongError, m.clone()),
        EngineError::Metadata(m) => (C::InvalidArgument, m.clone()),
        EngineError::Conflict(_) => {
            (C::PreconditionFailed, "At least one of the preconditions you specified did not hold".to_string())
        }
        EngineError::Fenced(_) => {
            (C::OperationAborted, "A conflicting operation ended this one first; it was discarded".to_string())
        }
        EngineError::Superseded { .. } => {
            (C::OperationAborted, "A newer write of this key committed first; this one was discarded".to_string())
        }
        EngineError::Range { .. } => (C::InvalidRange, e.to_string()),
        EngineError::Quorum { .. } | EngineError::Unreadable { .. } | EngineError::PlacementImpossible { .. } => {
            (C::ServiceUnavailable, format!("too few storage providers answer right now; retry later ({e})"))
        }
        EngineError::IndexBusy => (C::SlowDown, e.to_string()),
        EngineError::BadParts { .. } => (C::InvalidPart, e.to_string()),
        EngineError::BadDigest(_) => (C::BadDigest, "The Content-MD5 you specified did not match what was received".to_string()),
        _ => (C::InternalError, e.to_string()),
    };
    if code == C::InternalError {
        tracing::error!(key, "{e}");
    }
    S3Error::with_message(code, message)
}
