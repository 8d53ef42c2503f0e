//! Progress reporting for long transfers; the CLI draws bars from it, later faces read the same.

/// Receives progress of one transfer. Implementations must be cheap: it is called per segment.
pub trait Progress: Send + Sync {
    /// `bytes` more plaintext bytes were processed.
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
