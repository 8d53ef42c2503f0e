//! Progress reporting for long transfers; the CLI draws bars from it, later faces read the same.

/// Receives progress of one transfer. Implementations must be cheap: it is called per segment.
pub trait Progress: Send + Sync {
    /// `bytes` more bytes were processed.
    fn advance(&self, bytes: u64);
    /// The work turned out to be `bytes` in all (known only after a first pass, e.g. repair).
    fn set_total(&self, _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
