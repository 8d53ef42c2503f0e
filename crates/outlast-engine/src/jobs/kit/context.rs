//! What every long job runs with, made once when it starts.

use super::breaker::Breaker;
use super::buffers::{Buffers, JOB_BUFFER_BYTES};
use super::pacer::Pacer;
use crate::jobs::status::Tracked;
use crate::progress::Progress;

/// A job's shared state, handed to its tasks as one value: its live status and the caller's
/// stop request ([`Tracked`]), the breaker that gives up on a provider that keeps failing, the
/// memory budget of the data it holds in flight, and the pace of its writes. A job that needs
/// no breaker, budget or pace carries them unused; they cost nothing until asked.
pub(crate) struct JobContext<'a> {
    /// Status, progress and stop.
    pub(crate) job: Tracked<'a>,
    pub(crate) breaker: Breaker,
    pub(crate) buffers: Buffers,
    pub(crate) pacer: Pacer,
}

impl<'a> JobContext<'a> {
    /// Starts job `name` for a caller following it through `progress`, writing at most
    /// `limit_rate` bytes a second (none: no limit).
    pub(crate) fn start(name: &'static str, progress: &'a dyn Progress, limit_rate: Option<u64>) -> Self {
        JobContext {
            job: Tracked::start(name, progress),
            breaker: Breaker::default(),
            buffers: Buffers::new(JOB_BUFFER_BYTES),
            pacer: Pacer::new(limit_rate),
        }
    }

    /// Marks the job done, however it ended.
    pub(crate) fn finish(&self) {
        self.job.finish();
    }
}
