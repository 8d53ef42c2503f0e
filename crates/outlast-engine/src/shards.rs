//! Fetching the shards of one object version: which to ask for and in what order, ranged reads
//! of runs of segments, checks, attribution of every fault to its provider, and the retry that
//! finds a shard that passes its check yet lies. Get decodes what this returns; repair
//! rebuilds lost shards from it; the drill reads through it with providers left out.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use outlast_codec::{names, CodecError, DataKey, Layout, ObjectManifest, SegmentCodec, VersionId};
use outlast_provider::{HealthStats, Provider};
use serde::Serialize;

use crate::error::EngineError;
use crate::index::RecordedBlobs;
use crate::store::Store;

/// The checked shards of a run: `[segment - run.start][shard]`, `None` where missing or bad.
pub(crate) type RunShards = Vec<Vec<Option<Bytes>>>;

/// What a read may use and change.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadScope {
    /// Providers treated as gone (a drill's "what if").
    pub left_out: HashSet<String>,
    /// Change nothing: a blob found missing is reported but stays recorded.
    pub read_only: bool,
}

/// Reads the shards of one object version.
pub(crate) struct ShardReader<'a> {
    store: &'a Store,
    name: String,
    om: &'a ObjectManifest,
    /// The version's codec (its data key, geometry and check seed).
    pub(crate) codec: SegmentCodec,
    vid: VersionId,
    /// Provider of each shard; `None` when it is not configured (or left out by a drill).
    holders: Vec<Option<&'a Provider>>,
    /// (provider, blob) pairs the index records for this version: the others are repair debt.
    recorded: RecordedBlobs,
    /// Whether each shard's provider is in a usable state now.
    usable: Vec<bool>,
    /// (shard, part) blobs whose presence was already reported to the provider's health.
    noted: Mutex<HashSet<(usize, u32)>>,
    faults: Mutex<Vec<ShardFault>>,
    /// Bytes received from providers.
    bytes_read: AtomicU64,
    read_only: bool,
    /// Whether each shard's provider is known to be slow.
    slow: Vec<bool>,
    /// Whether each shard's provider answers reads well behind the others lately.
    lagging: Vec<bool>,
    /// Whether this read also asks the lagging providers, as extras it does not wait for
    /// (taken by the first run only).
    explore: AtomicBool,
    /// Recent 95th percentile read latency of each shard's provider.
    p95: Vec<Option<Duration>>,
    /// Spare requests sent because an answer was late.
    hedged: AtomicU64,
    /// Shard requests sent.
    requests: AtomicU64,
}

/// One read in this many also asks the providers that lag, as extras it does not wait for: a
/// provider asked last is otherwise never timed again and would lag for good once recovered.
const EXPLORE_EVERY: u64 = 32;
/// Reads started in this process, for [`EXPLORE_EVERY`].
static READS: AtomicU64 = AtomicU64::new(0);

/// Hedge delay bounds, and the delay when a provider's latency is not known yet.
const HEDGE_MIN: Duration = Duration::from_millis(10);
const HEDGE_MAX: Duration = Duration::from_secs(2);
const HEDGE_UNKNOWN: Duration = Duration::from_millis(250);

/// Splits `segments` into runs of at most `run_len` that never cross a part boundary.
pub(crate) fn runs(layout: &Layout, segments: Range<u64>, run_len: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut s = segments.start;
    while s < segments.end {
        let part_end = (layout.part_of(s) as u64 + 1) * layout.segments_per_part as u64;
        let end = (s + run_len).min(part_end).min(segments.end);
        out.push(s..end);
        s = end;
    }
    out
}

