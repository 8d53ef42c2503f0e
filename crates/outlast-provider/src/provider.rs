//! A built provider and the blob operations the engine needs.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opendal::Operator;

use crate::error::ProviderError;
use crate::health::{HealthState, HealthStats};
use crate::layers::health::{observe, record};
use crate::layers::identity::Gate;
use crate::layers::{self, err, Faults, IdentityCheck, IdentityRecheck, Patience};
use crate::spec::ProviderSpec;
use crate::staging::TEMP_PREFIX;

/// Shared by a provider, its clones and its writers.
type SharedHealth = Arc<Mutex<HealthStats>>;
/// Injected faults, shared the same way (normally none).
type SharedFaults = Arc<Mutex<Faults>>;

/// One configured provider, ready for I/O.
#[derive(Clone, Debug)]
pub struct Provider {
    name: String,
    domain: String,
    scheme: String,
    /// The operator, or why it could not be built: such a provider fails every operation with
    /// that reason, exactly like a provider that is down, so the store keeps working without it.
    op: Result<Operator, String>,
    health: SharedHealth,
    faults: SharedFaults,
    patience: Patience,
    gate: Option<Arc<Gate>>,
    /// Operations leave no trace in the health record (the identity check's own: the
    /// operation that waited on the check records its outcome once).
    quiet: bool,
}

/// A blob seen while listing.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// Full blob name (with its prefix).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when the provider reports it.
    pub modified: Option<SystemTime>,
}

/// Writes one blob as a stream of chunks; nothing is visible under the name as a whole until
/// [`BlobWriter::close`] succeeds on providers that stage uploads (multipart, temp files).
pub struct BlobWriter {
    provider: String,
    path: String,
    sink: Sink,
    health: SharedHealth,
    faults: SharedFaults,
    patience: Patience,
    /// Bytes taken so far (a buffered sink sends them all at close).
    taken: u64,
}

enum Sink {
    /// The provider takes a blob in several writes (multipart, append, files).
    Stream(opendal::Writer),
    /// The provider takes a blob in one request only (e.g. WebDAV): hold the chunks and send
    /// them at close. Callers bound the blob size (shard blobs are one part each).
    Buffer { op: Operator, chunks: Vec<Bytes> },
}

/// Waits before each new SSH handshake after one was refused (sshd's `MaxStartups` drops
/// at random once ten are under way, and a busy two-core machine keeps them under way for
/// seconds). The whole wait, jitter included, stays inside the 30 s operation floor: under
/// 20 s.
const SSH_HANDSHAKE_BACKOFF_MS: [u64; 7] = [100, 250, 500, 1000, 2000, 4000, 8000];

/// The SFTP service's error for a session that could not be set up (it says nothing more).
fn is_ssh_handshake_failure(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::Unexpected && e.message() == "ssh error"
}

/// Multipart chunk size for providers that have a minimum part size (S3: 5 MiB).
const WRITE_CHUNK: usize = 8 * 1024 * 1024;

impl Provider {
    /// Builds the OpenDAL operator for `spec` and stacks the standard layers on it. A local
    /// root that does not exist is refused (an unmounted disk, a mistyped path): only
    /// [`Provider::build_creating`] makes one.
    pub fn build(spec: &ProviderSpec) -> Result<Self, ProviderError> {
        Self::build_with(spec, false)
    }

    /// Builds the provider, creating a local root that does not exist yet (for the commands
    /// that set up a location on purpose).
    pub fn build_creating(spec: &ProviderSpec) -> Result<Self, ProviderError> {
        Self::build_with(spec, true)
    }

