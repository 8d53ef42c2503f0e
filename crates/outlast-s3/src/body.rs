//! Request and response bodies, streamed: a PUT's body goes into the engine as it arrives and
//! is checked against the digests the client declared before the engine may commit; a GET's
//! body is the engine's plaintext as it is decoded. Neither holds an object whole.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use outlast_engine::index::IndexEntry;
use outlast_engine::{ByteRange, Store};
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, StreamingBlob};
use s3s::{s3_error, S3Error};

use crate::error::s3_error;

/// The largest object one PUT may carry (S3's limit; larger ones go by multipart upload).
pub(crate) const MAX_PUT_BYTES: u64 = 5 << 30;

/// What went wrong with a request's body, kept for the answer: the engine sees only that its
/// source failed.
#[derive(Clone, Default)]
pub(crate) struct BodyFault(Arc<Mutex<Option<S3Error>>>);

impl BodyFault {
    fn set(&self, e: S3Error) {
        self.0.lock().expect("fault lock").get_or_insert(e);
    }

    /// The body's own fault, if it had one.
    pub(crate) fn take(&self) -> Option<S3Error> {
        self.0.lock().expect("fault lock").take()
    }
}

/// The digests a request declared for its body (in headers, or in trailers after it).
pub(crate) struct Declared {
    /// `Content-MD5`, base64: checked by the engine, which takes the body's MD5 anyway.
    pub(crate) md5: Option<String>,
    /// `x-amz-checksum-*` headers.
    pub(crate) sums: Checksum,
    /// Names of the checksums the client sends after the body (`x-amz-trailer`).
    pub(crate) trailer_names: Vec<String>,
    /// Where s3s leaves the trailers once the body has been read.
    pub(crate) trailers: Option<s3s::TrailingHeaders>,
    /// `Content-Length` (decoded length for aws-chunked bodies), if sent.
    pub(crate) length: Option<u64>,
}

impl Declared {
    /// The declared `Content-MD5` as 16 bytes; `InvalidDigest` when it is not the base64 of
    /// 16 bytes.
    pub(crate) fn md5_bytes(&self) -> Result<Option<[u8; 16]>, S3Error> {
        let Some(text) = self.md5.as_deref() else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|b| <[u8; 16]>::try_from(b).ok());
        bytes.map(Some).ok_or_else(|| s3_error!(InvalidDigest, "the Content-MD5 you specified is not valid"))
    }
}

/// A body that fails instead of ending when it does not match what was declared, so that the
/// engine, which reads to the end before it commits, commits nothing.
pub(crate) struct CheckedBody {
    inner: StreamingBlob,
    declared: Declared,
    hasher: ChecksumHasher,
    seen: u64,
    ended: bool,
    fault: BodyFault,
}

impl CheckedBody {
    pub(crate) fn new(inner: StreamingBlob, declared: Declared, fault: BodyFault) -> Self {
        let wants = |header: &str, given: &Option<String>| {
            given.is_some() || declared.trailer_names.iter().any(|t| t.eq_ignore_ascii_case(header))
        };
        let hasher = ChecksumHasher {
            crc32: wants("x-amz-checksum-crc32", &declared.sums.checksum_crc32).then(s3s::crypto::Checksum::new),
            crc32c: wants("x-amz-checksum-crc32c", &declared.sums.checksum_crc32c).then(s3s::crypto::Checksum::new),
            sha1: wants("x-amz-checksum-sha1", &declared.sums.checksum_sha1).then(s3s::crypto::Checksum::new),
            sha256: wants("x-amz-checksum-sha256", &declared.sums.checksum_sha256).then(s3s::crypto::Checksum::new),
            crc64nvme: wants("x-amz-checksum-crc64nvme", &declared.sums.checksum_crc64nvme).then(s3s::crypto::Checksum::new),
        };
        CheckedBody { inner, declared, hasher, seen: 0, ended: false, fault }
    }

    fn fail(&mut self, e: S3Error) -> Poll<Option<io::Result<Bytes>>> {
        let message = e.message().unwrap_or("bad request body").to_string();
        self.fault.set(e);
        self.ended = true;
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, message))))
    }

    /// At the body's end: the length and checksums declared against those computed (the
    /// engine checks `Content-MD5`: it takes the MD5 anyway, for the ETag).
    fn verify(&mut self) -> Result<(), S3Error> {
        if let Some(want) = self.declared.length.filter(|l| *l != self.seen) {
            return Err(s3_error!(IncompleteBody, "the body has {} bytes, {want} were declared", self.seen));
        }
        let got = std::mem::take(&mut self.hasher).finalize();
        let trailers = self.declared.trailers.as_ref().and_then(|t| t.take());
        let from_trailer = |name: &str| -> Option<String> {
            trailers.as_ref().and_then(|h| h.get(name)).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let sums = &self.declared.sums;
        for (name, declared, computed) in [
            ("x-amz-checksum-crc32", &sums.checksum_crc32, &got.checksum_crc32),
            ("x-amz-checksum-crc32c", &sums.checksum_crc32c, &got.checksum_crc32c),
            ("x-amz-checksum-sha1", &sums.checksum_sha1, &got.checksum_sha1),
            ("x-amz-checksum-sha256", &sums.checksum_sha256, &got.checksum_sha256),
            ("x-amz-checksum-crc64nvme", &sums.checksum_crc64nvme, &got.checksum_crc64nvme),
        ] {
            let Some(computed) = computed else { continue };
            let Some(want) = declared.clone().or_else(|| from_trailer(name)) else {
                return Err(s3_error!(InvalidRequest, "the trailer {name} was announced but not sent"));
            };
            if *computed != want {
                return Err(s3_error!(BadDigest, "the {name} you specified did not match what was received"));
            }
        }
        Ok(())
    }
}

