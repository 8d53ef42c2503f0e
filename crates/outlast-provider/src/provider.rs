//! A built provider and the blob operations the engine needs.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;

use crate::error::classify;
use crate::{ProviderError, ProviderSpec};

/// One configured provider, ready for I/O.
#[derive(Clone, Debug)]
pub struct Provider {
    name: String,
    domain: String,
    scheme: String,
    /// The operator, or why it could not be built: such a provider fails every operation with
    /// that reason, exactly like a provider that is down, so the store keeps working without it.
    op: Result<Operator, String>,
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
}

enum Sink {
    /// The provider takes a blob in several writes (multipart, append, files).
    Stream(opendal::Writer),
    /// The provider takes a blob in one request only (e.g. WebDAV): hold the chunks and send
    /// them at close. Callers bound the blob size (shard blobs are one part each).
    Buffer { op: Operator, chunks: Vec<Bytes> },
}

/// Multipart chunk size for providers that have a minimum part size (S3: 5 MiB).
const WRITE_CHUNK: usize = 8 * 1024 * 1024;

impl Provider {
    /// Builds the OpenDAL operator for `spec` and stacks the standard layers on it.
    pub fn build(spec: &ProviderSpec) -> Result<Self, ProviderError> {
        spec.validate()?;
        opendal::install_default();
        let options = spec.resolved_options()?;
        let op = Operator::via_iter(&spec.scheme, options).map_err(|e| ProviderError::Config {
            provider: spec.name.clone(),
            message: format!("cannot build `{}` provider: {e}", spec.scheme),
        })?;
        let op = op
            .layer(TimeoutLayer::new().with_timeout(Duration::from_secs(60)).with_io_timeout(Duration::from_secs(30)))
            .layer(RetryLayer::new().with_max_times(3).with_jitter().with_min_delay(Duration::from_millis(50)));
        Ok(Provider { name: spec.name.clone(), domain: spec.domain.clone(), scheme: spec.scheme.clone(), op: Ok(op) })
    }

    /// Builds the provider, or, when that fails, a provider that reports the failure on every
    /// operation.
    pub fn build_or_unavailable(spec: &ProviderSpec) -> Self {
        Self::build(spec).unwrap_or_else(|e| Provider {
            name: spec.name.clone(),
            domain: spec.domain.clone(),
            scheme: spec.scheme.clone(),
            op: Err(e.to_string()),
        })
    }

    /// Why the provider could not be built, if it could not.
    pub fn build_error(&self) -> Option<&str> {
        self.op.as_ref().err().map(String::as_str)
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
        ProviderError::Op { provider: self.name.clone(), op, path: path.to_string(), class: classify(&source), source }
    }

    /// Writes a whole blob at once (manifests).
    pub async fn write(&self, path: &str, bytes: Bytes) -> Result<(), ProviderError> {
        self.op()?.write(path, bytes).await.map(|_| ()).map_err(|e| self.err("write", path, e))
    }

    /// Starts a streamed blob write (shards).
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, ProviderError> {
        let op = self.op()?;
        let cap = op.info().capability();
        let sink = if cap.write_can_multi {
            // Providers with a minimum part size (S3's 5 MiB) get writes gathered into chunks;
            // the others (files, SFTP) take each shard as it comes, with no extra copy.
            let w = match cap.write_multi_min_size {
                Some(min) => op.writer_with(path).chunk(WRITE_CHUNK.max(min)).await,
                None => op.writer_with(path).await,
            };
            Sink::Stream(w.map_err(|e| self.err("write", path, e))?)
        } else {
            Sink::Buffer { op: op.clone(), chunks: Vec::new() }
        };
        Ok(BlobWriter { provider: self.name.clone(), path: path.to_string(), sink })
    }

    /// Reads a whole blob.
    pub async fn read(&self, path: &str) -> Result<Bytes, ProviderError> {
        self.op()?.read(path).await.map(|b| b.to_bytes()).map_err(|e| self.err("read", path, e))
    }

    /// Reads `range` of a blob. The result may be shorter than asked if the blob is (a lying
    /// provider's truncated body is caught by the caller's checks).
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, ProviderError> {
        self.op()?.read_with(path).range(range).await.map(|b| b.to_bytes()).map_err(|e| self.err("read", path, e))
    }

    /// Deletes a blob; deleting a missing blob succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), ProviderError> {
        self.op()?.delete(path).await.map_err(|e| self.err("delete", path, e))
    }

    /// Size of a blob, or a not-found error.
    pub async fn stat(&self, path: &str) -> Result<BlobEntry, ProviderError> {
        let m = self.op()?.stat(path).await.map_err(|e| self.err("stat", path, e))?;
        Ok(BlobEntry { name: path.to_string(), size: m.content_length(), modified: m.last_modified().map(Into::into) })
    }

    /// Lists the blobs under `prefix` (e.g. `s/`), recursively. A missing prefix lists empty.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>, ProviderError> {
        let entries = match self.op()?.list_with(prefix).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let m = e.metadata();
            let (size, modified) = if m.last_modified().is_some() {
                (m.content_length(), m.last_modified().map(Into::into))
            } else {
                let st = self.stat(e.path()).await?;
                (st.size, st.modified)
            };
            out.push(BlobEntry { name: e.path().to_string(), size, modified });
        }
        Ok(out)
    }
}

impl BlobWriter {
    /// Appends bytes to the blob.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), ProviderError> {
        match &mut self.sink {
            Sink::Stream(w) => w.write(bytes).await.map_err(|e| self.err("write", e)),
            Sink::Buffer { chunks, .. } => {
                chunks.push(bytes);
                Ok(())
            }
        }
    }

    /// Finishes the blob; only now is it durable.
    pub async fn close(self) -> Result<(), ProviderError> {
        let result = match self.sink {
            Sink::Stream(mut w) => w.close().await.map(|_| ()),
            Sink::Buffer { op, chunks } => op.write(&self.path, opendal::Buffer::from(chunks)).await.map(|_| ()),
        };
        result.map_err(|e| ProviderError::Op {
            provider: self.provider,
            op: "close",
            path: self.path,
            class: classify(&e),
            source: e,
        })
    }

    /// Gives up on the blob, removing staged parts where the provider supports it.
    pub async fn abort(self) {
        if let Sink::Stream(mut w) = self.sink {
            let _ = w.abort().await;
        }
    }

    fn err(&self, op: &'static str, source: opendal::Error) -> ProviderError {
        ProviderError::Op { provider: self.provider.clone(), op, path: self.path.clone(), class: classify(&source), source }
    }
}