    fn build_with(spec: &ProviderSpec, create_root: bool) -> Result<Self, ProviderError> {
        spec.validate()?;
        opendal::install_default();
        let mut options = spec.resolved_options()?;
        if spec.scheme == "fs" && !create_root {
            // OpenDAL's file system service creates a missing root: a mistyped or unmounted one
            // would silently become an empty provider.
            if let Some(root) = options.get("root").filter(|r| !std::path::Path::new(r).is_dir()) {
                return Err(ProviderError::Config {
                    provider: spec.name.clone(),
                    message: format!(
                        "root `{root}` does not exist (an unmounted disk or a mistyped path?); `outlast provider reset {}` sets up an empty location there on purpose",
                        spec.name
                    ),
                });
            }
        }
        if spec.scheme == "fs" && !options.contains_key("atomic_write_dir") {
            // Each blob is written to a temporary file and renamed into place: two writers of
            // one name (a repair and an evacuation) cannot interleave their bytes, a crash
            // never leaves a torn blob under its name, and an aborted write leaves nothing.
            if let Some(root) = options.get("root") {
                let dir = format!("{}/{TEMP_PREFIX}", root.trim_end_matches('/'));
                options.insert("atomic_write_dir".into(), dir);
            }
        }
        let op = Operator::via_iter(&spec.scheme, options).map_err(|e| ProviderError::Config {
            provider: spec.name.clone(),
            message: format!("cannot build `{}` provider: {e}", spec.scheme),
        })?;
        let op = layers::opendal_stack(op, &spec.scheme);
        let faults = Faults::from_env(&spec.name)
            .map_err(|message| ProviderError::Config { provider: spec.name.clone(), message })?
            .unwrap_or_default();
        if !faults.is_none() {
            tracing::warn!(provider = spec.name, "injecting faults: {faults:?}");
        }
        Ok(Provider {
            name: spec.name.clone(),
            domain: spec.domain.clone(),
            scheme: spec.scheme.clone(),
            op: Ok(op),
            health: SharedHealth::default(),
            faults: Arc::new(Mutex::new(faults)),
            patience: Patience::default(),
            gate: None,
            quiet: false,
        })
    }

    /// Builds the provider, or, when that fails, a provider that reports the failure on every
    /// operation.
    pub fn build_or_unavailable(spec: &ProviderSpec) -> Self {
        Self::build(spec).unwrap_or_else(|e| Provider {
            name: spec.name.clone(),
            domain: spec.domain.clone(),
            scheme: spec.scheme.clone(),
            op: Err(e.to_string()),
            health: SharedHealth::default(),
            faults: SharedFaults::default(),
            patience: Patience::default(),
            gate: None,
            quiet: false,
        })
    }

    /// The same provider with `patience` bounding each operation.
    pub fn with_patience(mut self, patience: Patience) -> Self {
        self.patience = patience;
        self
    }

    /// The same provider, checked by `check` before its first operation and whenever the
    /// last verdict has stood its time.
    pub fn with_identity_check(mut self, check: IdentityCheck) -> Self {
        self.gate = Some(Arc::new(Gate {
            check,
            verdict: Mutex::new(None),
            recheck: Mutex::new(IdentityRecheck::default()),
            checking: tokio::sync::Mutex::new(()),
        }));
        self
    }

    /// Changes how long identity verdicts stand (tests that cannot wait; the defaults suit
    /// everything else).
    pub fn set_identity_recheck(&self, recheck: IdentityRecheck) {
        if let Some(gate) = &self.gate {
            *gate.recheck.lock().expect("recheck lock") = recheck;
        }
    }

    /// Why the provider cannot be used in this process, if it cannot: it could not be built,
    /// or its location did not answer as this provider.
    pub fn build_error(&self) -> Option<String> {
        let refused = || self.gate.as_ref().and_then(|g| g.verdict.lock().expect("verdict lock").clone()?.0.err());
        self.op.as_ref().err().cloned().or_else(refused)
    }

    /// Runs the identity check now if it has not run (a probe wants the verdict up front).
    pub async fn verify_identity(&self) -> Result<(), ProviderError> {
        self.ready("stat", "").await.map(|_| ())
    }