impl Stream for CheckedBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match futures::ready!(self.inner.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > MAX_PUT_BYTES {
                    return self.fail(s3_error!(EntityTooLarge, "a single PUT carries at most 5 GiB; use a multipart upload"));
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                // s3s checks the payload's SHA-256 and each aws-chunked signature as the body
                // streams; its error type is private, so its words say which it was.
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                let err = if lower.contains("sha256") {
                    s3_error!(BadDigest, "the body does not match x-amz-content-sha256")
                } else if lower.contains("signature") {
                    s3_error!(SignatureDoesNotMatch, "a chunk signature of the body does not match")
                } else {
                    s3_error!(IncompleteBody, "the body ended early: {text}")
                };
                self.fail(err)
            }
            None => {
                self.ended = true;
                match self.verify() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => {
                        self.ended = false;
                        self.fail(e)
                    }
                }
            }
        }
    }
}

/// Starts reading version `entry` (the bytes `range` of it) and waits for its first piece:
/// a version that cannot be read at all is an S3 error before any header is sent, and one
/// that fails later cuts the body short (its length was promised, so the client notices).
pub(crate) async fn read_version(
    store: Arc<Store>,
    entry: IndexEntry,
    range: Option<ByteRange>,
) -> Result<StreamingBlob, S3Error> {
    let key = entry.name.clone();
    let stream = store.stream_version(entry, range).await.map_err(|e| s3_error(e, &key))?;
    let body = stream.map(move |r| {
        r.map_err(|e| {
            tracing::warn!(key, "a response body was cut: {e}");
            io::Error::other(e.to_string())
        })
    });
    Ok(StreamingBlob::wrap(sync_wrapper::SyncStream::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The CRC32 of `body` as `x-amz-checksum-crc32` carries it.
    fn crc32_of(body: &[u8]) -> String {
        let mut hasher = ChecksumHasher { crc32: Some(s3s::crypto::Checksum::new()), ..Default::default() };
        hasher.update(body);
        hasher.finalize().checksum_crc32.expect("asked for")
    }

    /// Runs `sent`, cut at `cuts`, through a body that declares `crc32` and `length`.
    fn check(sent: &[u8], cuts: &[usize], crc32: String, length: Option<u64>) -> (Vec<u8>, Option<S3Error>) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (sent.len() + 1)).collect();
        points.extend([0, sent.len()]);
        points.sort_unstable();
        points.dedup();
        let chunks: Vec<io::Result<Bytes>> = points.windows(2).map(|w| Ok(Bytes::copy_from_slice(&sent[w[0]..w[1]]))).collect();
        let sums = Checksum { checksum_crc32: Some(crc32), ..Default::default() };
        let declared = Declared { md5: None, sums, trailer_names: vec![], trailers: None, length };
        let fault = BodyFault::default();
        let body = CheckedBody::new(StreamingBlob::wrap(futures::stream::iter(chunks)), declared, fault.clone());
        let items: Vec<io::Result<Bytes>> = futures::executor::block_on(body.collect());
        let mut got = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Ok(b) => got.extend_from_slice(b),
                Err(_) => assert_eq!(i, items.len() - 1, "an error ends the body"),
            }
        }
        let failed = items.last().is_some_and(|r| r.is_err());
        let fault = fault.take();
        assert_eq!(failed, fault.is_some(), "a failed body says why");
        (got, fault)
    }

    proptest! {
        /// Whatever the cuts, a body ends cleanly only when it is whole and matches its
        /// checksum and length; otherwise its last item is an error the answer names.
        #[test]
        fn a_body_ends_cleanly_only_when_it_matches_what_was_declared(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            flip in proptest::option::of(any::<usize>()),
            short in proptest::option::of(1u64..10),
            declare_length in any::<bool>(),
        ) {
            let want = crc32_of(&body);
            let mut sent = body.clone();
            if let (Some(f), false) = (flip, sent.is_empty()) {
                let at = f % sent.len();
                sent[at] ^= 0x5a;
            }
            let length = declare_length.then(|| body.len() as u64 + short.unwrap_or(0));
            let (got, fault) = check(&sent, &cuts, want, length);
            let good = sent == body && (short.is_none() || !declare_length);
            prop_assert_eq!(fault.is_none(), good);
            if good {
                prop_assert_eq!(got, body);
            } else {
                let code = fault.unwrap().code().as_str().to_string();
                prop_assert!(code == "BadDigest" || code == "IncompleteBody", "{}", code);
            }
        }
    }
}
