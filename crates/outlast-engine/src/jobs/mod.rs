//! The long jobs over the whole store: scrub, repair, evacuate, drill, gc and recover. Each
//! adds to `impl Store` in a file of its own, starts with a `JobContext` (`kit::context`: its
//! status and stop, breaker, buffers and pace) and imports the other shared machinery from
//! `kit` (the lost-blob check, manifest-copy judgement, ...), never another job. Each reports
//! as it runs through `status` (a live [`status::JobStatus`], errors as [`status::JobError`]).

pub(crate) mod drill;
pub(crate) mod evacuate;
pub(crate) mod gc;
pub(crate) mod recover;
pub(crate) mod repair;
pub(crate) mod scrub;
pub mod status;
pub(crate) mod upkeep;

mod kit;