    /// The same provider without its identity gate, for the check itself: its operations are
    /// not recorded in the health record (the operation that waited on the check records the
    /// outcome once), though what it notes of known blobs is.
    pub(crate) fn ungated(&self) -> Provider {
        Provider { gate: None, quiet: true, ..self.clone() }
    }

    fn op(&self) -> Result<&Operator, ProviderError> {
        self.op.as_ref().map_err(|e| ProviderError::Config { provider: self.name.clone(), message: e.clone() })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The failure domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The OpenDAL scheme.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> ProviderError {
        err(&self.name, path, op, source)
    }

    /// Injects `faults` into every later operation (and those of its clones and writers).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    fn faults(&self) -> Faults {
        self.faults.lock().expect("faults lock").clone()
    }

    /// Runs `attempt` again when an SFTP server refused the SSH handshake. sshd drops
    /// handshakes past its `MaxStartups` (ten at once by default, counting every client of
    /// the server), and OpenDAL reports that as a persistent "ssh error" that its retry layer
    /// leaves alone; it is the server being busy, so it is waited out like any other.
    async fn retry_handshake<T, F>(&self, mut attempt: impl FnMut() -> F) -> Result<T, opendal::Error>
    where
        F: std::future::Future<Output = Result<T, opendal::Error>>,
    {
        let mut waits = SSH_HANDSHAKE_BACKOFF_MS.iter();
        loop {
            match attempt().await {
                Err(e) if self.scheme == "sftp" && is_ssh_handshake_failure(&e) => match waits.next() {
                    Some(&ms) => {
                        let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ms / 4);
                        tracing::debug!(provider = self.name, "SSH handshake refused, retrying in {} ms", ms + jitter);
                        tokio::time::sleep(Duration::from_millis(ms + jitter)).await;
                    }
                    None => return Err(e),
                },
                r => return r,
            }
        }
    }

    /// The operator, once the identity gate and injected faults let the operation through.
    async fn ready(&self, op: &'static str, path: &str) -> Result<&Operator, ProviderError> {
        let operator = self.op()?;
        if let Some(gate) = &self.gate {
            if let Err(message) = gate.verdict(self).await? {
                return Err(ProviderError::Identity { provider: self.name.clone(), message });
            }
        }
        let faults = self.faults();
        if !faults.is_none() {
            faults.before(&self.name, op, path).await?;
        }
        Ok(operator)
    }

    /// What has been seen of this provider so far (in this process, plus what was restored).
    pub fn health(&self) -> HealthStats {
        self.health.lock().expect("health lock").clone()
    }

    /// Starts from observations saved by an earlier run.
    pub fn restore_health(&self, stats: HealthStats) {
        *self.health.lock().expect("health lock") = stats;
    }

    /// The state the observations imply; a provider that could not be built, or whose
    /// location is not this provider, is unreachable.
    pub fn state(&self) -> HealthState {
        let seen = self.health.lock().expect("health lock").state();
        match self.build_error() {
            // A location whose every blob is gone is an ended account, whatever else it says.
            Some(_) if seen == HealthState::Terminated => seen,
            Some(_) => HealthState::Unreachable,
            None => seen,
        }
    }

    /// Tells the health record whether a blob the store knows it wrote was found, so that a
    /// provider whose blobs vanished (a deleted bucket or folder) is seen as terminated even
    /// while it accepts new writes.
    pub fn note_known_blob(&self, present: bool) {
        observe(&self.name, &self.health, |h| h.known_blob(present));
    }

    /// Tells the health record that a read was abandoned unanswered after `elapsed`.
    pub fn note_unanswered(&self, elapsed: Duration) {
        self.health.lock().expect("health lock").unanswered_after(elapsed);
    }

    /// Tells the health record how long a write step took to answer, or (`gave_up`) how long
    /// it had waited when the writer stopped waiting.
    pub fn note_write_took(&self, elapsed: Duration, gave_up: bool) {
        self.health.lock().expect("health lock").write_took(elapsed, gave_up);
    }

    /// Tells the health record that a shard from this provider was wrong.
    pub fn note_corrupt(&self) {
        self.health.lock().expect("health lock").corrupt += 1;
    }

    fn record<T>(&self, started: Option<Instant>, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        if self.quiet {
            return r;
        }
        record(&self.name, &self.health, started, r)
    }

    /// Writes a whole blob at once (manifests).
    pub async fn write(&self, path: &str, bytes: Bytes) -> Result<(), ProviderError> {
        let len = bytes.len() as u64;
        let r = self
            .patience
            .bound(&self.name, "write", path, len, async {
                let op = self.ready("write", path).await?;
                self.retry_handshake(|| op.write(path, bytes.clone())).await.map(|_| ()).map_err(|e| self.err("write", path, e))
            })
            .await;
        self.record(None, r)
    }

    /// Starts a streamed blob write (shards).
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, ProviderError> {
        let sink = self
            .patience
            .bound(&self.name, "write", path, 0, async {
                let op = self.ready("write", path).await?;
                let cap = op.info().capability();
                if !cap.write_can_multi {
                    return Ok(Sink::Buffer { op: op.clone(), chunks: Vec::new() });
                }
                // Providers with a minimum part size (S3's 5 MiB) get writes gathered into
                // chunks; the others (files, SFTP) take each shard as it comes, with no copy.
                let w = self
                    .retry_handshake(|| async {
                        match cap.write_multi_min_size {
                            Some(min) => op.writer_with(path).chunk(WRITE_CHUNK.max(min)).await,
                            None => op.writer_with(path).await,
                        }
                    })
                    .await;
                w.map(Sink::Stream).map_err(|e| self.err("write", path, e))
            })
            .await;
        let sink = self.record(None, sink)?;
        let (health, faults, patience) = (self.health.clone(), self.faults.clone(), self.patience);
        Ok(BlobWriter { provider: self.name.clone(), path: path.to_string(), sink, health, faults, patience, taken: 0 })
    }

    /// Reads a whole blob.
    pub async fn read(&self, path: &str) -> Result<Bytes, ProviderError> {
        self.read_expecting(path, 0).await
    }

    /// Reads a whole blob of about `size` bytes (the time allowed grows with it).
    pub async fn read_expecting(&self, path: &str, size: u64) -> Result<Bytes, ProviderError> {
        let started = Instant::now();
        let r = self
            .patience
            .bound(&self.name, "read", path, size, async {
                let op = self.ready("read", path).await?;
                let read = if self.scheme == "fs" {
                    // OpenDAL's local file system reads a blob of unknown length several times
                    // slower than a ranged read of a stated one (1 KiB, 16 at once: 487 µs
                    // against 76 µs for stat + range on this machine).
                    match op.stat(path).await {
                        Ok(meta) if meta.content_length() == 0 => Ok(opendal::Buffer::new()),
                        Ok(meta) => op.read_with(path).range(0..meta.content_length()).await,
                        Err(e) => Err(e),
                    }
                } else {
                    self.retry_handshake(|| op.read(path)).await
                };
                read.map(|b| self.faults().mangle(b.to_bytes())).map_err(|e| self.err("read", path, e))
            })
            .await;
        self.record(Some(started), r)
    }

    /// Reads `range` of a blob. The result may be shorter than asked if the blob is (a lying
    /// provider's truncated body is caught by the caller's checks).
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, ProviderError> {
        let started = Instant::now();
        let r = self
            .patience
            .bound(&self.name, "read", path, range.end.saturating_sub(range.start), async {
                let op = self.ready("read", path).await?;
                self.retry_handshake(|| async { op.read_with(path).range(range.clone()).await })
                    .await
                    .map(|b| self.faults().mangle(b.to_bytes()))
                    .map_err(|e| self.err("read", path, e))
            })
            .await;
        self.record(Some(started), r)
    }

    /// Deletes a blob; deleting a missing blob succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), ProviderError> {
        let r = self
            .patience
            .bound(&self.name, "delete", path, 0, async {
                let op = self.ready("delete", path).await?;
                self.retry_handshake(|| op.delete(path)).await.map_err(|e| self.err("delete", path, e))
            })
            .await;
        self.record(None, r)
    }

    /// Size of a blob, or a not-found error.
    pub async fn stat(&self, path: &str) -> Result<BlobEntry, ProviderError> {
        let started = Instant::now();
        let r = self
            .patience
            .bound(&self.name, "stat", path, 0, async {
                let op = self.ready("stat", path).await?;
                self.retry_handshake(|| op.stat(path)).await.map_err(|e| self.err("stat", path, e))
            })
            .await;
        let m = self.record(Some(started), r)?;
        Ok(BlobEntry { name: path.to_string(), size: m.content_length(), modified: m.last_modified().map(Into::into) })
    }

    /// Lists the blobs under `prefix` (e.g. `s/`), recursively. A missing prefix lists empty.
    /// A store's whole listing can be millions of blobs: jobs over it take them as they come
    /// from [`Provider::listing`] instead.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>, ProviderError> {
        let mut listing = self.listing(prefix);
        let mut out = Vec::new();
        while let Some(e) = listing.next().await? {
            out.push(e);
        }
        Ok(out)
    }

    /// The blobs under `prefix` (recursively), one at a time as the provider pages them: what
    /// is held is the provider's page, whatever the location holds.
    pub fn listing(&self, prefix: &str) -> Listing<'_> {
        Listing { provider: self, prefix: prefix.to_string(), lister: None, seen: 0, dated: true, ended: false }
    }

    /// The names of at most `limit` blobs under `prefix` (recursively): enough to tell an
    /// empty location from one in use without listing everything.
    pub async fn list_some(&self, prefix: &str, limit: usize) -> Result<Vec<String>, ProviderError> {
        let mut listing = Listing { dated: false, ..self.listing(prefix) };
        let mut out = Vec::new();
        while out.len() < limit {
            match listing.next().await? {
                Some(e) => out.push(e.name),
                None => break,
            }
        }
        listing.stop();
        Ok(out)
    }
}

