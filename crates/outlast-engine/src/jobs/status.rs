//! What a long job is doing while it runs, and what it could not do, in shapes a face can
//! show without parsing text: the CLI's progress bar reads [`JobStatus`] now; a dashboard and
//! metrics read the same later. Jobs report through [`Tracked`], which keeps the status and
//! passes progress on to the caller's [`Progress`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::progress::{Progress, Unit};

/// Why a job could not do one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorKind {
    /// An operation on a provider failed (down, refusing, slow past its deadline).
    Provider,
    /// A provider failed several operations in a row and was left alone for the rest of the run.
    LeftAlone,
    /// A placement names a provider that is not configured.
    NotConfigured,
    /// Too little of an object could be read to rebuild it.
    Unreadable,
    /// The object changed under the job too often; a later run does it.
    Changed,
    /// A provider could not be listed whole.
    Listing,
    /// What was written did not read back as written.
    ReadBack,
    /// The index or another part of this machine failed.
    Local,
}

/// One thing a job could not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobError {
    /// The provider it concerns, when one does.
    pub provider: Option<String>,
    /// The object it concerns, when one does.
    pub object: Option<String>,
    /// Why, by kind.
    pub kind: JobErrorKind,
    /// Why, in words (the object's name is not repeated here).
    pub message: String,
}

impl JobError {
    /// An error of `kind` about `object` (and `provider`, when one is to blame).
    pub fn object(object: &str, provider: Option<&str>, kind: JobErrorKind, message: impl ToString) -> JobError {
        JobError { provider: provider.map(str::to_string), object: Some(object.to_string()), kind, message: message.to_string() }
    }

    /// An error of `kind` about `provider` as a whole.
    pub fn provider(provider: &str, kind: JobErrorKind, message: impl ToString) -> JobError {
        JobError { provider: Some(provider.to_string()), object: None, kind, message: message.to_string() }
    }

    /// An error about neither one provider nor one object.
    pub fn other(kind: JobErrorKind, message: impl ToString) -> JobError {
        JobError { provider: None, object: None, kind, message: message.to_string() }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{object}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    Starting,
    /// Listing what the providers hold.
    Listing,
    /// Counting what is to be done (from the index).
    Counting,
    /// Doing it.
    Working,
    /// Deletion records (tombstones) after the objects.
    Tombstones,
    /// Asked to stop: what is in flight finishes, nothing new starts.
    Stopping,
    /// Over.
    Done,
}

/// A job's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// Which job (`repair`, `scrub`, ...).
    pub job: &'static str,
    /// Where it is.
    pub phase: Phase,
    /// What `done` and `total` count: `bytes`, or the items named.
    pub unit: String,
    /// Work done so far.
    pub done: u64,
    /// All the work, once known.
    pub total: Option<u64>,
    /// Errors so far, by provider (`""`: none to blame).
    pub errors_by_provider: BTreeMap<String, u64>,
}

/// A job's live status, shared between the job and whoever watches it.
#[derive(Debug, Clone)]
pub struct LiveStatus(Arc<Mutex<JobStatus>>);

impl LiveStatus {
    /// The status now.
    pub fn snapshot(&self) -> JobStatus {
        self.0.lock().expect("status lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        f(&mut self.0.lock().expect("status lock"));
    }
}

/// The caller's progress, with the job's live status kept beside it.
pub(crate) struct Tracked<'a> {
    inner: &'a dyn Progress,
    status: LiveStatus,
}

impl<'a> Tracked<'a> {
    /// Starts `job`'s status and shows it to the caller.
    pub(crate) fn start(job: &'static str, inner: &'a dyn Progress) -> Tracked<'a> {
        let status = LiveStatus(Arc::new(Mutex::new(JobStatus {
            job,
            phase: Phase::Starting,
            unit: "bytes".into(),
            done: 0,
            total: None,
            errors_by_provider: BTreeMap::new(),
        })));
        inner.watch(status.clone());
        Tracked { inner, status }
    }

    /// The job moves on to `phase`.
    pub(crate) fn phase(&self, phase: Phase) {
        self.status.update(|s| s.phase = phase);
    }

    /// Counts errors as the job meets them.
    pub(crate) fn errors<'e>(&self, errors: impl IntoIterator<Item = &'e JobError>) {
        self.status.update(|s| {
            for e in errors {
                *s.errors_by_provider.entry(e.provider.clone().unwrap_or_default()).or_default() += 1;
            }
        });
    }

    /// The job is over (stopped or not).
    pub(crate) fn finish(&self) {
        self.phase(Phase::Done);
    }
}

impl Progress for Tracked<'_> {
    fn advance(&self, n: u64) {
        self.status.update(|s| s.done += n);
        self.inner.advance(n);
    }

    fn set_total(&self, n: u64) {
        self.status.update(|s| s.total = Some(n));
        self.inner.set_total(n);
    }

    fn set_unit(&self, unit: Unit) {
        self.status.update(|s| {
            s.unit = match unit {
                Unit::Bytes => "bytes".into(),
                Unit::Items(what) => what.into(),
            }
        });
        self.inner.set_unit(unit);
    }

    fn stop_requested(&self) -> bool {
        let stop = self.inner.stop_requested();
        if stop {
            self.status.update(|s| {
                if s.phase != Phase::Done {
                    s.phase = Phase::Stopping;
                }
            });
        }
        stop
    }

    fn watch(&self, status: LiveStatus) {
        self.inner.watch(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Watcher {
        seen: Mutex<Option<LiveStatus>>,
        stop: AtomicBool,
    }

    impl Progress for Watcher {
        fn advance(&self, _: u64) {}
        fn watch(&self, status: LiveStatus) {
            *self.seen.lock().unwrap() = Some(status);
        }
        fn stop_requested(&self) -> bool {
            self.stop.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn the_caller_sees_the_job_as_it_runs() {
        let watcher = Watcher::default();
        let job = Tracked::start("repair", &watcher);
        let live = watcher.seen.lock().unwrap().clone().expect("shown at the start");
        job.phase(Phase::Working);
        job.set_unit(Unit::Items("checks"));
        job.set_total(10);
        job.advance(3);
        job.errors(&[
            JobError::object("a", Some("p0"), JobErrorKind::Provider, "refused"),
            JobError::other(JobErrorKind::Local, "index"),
        ]);
        let now = live.snapshot();
        assert_eq!((now.phase, now.unit.as_str(), now.done, now.total), (Phase::Working, "checks", 3, Some(10)));
        assert_eq!(now.errors_by_provider, BTreeMap::from([(String::new(), 1), ("p0".to_string(), 1)]));
        watcher.stop.store(true, Ordering::Relaxed);
        assert!(job.stop_requested());
        assert_eq!(live.snapshot().phase, Phase::Stopping);
        job.finish();
        assert_eq!(live.snapshot().phase, Phase::Done);
        assert_eq!(
            serde_json::to_value(live.snapshot()).unwrap()["errors_by_provider"]["p0"],
            1,
            "serializable for faces that show it"
        );
    }

    #[test]
    fn an_error_reads_as_before_with_its_object_first() {
        assert_eq!(JobError::object("a/b", Some("p1"), JobErrorKind::Provider, "refused").to_string(), "a/b: refused");
        assert_eq!(JobError::provider("p1", JobErrorKind::Listing, "cannot list `p1`").to_string(), "cannot list `p1`");
    }
}
