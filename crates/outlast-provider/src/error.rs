//! Provider errors, classified the way retry and health decisions need them.

use thiserror::Error;

/// What kind of failure a provider reported, read from OpenDAL's error kind and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The blob does not exist.
    NotFound,
    /// The provider refused the credentials or the operation (401/403): possibly a terminated
    /// account.
    Denied,
    /// Worth retrying later: timeouts, 5xx, throttling, connection failures.
    Transient,
    /// A write answered "not found": the bucket or container itself is gone.
    Gone,
    /// Anything else: retrying will not help.
    Permanent,
}

/// An error from one provider, carrying its name.
#[derive(Debug, Error)]
pub enum ProviderError {
    /// The provider's configuration is unusable.
    #[error("provider `{provider}`: {message}")]
    Config {
        /// Provider name.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// The location does not answer as the configured provider (another provider's or
    /// another store's identity marker, or none where one was written): nothing is read from
    /// or written to it in this process.
    #[error("provider `{provider}` is unavailable: {message}")]
    Identity {
        /// Provider name.
        provider: String,
        /// What it answered and what to do.
        message: String,
    },
    /// An operation on the provider failed.
    #[error("provider `{provider}`: {op} `{path}` failed: {source}")]
    Op {
        /// Provider name.
        provider: String,
        /// The operation (read, write, ...).
        op: &'static str,
        /// The blob or prefix.
        path: String,
        /// How it failed.
        class: ErrorClass,
        /// OpenDAL's error (boxed: it is large, and errors travel through every `Result`).
        #[source]
        source: Box<opendal::Error>,
    },
}

impl ProviderError {
    /// The failure class (configuration errors are permanent).
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Config { .. } | ProviderError::Identity { .. } => ErrorClass::Permanent,
            ProviderError::Op { class, .. } => *class,
        }
    }

    /// Whether this says the blob does not exist.
    pub fn is_not_found(&self) -> bool {
        self.class() == ErrorClass::NotFound
    }
}

/// Reads the class from OpenDAL's error kind and retry status (never from messages); `op` is
/// the operation, since "not found" on a write means the bucket is gone, not a blob.
pub(crate) fn classify(e: &opendal::Error, op: &str) -> ErrorClass {
    use opendal::ErrorKind::*;
    match e.kind() {
        NotFound if matches!(op, "write" | "close") => ErrorClass::Gone,
        NotFound => ErrorClass::NotFound,
        PermissionDenied => ErrorClass::Denied,
        RateLimited => ErrorClass::Transient,
        _ if e.is_temporary() || e.is_persistent() => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}