/// A listing in progress ([`Provider::listing`]). Each entry is kept as a [`BlobEntry`] as it
/// comes (an OpenDAL entry is several times larger). A listing takes as long as the provider
/// holds blobs, so the time allowed bounds each step (a page, on most providers), not the
/// whole. It counts once towards the provider's health: when it ends or fails.
pub struct Listing<'a> {
    provider: &'a Provider,
    prefix: String,
    lister: Option<opendal::Lister>,
    /// Entries given so far.
    seen: u64,
    /// Whether an entry listed without a modification time is looked up (its size may then be
    /// a placeholder); names alone do not need it.
    dated: bool,
    ended: bool,
}

impl Listing<'_> {
    /// Ends the listing before its end, as a success (it counts once towards the provider's
    /// health, as a whole listing does).
    pub fn stop(mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self.provider.record(None, Ok(()));
        }
    }

    /// The next blob, or `None` at the end. A missing prefix lists empty.
    pub async fn next(&mut self) -> Result<Option<BlobEntry>, ProviderError> {
        if self.ended {
            return Ok(None);
        }
        let r = self.step().await;
        match &r {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.ended = true,
        }
        match r {
            Ok(Some(e)) => Ok(Some(e)),
            r => self.provider.record(None, r),
        }
    }

    async fn step(&mut self) -> Result<Option<BlobEntry>, ProviderError> {
        use futures::TryStreamExt;
        let (p, prefix) = (self.provider, self.prefix.as_str());
        if self.lister.is_none() {
            let lister = p
                .patience
                .bound(&p.name, "list", prefix, 0, async {
                    let op = p.ready("list", prefix).await?;
                    p.retry_handshake(|| async { op.lister_with(prefix).recursive(true).await })
                        .await
                        .map_err(|e| p.err("list", prefix, e))
                })
                .await;
            match lister {
                Err(e) if e.is_not_found() => return Ok(None),
                r => self.lister = Some(r?),
            }
        }
        let lister = self.lister.as_mut().expect("opened above");
        loop {
            let next = async { lister.try_next().await.map_err(|e| p.err("list", prefix, e)) };
            match p.patience.bound(&p.name, "list", prefix, 0, next).await {
                Ok(Some(e)) if e.metadata().is_dir() => {}
                Ok(Some(e)) => {
                    self.seen += 1;
                    let m = e.metadata();
                    let modified: Option<SystemTime> = m.last_modified().map(Into::into);
                    if modified.is_none() && self.dated {
                        // A size without a modification time may be a placeholder.
                        return p.stat(e.path()).await.map(Some);
                    }
                    let size = if modified.is_some() { m.content_length() } else { 0 };
                    return Ok(Some(BlobEntry { name: e.path().to_string(), size, modified }));
                }
                Ok(None) => return Ok(None),
                Err(e) if e.is_not_found() && self.seen == 0 => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

impl BlobWriter {
    /// Appends bytes to the blob.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), ProviderError> {
        match &mut self.sink {
            Sink::Stream(w) => {
                let faults = self.faults.lock().expect("faults lock").clone();
                let (provider, path, len) = (&self.provider, &self.path, bytes.len() as u64);
                let r = self
                    .patience
                    .bound(provider, "write", path, len, async {
                        faults.before(provider, "write", path).await?;
                        w.write(bytes).await.map_err(|e| err(provider, path, "write", e))
                    })
                    .await;
                self.taken += len;
                record(provider, &self.health, None, r)
            }
            Sink::Buffer { chunks, .. } => {
                self.taken += bytes.len() as u64;
                chunks.push(bytes);
                Ok(())
            }
        }
    }

    /// Finishes the blob; only now is it durable.
    pub async fn close(self) -> Result<(), ProviderError> {
        let faults = self.faults.lock().expect("faults lock").clone();
        let (provider, path) = (&self.provider, &self.path);
        // A streamed blob may still hold a chunk to send; a buffered one sends everything now.
        let r = self
            .patience
            .bound(provider, "close", path, self.taken.min(WRITE_CHUNK as u64).max(self.buffered()), async {
                if let Err(e) = faults.before(provider, "close", path).await {
                    if let Sink::Stream(mut w) = self.sink {
                        let _ = w.abort().await;
                    }
                    return Err(e);
                }
                let result = match self.sink {
                    // A failed close (a full disk often only shows when the last buffered
                    // write is flushed) must not leave the staged bytes behind.
                    Sink::Stream(mut w) => match w.close().await {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let _ = w.abort().await;
                            Err(e)
                        }
                    },
                    Sink::Buffer { op, chunks } => op.write(path, opendal::Buffer::from(chunks)).await.map(|_| ()),
                };
                result.map_err(|e| err(provider, path, "close", e))
            })
            .await;
        record(provider, &self.health, None, r)
    }

    /// Bytes held here until the close sends them.
    fn buffered(&self) -> u64 {
        match &self.sink {
            Sink::Stream(_) => 0,
            Sink::Buffer { .. } => self.taken,
        }
    }

    /// Gives up on the blob, removing staged parts where the provider supports it.
    pub async fn abort(self) {
        if let Sink::Stream(mut w) = self.sink {
            let _ = w.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_waits_with_jitter_end_before_the_operation_floor() {
        let longest: u64 = SSH_HANDSHAKE_BACKOFF_MS.iter().map(|ms| ms + ms / 4).sum();
        assert!(Duration::from_millis(longest) < Patience::default().floor - Duration::from_secs(10), "{longest} ms");
    }
}
