//! Waiting for concurrent provider writes the way the commit rule needs: every answer until a
//! quorum has succeeded, then only a short grace for the rest. A provider that hangs costs the
//! grace, never its timeout; its shard is left missing (repair debt).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

/// The least grace given to stragglers once the quorum is reached.
const GRACE_MIN: Duration = Duration::from_secs(1);
/// The grace is also at least this many times what the quorum took.
const GRACE_FACTOR: u32 = 4;

/// What came of a set of writes.
pub(crate) struct Outcome<T, E> {
    /// Writes that answered, by index.
    pub answered: Vec<(usize, Result<T, E>)>,
    /// Writes given up on after the grace (their futures are dropped, cancelling them).
    pub abandoned: Vec<usize>,
    /// How long each write that succeeded took to answer.
    pub took: Vec<(usize, Duration)>,
    /// How long the abandoned writes had been waited for.
    pub waited: Duration,
}

impl<T, E> Outcome<T, E> {
    /// Tells each provider's health how long its write took, or had been waited for when
    /// given up on (`provider` maps a write's index to its provider): the slow rule then sees
    /// providers that are slow to write.
    pub(crate) fn note_write_times<'p>(&self, provider: impl Fn(usize) -> &'p outlast_provider::Provider) {
        for &(i, took) in &self.took {
            provider(i).note_write_took(took, false);
        }
        for &i in &self.abandoned {
            provider(i).note_write_took(self.waited, true);
        }
    }
}

/// Runs `writes` (index, future) concurrently until all answer, or until `quorum` succeeded and
/// the grace after that ran out. Writes whose index is in `impatient` (providers known to be
/// slow) get no grace: once the quorum is reached they are not waited for at all.
pub(crate) async fn gather<T, E, F>(writes: Vec<(usize, F)>, quorum: usize, impatient: &[usize]) -> Outcome<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut pending: Vec<usize> = writes.iter().map(|(i, _)| *i).collect();
    let mut inflight: FuturesUnordered<_> = writes.into_iter().map(|(i, f)| async move { (i, f.await) }).collect();
    let mut answered = Vec::new();
    let mut took = Vec::new();
    let mut ok = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_some() && pending.iter().all(|i| impatient.contains(i)) {
            break;
        }
        let next = match deadline {
            None => inflight.next().await,
            Some(d) => match tokio::time::timeout_at(d.into(), inflight.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some((i, r)) = next else { break };
        pending.retain(|p| *p != i);
        if r.is_ok() {
            took.push((i, started.elapsed()));
        }
        ok += r.is_ok() as usize;
        answered.push((i, r));
        if ok >= quorum && deadline.is_none() {
            deadline = Some(Instant::now() + GRACE_MIN.max(started.elapsed() * GRACE_FACTOR));
        }
    }
    Outcome { answered, abandoned: pending, took, waited: started.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Write = (usize, std::pin::Pin<Box<dyn Future<Output = Result<(), ()>>>>);

    #[tokio::test]
    async fn a_hanging_write_costs_the_grace_not_forever() {
        let writes: Vec<Write> = vec![
            (0, Box::pin(async { Ok(()) })),
            (1, Box::pin(async { Ok(()) })),
            (2, Box::pin(std::future::pending())),
            (3, Box::pin(async { Err(()) })),
        ];
        let out = tokio::time::timeout(Duration::from_secs(30), gather(writes, 2, &[])).await.expect("gave up in time");
        assert_eq!(out.abandoned, [2]);
        assert_eq!(out.answered.len(), 3);
    }

    #[tokio::test]
    async fn a_known_slow_provider_gets_no_grace() {
        let writes: Vec<Write> = vec![
            (0, Box::pin(async { Ok(()) })),
            (
                1,
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    Ok(())
                }),
            ),
        ];
        let started = Instant::now();
        let out = gather(writes, 1, &[1]).await;
        assert_eq!(out.abandoned, [1]);
        assert!(started.elapsed() < Duration::from_secs(10), "waited for the slow one");
    }

    #[tokio::test]
    async fn below_quorum_every_answer_is_awaited() {
        let writes: Vec<Write> = vec![
            (0, Box::pin(async { Ok(()) })),
            (
                1,
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok(())
                }),
            ),
        ];
        let out = gather(writes, 2, &[]).await;
        assert!(out.abandoned.is_empty());
        assert_eq!(out.answered.iter().filter(|(_, r)| r.is_ok()).count(), 2);
    }
}
