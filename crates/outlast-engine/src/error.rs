//! The engine's error type: what went wrong and, where it helps, what to do about it.

use std::path::PathBuf;

use outlast_codec::CodecError;
use outlast_provider::ProviderError;
use thiserror::Error;

/// Why an engine operation failed.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The configuration file is missing, unreadable or invalid; `field` names the culprit.
    #[error("config {path}: {field}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The offending field (e.g. `coding.k`, `providers[2].scheme`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The key file is missing or unreadable, or the passphrase is not supplied.
    #[error("key: {0}")]
    Key(String),
    /// The key does not match the one the store was created with.
    #[error(
        "wrong key: {path} has fingerprint {found}, but this store was created with {expected}; use the store's own key file"
    )]
    WrongKey {
        /// Key file used.
        path: PathBuf,
        /// Fingerprint of the key found.
        found: String,
        /// Fingerprint recorded in the config.
        expected: String,
    },
    /// The passphrase derives another key than the store's.
    #[error("wrong passphrase: the key {path} derives from OUTLAST_PASSPHRASE is not this store's; check the passphrase")]
    WrongPassphrase {
        /// Key file (Argon2id parameters) used.
        path: PathBuf,
    },
    /// The config records no key fingerprint, and the providers' identity markers were
    /// written with another key.
    #[error(
        "wrong key: {path} opens none of the providers' identity markers ({providers} hold another key's); use the \
         store's own key file, and add its `key_fingerprint` to outlast.toml so that this is caught at once"
    )]
    KeyFitsNoMarker {
        /// Key file used.
        path: PathBuf,
        /// Providers that hold a marker of another key.
        providers: usize,
    },
    /// A put's content type or user metadata breaks the rules S3 holds them to.
    #[error("metadata: {0}")]
    Metadata(String),
    /// The version being read was replaced or deleted while it was read (its old shards went).
    #[error(
        "`{name}` was {} while it was being read; {}",
        if *deleted { "deleted" } else { "replaced by a newer version" },
        if *deleted { "nothing of it is left to read" } else { "run the get again to read the new version" }
    )]
    ChangedDuringRead {
        /// Object name.
        name: String,
        /// Whether it was deleted (rather than overwritten).
        deleted: bool,
    },
    /// A provider could not be built.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A command named a provider the configuration does not have.
    #[error("no provider named `{0}` in the configuration")]
    UnknownProvider(String),
    /// An object name outside the limits (see [`crate::stamps::MAX_NAME_LEN`]).
    #[error("invalid object name: {0}")]
    InvalidName(String),
    /// An evacuation was asked to move a provider's share onto that same provider.
    #[error("cannot evacuate `{0}` onto itself: name another provider to take its share")]
    EvacuateOntoItself(String),
    /// No choice of providers satisfies the failure-domain rule (each of an object's n shards
    /// in a domain of its own).
    #[error(
        "no placement satisfies the failure-domain rule: {n} shards need providers in {n} distinct domains, \
         and the configuration has {domains}"
    )]
    PlacementImpossible {
        /// Shards per object.
        n: usize,
        /// Distinct domains among the configured providers.
        domains: usize,
    },
    /// A location to be set up as a provider already holds blobs of Outlast's shapes.
    #[error(
        "`{provider}`'s location {location} is not empty: it holds Outlast blobs (of this store or another). \
         Taking it would mix them up; empty it first if its content may go, or pick another location"
    )]
    LocationInUse {
        /// Provider name.
        provider: String,
        /// Where it points.
        location: String,
    },
    /// No object has that name.
    #[error("no object named `{0}`")]
    NotFound(String),
    /// Too few providers accepted a write; nothing was made visible.
    #[error(
        "write of `{name}` failed: only {ok} of {needed} required providers succeeded ({}); nothing was changed",
        ProviderFailure::list(failures)
    )]
    Quorum {
        /// Object name.
        name: String,
        /// Providers that succeeded.
        ok: usize,
        /// Write quorum.
        needed: usize,
        /// What went wrong, provider by provider.
        failures: Vec<ProviderFailure>,
    },
    /// A concurrent write of the same name committed a newer version first; this write was
    /// discarded (its blobs removed), as if it had happened just before the newer one.
    #[error("`{name}` was overwritten by a newer write while this one was in progress; this write was discarded")]
    Superseded {
        /// The name written.
        name: String,
        /// Plaintext bytes of the discarded write.
        size: u64,
        /// Entity tag of the discarded write: what an S3 client is told of a PUT that a
        /// concurrent newer one replaced.
        etag: String,
    },
    /// The write's precondition did not hold at its commit (the name had a version where none
    /// was expected, or another than the one expected); this write was discarded.
    #[error("`{0}` is not at the version this write expected; this write was discarded")]
    Conflict(String),
    /// The name that fenced the write ([`crate::index::Fence`]) changed before the commit (an
    /// upload's record removed by a sweep or an abort); this write was discarded.
    #[error("`{0}` changed while this write was in progress; this write was discarded")]
    Fenced(String),
    /// A byte range starts at or past the end of a non-empty object.
    #[error("range starts at byte {start}, but `{name}` has {size} bytes")]
    Range {
        /// Object name.
        name: String,
        /// First byte asked for.
        start: u64,
        /// Object size.
        size: u64,
    },
    /// Too few good shards to read a segment.
    #[error(
        "`{name}` is unreadable: segment {segment} has {good} good shards, {needed} needed ({detail}); `outlast providers` \
         shows which providers are down, and the object reads again once enough of them answer"
    )]
    Unreadable {
        /// Object name.
        name: String,
        /// Segment index.
        segment: u64,
        /// Good shards found.
        good: usize,
        /// Shards needed (k).
        needed: usize,
        /// Per-provider failures.
        detail: String,
    },
    /// A part of a composite version is no longer the version the composite names (removed
    /// or replaced behind its back): the composite cannot be read whole.
    #[error("`{name}` is unreadable: its part `{part}` {reason}")]
    PartGone {
        /// The composite's name.
        name: String,
        /// The part's object name.
        part: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A put's body does not have the MD5 declared for it (corrupted or cut on the way): it
    /// was not committed.
    #[error("`{0}`: the body does not match the MD5 declared for it; nothing was stored")]
    BadDigest(String),
    /// A composite cannot be made of the parts given (one is not current, holds no data, or
    /// is itself a composite).
    #[error("cannot compose `{name}`: {reason}")]
    BadParts {
        /// The composite's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The codec refused data (tampering, wrong key).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The local state cannot be used by this build.
    #[error("local state: {0}")]
    State(String),
    /// The local index failed.
    #[error("local index: {0}")]
    Index(IndexError),
    /// Another command holds the local index for writing (a long gc, repair or put from the
    /// same state folder) and did not let go in time.
    #[error("the local index is in use by another outlast command on this state folder; run this again once it has finished")]
    IndexBusy,
    /// Local file I/O failed (source, destination, state folder).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Why the local index failed: the backend's own error, kept opaque so that callers do not
/// depend on which database the index is (SQLite today).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct IndexError(rusqlite::Error);

/// One provider's part in a failed operation: which provider, and what it did (the message
/// names the provider too, for people; faces that map errors read `provider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// Provider name.
    pub provider: String,
    /// What went wrong.
    pub message: String,
}

impl ProviderFailure {
    /// A failure of `provider`.
    pub fn new(provider: &str, message: impl Into<String>) -> Self {
        ProviderFailure { provider: provider.to_string(), message: message.into() }
    }

    /// The messages, one after another (or a note that none came).
    fn list(failures: &[ProviderFailure]) -> String {
        if failures.is_empty() {
            return "no provider reported an error".into();
        }
        failures.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ")
    }
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        // Busy: another connection (another command) holds the write lock. (Locked, a lock
        // within one connection, is no other command's doing.)
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => EngineError::IndexBusy,
            _ => EngineError::Index(IndexError(e)),
        }
    }
}

impl EngineError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io { context: context.into(), source }
    }
}