impl<'a> ShardReader<'a> {
    /// A reader of version `vid` of `name`, within `scope`.
    pub(crate) async fn new(
        store: &'a Store,
        name: &str,
        om: &'a ObjectManifest,
        vid: VersionId,
        scope: &ReadScope,
    ) -> Result<Self, EngineError> {
        let layout = om.layout()?;
        let codec = SegmentCodec::new(layout, DataKey::from_bytes(om.data_key), vid, store.keys.check_seed);
        let holders: Vec<Option<&Provider>> = om
            .placement
            .iter()
            .map(|p| if scope.left_out.contains(&p.provider) { None } else { store.provider(&p.provider) })
            .collect();
        let recorded = store.index.recorded_of(&vid).await?;
        let usable: Vec<bool> = holders.iter().map(|h| h.is_some_and(|p| p.state().is_usable())).collect();
        let slow_names = store.slow_providers();
        let slow = holders.iter().map(|h| h.is_some_and(|p| slow_names.iter().any(|n| n == p.name()))).collect();
        // Each holder's figures, copied once.
        let health: Vec<Option<HealthStats>> = holders.iter().map(|h| h.map(Provider::health)).collect();
        let p50s: Vec<Option<Duration>> = health
            .iter()
            .zip(&usable)
            .map(|(h, &usable)| h.as_ref().filter(|_| usable).and_then(|h| h.race_latency(0.5)))
            .collect();
        let lagging = crate::fleet::lagging(&p50s, om.k as usize);
        let explore = lagging.contains(&true) && READS.fetch_add(1, Ordering::Relaxed).is_multiple_of(EXPLORE_EVERY);
        let p95 = health.iter().map(|h| h.as_ref().and_then(|h| h.latency(0.95))).collect();
        Ok(ShardReader {
            store,
            name: name.to_string(),
            om,
            codec,
            vid,
            holders,
            recorded,
            usable,
            noted: Mutex::default(),
            faults: Mutex::default(),
            bytes_read: AtomicU64::new(0),
            read_only: scope.read_only,
            slow,
            lagging,
            explore: AtomicBool::new(explore),
            p95,
            hedged: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// Every fault seen so far, attributed; the reader's record is emptied.
    pub(crate) fn take_faults(&self) -> Vec<ShardFault> {
        std::mem::take(&mut *self.faults.lock().expect("faults lock"))
    }

    /// Bytes received from providers so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Whether the index records shard `i` of `part` as stored.
    pub(crate) fn is_recorded(&self, i: usize, part: u32) -> bool {
        let blob = names::shard_blob(&self.store.keys, &self.vid, i as u16, part);
        self.recorded.has(&self.om.placement[i].provider, &blob)
    }

    fn fault(&self, segment: u64, shard: usize, reason: String) {
        let provider = self.om.placement[shard].provider.clone();
        self.faults.lock().expect("faults lock").push(ShardFault { provider, segment, shard, reason });
    }

    /// The order to ask for the shards of `part`: shards the index records (the others are
    /// repair debt) on usable providers, providers not known to be slow before slow ones
    /// ([`Store::health`]), then those not lagging before lagging ones, data shards before
    /// parity (a healthy read decodes nothing); never those in `skip`.
    fn order(&self, part: u32, skip: &[usize]) -> Vec<usize> {
        let n = self.om.n as usize;
        let mut order: Vec<(bool, bool, bool, bool, usize)> = (0..n)
            .filter(|i| !skip.contains(i))
            .map(|i| (!self.is_recorded(i, part), !self.usable[i], self.slow[i], self.lagging[i], i))
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, _, _, _, i)| i).collect()
    }

    /// Spare requests sent because an answer was late.
    pub(crate) fn hedged(&self) -> u64 {
        self.hedged.load(Ordering::Relaxed)
    }

    /// Shard requests sent.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Reads shard `i`'s bytes for every segment of `run` with one ranged request.
    /// An error of `None` is an expected absence: a shard the index does not record (repair
    /// debt), asked for only as a last resort, that is indeed not there. No fault of its
    /// provider's.
    async fn fetch_one(&self, run: &Range<u64>, i: usize) -> (usize, Result<Bytes, Option<String>>) {
        let layout = self.codec.layout();
        let last = run.end - 1;
        let want = layout.shard_offset(run.start)..layout.shard_offset(last) + layout.shard_len(last) as u64;
        let part = layout.part_of(run.start);
        let blob = names::shard_blob(&self.store.keys, &self.vid, i as u16, part);
        let Some(p) = self.holders[i] else {
            return (i, Err(Some(format!("provider `{}` is not available", self.om.placement[i].provider))));
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut waiting = Unanswered { provider: p, started: Instant::now(), answered: false };
        let r = p.read_range(&blob, want).await;
        waiting.answered = true;
        // Each blob counts once towards the provider's health, however many segments are read.
        let recorded = self.recorded.has(p.name(), &blob);
        let known = recorded && self.noted.lock().expect("noted lock").insert((i, part));
        match &r {
            Ok(_) if known => p.note_known_blob(true),
            // A version replaced or removed during the read had its blobs deleted: that is
            // no sign against the provider.
            Err(e) if known && e.is_not_found() && self.store.index.is_current(&self.vid).await.unwrap_or(false) => {
                p.note_known_blob(false);
                // Now repair debt: later reads do not ask for it again.
                let forgot = if self.read_only { Ok(false) } else { self.store.index.forget_blob(p.name(), &blob).await };
                if let Err(e) = forgot {
                    tracing::warn!("could not record a lost shard in the index: {e}");
                }
            }
            _ => {}
        }
        if let Ok(body) = &r {
            self.bytes_read.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        (i, r.map_err(|e| (recorded || !e.is_not_found()).then(|| e.to_string())))
    }

    /// Keeps what passes its check of shard `i`'s answer for `run` in `shards`; records the
    /// rest as faults. Returns whether every segment's shard was good.
    fn accept(&self, run: &Range<u64>, shards: &mut RunShards, i: usize, answer: Result<Bytes, Option<String>>) -> bool {
        let layout = self.codec.layout();
        let base = layout.shard_offset(run.start);
        let body = match answer {
            Ok(body) => body,
            Err(None) => return false,
            Err(Some(e)) => {
                for s in run.clone() {
                    self.fault(s, i, e.clone());
                }
                return false;
            }
        };
        let mut all_good = true;
        for (j, s) in run.clone().enumerate() {
            // A short body yields a short slice, which fails its check.
            let off = ((layout.shard_offset(s) - base) as usize).min(body.len());
            let end = (off + layout.shard_len(s)).min(body.len());
            let shard = body.slice(off..end);
            if self.codec.shard_is_good(s, &shard, &self.om.segment_checks(s)[i]) {
                shards[j][i] = Some(shard);
            } else {
                self.fault(s, i, "shard failed its integrity check (corrupt or truncated)".into());
                if let Some(p) = self.holders[i] {
                    p.note_corrupt();
                }
                all_good = false;
            }
        }
        all_good
    }

    /// Fetches shards `which` for every segment of `run`, all at once, keeping the good ones.
    async fn fetch(&self, run: &Range<u64>, shards: &mut RunShards, which: &[usize]) {
        for (i, answer) in join_all(which.iter().map(|&i| self.fetch_one(run, i))).await {
            self.accept(run, shards, i, answer);
        }
    }

    /// How long to wait for shard `i` before asking a spare: its provider's recent p95 read
    /// latency, within bounds.
    fn hedge_delay(&self, i: usize) -> Duration {
        self.p95[i].map_or(HEDGE_UNKNOWN, |d| d.clamp(HEDGE_MIN, HEDGE_MAX))
    }

    /// Gathers `k` good shards for every segment of `run`, asking in `order`: the first
    /// `k + extra` at once, the next one as soon as an answer is bad, and a spare whenever the
    /// hedge delay of the newest request passes with answers missing. Answers no longer needed
    /// are dropped (their requests cancelled). Returns how far into `order` it asked, and the
    /// shards asked for but cancelled unanswered.
    async fn gather(&self, run: &Range<u64>, shards: &mut RunShards, order: &[usize], extra: usize) -> (usize, Vec<usize>) {
        let k = self.om.k as usize;
        let short =
            |shards: &RunShards| shards.iter().map(|seg| k.saturating_sub(seg.iter().flatten().count())).max().unwrap_or(0);
        let mut inflight = FuturesUnordered::new();
        let mut answered = Vec::new();
        let mut next = 0;
        while next < (k + extra).min(order.len()) {
            inflight.push(self.fetch_one(run, order[next]));
            next += 1;
        }
        let mut deadline = Instant::now() + order[..next].iter().map(|&i| self.hedge_delay(i)).max().unwrap_or(HEDGE_MIN);
        while short(shards) > 0 {
            if inflight.is_empty() {
                if next >= order.len() {
                    break;
                }
                for _ in 0..short(shards).min(order.len() - next) {
                    inflight.push(self.fetch_one(run, order[next]));
                    next += 1;
                }
                continue;
            }
            tokio::select! {
                Some((i, answer)) = inflight.next() => {
                    answered.push(i);
                    if !self.accept(run, shards, i, answer) && next < order.len() {
                        inflight.push(self.fetch_one(run, order[next]));
                        next += 1;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()), if next < order.len() => {
                    inflight.push(self.fetch_one(run, order[next]));
                    deadline = Instant::now() + self.hedge_delay(order[next]);
                    next += 1;
                    self.hedged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let unanswered = order[..next].iter().copied().filter(|i| !answered.contains(i)).collect();
        (next, unanswered)
    }

    /// Fetches `k` good shards for every segment of `run` (never those in `skip`), then runs
    /// `act` on each segment's shards on the blocking pool. If `act` finds that a shard which
    /// passed its check is wrong anyway (authentication or rebuild mismatch) and spare shards
    /// remain, fetches them all and runs `act` again, so the codec can find the liar.
    pub(crate) async fn with_shards<T, F>(&self, run: Range<u64>, skip: &[usize], act: F) -> Result<Vec<(u64, T)>, EngineError>
    where
        T: Send + 'static,
        F: Fn(u64, &[Option<Bytes>]) -> Result<T, CodecError> + Clone + Send + 'static,
    {
        let n = self.om.n as usize;
        let mut shards: RunShards = vec![vec![None; n]; (run.end - run.start) as usize];
        let mut order = self.order(self.codec.layout().part_of(run.start), skip);
        // Exploring: the lagging providers first, as extras beside the k that set the pace.
        let extra = if self.explore.swap(false, Ordering::Relaxed) {
            let part = self.codec.layout().part_of(run.start);
            let (lag, rest): (Vec<usize>, Vec<usize>) =
                order.iter().partition(|&&i| self.lagging[i] && self.usable[i] && !self.slow[i] && self.is_recorded(i, part));
            let extra = lag.len();
            order = lag.into_iter().chain(rest).collect();
            extra
        } else {
            0
        };
        let (next, unanswered) = self.gather(&run, &mut shards, &order, extra).await;
        let (mut shards, mut results) = run_blocking(&run, shards, act.clone()).await;
        let lied = |r: &Vec<(u64, Result<T, CodecError>)>| {
            r.iter().any(|(_, d)| matches!(d, Err(CodecError::SegmentAuth { .. } | CodecError::RebuildMismatch { .. })))
        };
        if (next < order.len() || !unanswered.is_empty()) && lied(&results) {
            // Ask everything not yet answered: never asked, or cancelled when a hedge won.
            let rest: Vec<usize> = unanswered.into_iter().chain(order[next..].iter().copied()).collect();
            self.fetch(&run, &mut shards, &rest).await;
            results = run_blocking(&run, shards, act).await.1;
        }
        let mut out = Vec::with_capacity(results.len());
        for (s, r) in results {
            match r {
                Ok(v) => out.push((s, v)),
                Err(CodecError::NotEnoughShards { good, needed, .. }) => {
                    // One short reason per provider: the whole of every failure is for
                    // `OUTLAST_LOG=debug`, not for the one line a user reads.
                    let mut by_provider: Vec<(String, String)> = Vec::new();
                    for f in self.faults.lock().expect("faults lock").iter().filter(|f| f.segment == s) {
                        if !by_provider.iter().any(|(p, _)| *p == f.provider) {
                            by_provider.push((f.provider.clone(), shortened(&f.provider, &f.reason)));
                        }
                    }
                    let mut detail = by_provider.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>().join("; ");
                    if detail.is_empty() {
                        // No provider asked failed: the other shards are debt that no holder
                        // had, or sit on providers this read leaves out (a drill, an evacuation).
                        detail = "no other shard was found on the providers asked: never written, lost before \
                                  a repair, or on providers this read leaves out"
                            .into();
                    }
                    return Err(EngineError::Unreadable { name: self.name.clone(), segment: s, good, needed, detail });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Rebuilds shards `want` of every segment of `run` from the others (never reading those
    /// in `skip`), each checked against the manifest: `result[segment - run.start][j]` is shard
    /// `want[j]`.
    pub(crate) async fn rebuild_run(
        &self,
        run: Range<u64>,
        want: &[usize],
        skip: &[usize],
    ) -> Result<Vec<Vec<Bytes>>, EngineError> {
        let n = self.om.n as usize;
        let (codec, checks, want) = (self.codec.clone(), std::sync::Arc::new(self.om.checks.clone()), want.to_vec());
        let rebuilt = self
            .with_shards(run, skip, move |s, shards| {
                let at = s as usize * n;
                codec.rebuild(s, shards, &checks[at..at + n], &want)
            })
            .await?;
        Ok(rebuilt.into_iter().map(|(_, shards)| shards).collect())
    }

    /// Records that shard `shard` of segment `s` lied (it passed its check, yet the codec
    /// proved it wrong).
    pub(crate) fn liar(&self, s: u64, shard: usize) {
        self.fault(s, shard, "shard passed its check but failed authentication".into());
        if let Some(p) = self.holders[shard] {
            p.note_corrupt();
        }
    }
}

/// A read in flight: if it is dropped unanswered (a hedge won), its provider's latency record
/// learns that it took at least this long.
struct Unanswered<'a> {
    provider: &'a Provider,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.provider.note_unanswered(self.started.elapsed());
        }
    }
}

/// Runs `act` on every segment of the run on the blocking pool; hands the shards back.
async fn run_blocking<T, F>(run: &Range<u64>, shards: RunShards, act: F) -> (RunShards, Vec<(u64, Result<T, CodecError>)>)
where
    T: Send + 'static,
    F: Fn(u64, &[Option<Bytes>]) -> Result<T, CodecError> + Send + 'static,
{
    let segments = run.clone();
    tokio::task::spawn_blocking(move || {
        let results = segments.zip(&shards).map(|(s, sh)| (s, act(s, sh))).collect();
        (shards, results)
    })
    .await
    .expect("codec task panicked")
}

/// A provider's failure in a few words: what failed and the last cause, without OpenDAL's
/// context (`OUTLAST_LOG=debug` has it), cut to a readable length.
fn shortened(provider: &str, reason: &str) -> String {
    const MAX: usize = 160;
    let r = reason.strip_prefix(&format!("provider `{provider}`: ")).unwrap_or(reason);
    let head = r.split(", context:").next().unwrap_or(r);
    let r = match r.rsplit_once("=> ") {
        Some((_, cause)) if head.len() < r.len() => format!("{head}: {cause}"),
        _ => head.to_string(),
    };
    match r.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &r[..at]),
        None => r,
    }
}

/// A fault seen while reading, attributed to a provider.
#[derive(Debug, Clone, Serialize)]
pub struct ShardFault {
    /// Provider.
    pub provider: String,
    /// Segment index.
    pub segment: u64,
    /// Shard index.
    pub shard: usize,
    /// What went wrong.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_range_without_crossing_parts() {
        let layout = Layout::new(100 * 1024, 1024, 2, 3).unwrap().with_segments_per_part(6);
        assert_eq!(runs(&layout, 0..13, 4), vec![0..4, 4..6, 6..10, 10..12, 12..13]);
        assert_eq!(runs(&layout, 5..7, 4), vec![5..6, 6..7]);
        assert_eq!(runs(&layout, 5..8, 1), vec![5..6, 6..7, 7..8]);
        assert!(runs(&layout, 3..3, 4).is_empty());
    }
}
