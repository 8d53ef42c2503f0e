//! The caller's side of a running transfer or job: progress goes out (the CLI draws bars from
//! it, later faces read the same), and a request to stop comes in.

use crate::jobs::status::LiveStatus;

/// Receives progress of one transfer or job. Implementations must be cheap: it is called per
/// segment.
pub trait Progress: Send + Sync {
    /// `bytes` more bytes were processed.
    fn advance(&self, bytes: u64);
    /// The work turned out to be `bytes` in all (known only after a first pass, e.g. repair);
    /// in [`Unit::Items`] when the job said so.
    fn set_total(&self, _bytes: u64) {}
    /// What `advance` and `set_total` count, when not bytes (said before either is called).
    fn set_unit(&self, _unit: Unit) {}
    /// Whether the caller asks the job to stop at its next clean point (a person pressed
    /// Ctrl-C). A job that honours it finishes what is in flight, starts nothing new and says
    /// so in its report; running it again goes on where it stopped. Transfers ignore it.
    fn stop_requested(&self) -> bool {
        false
    }
    /// A job starts: `status` is its live state (phase, work done, errors by provider) for as
    /// long as the caller wants to show it. Transfers do not call it.
    fn watch(&self, _status: LiveStatus) {}
}

/// What a job's progress counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (transfers, repair, evacuation, drill).
    Bytes,
    /// Things of the named kind (scrub's checks, recover's manifest copies).
    Items(&'static str),
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
