//! One request to a site: the object it names (an index document for a folder, a redirect to
//! the folder for a name that is one, the site's 404 page), with the headers a browser and a
//! cache expect: content type, ETag and Last-Modified with 304s, ranges (206, 416), HEAD.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use outlast_engine::index::IndexEntry;
use outlast_engine::progress::NoProgress;
use outlast_engine::{ByteRange, EngineError, Store, WriteSink};
use outlast_s3::buckets::Buckets;

use crate::cache::{PageCache, MAX_CACHED_OBJECT};
use crate::route::{asked, index_of, site_for, sites_of, Site};

/// A response body: whole bytes, or a stream that ends with an error if the read fails.
pub type Body = BoxBody<Bytes, io::Error>;

/// How long the table of sites is used before it is read again.
const SITES_FRESH: Duration = Duration::from_secs(1);

/// What every request of the site listener shares.
pub struct Sites {
    store: Arc<Store>,
    buckets: Buckets,
    table: Mutex<(Option<Instant>, Arc<Vec<Site>>)>,
    /// Hot objects.
    pub cache: PageCache,
    /// `Cache-Control: max-age` of every answer, in seconds.
    max_age: u32,
}

impl Sites {
    /// The sites of `store`, with a cache of `cache_bytes`.
    pub fn new(store: Arc<Store>, cache_bytes: u64, max_age: u32) -> Self {
        let buckets = Buckets::of(&store);
        Sites { store, buckets, table: Mutex::new((None, Arc::default())), cache: PageCache::new(cache_bytes), max_age }
    }

    /// The website buckets, read again once a second at most (a site published through
    /// another process is served within a second).
    async fn table(&self) -> Result<Arc<Vec<Site>>, EngineError> {
        {
            let t = self.table.lock().expect("sites lock");
            if t.0.is_some_and(|at| at.elapsed() < SITES_FRESH) {
                return Ok(t.1.clone());
            }
        }
        let fresh = Arc::new(sites_of(self.buckets.list().await?));
        *self.table.lock().expect("sites lock") = (Some(Instant::now()), fresh.clone());
        Ok(fresh)
    }
}

/// A body of bytes at hand.
fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e: Infallible| match e {}).boxed()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The answer past the in-flight limit.
pub(crate) fn busy() -> Response<Body> {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable: too many requests at once; retry later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unavailable(e: &EngineError) -> Response<Body> {
    tracing::warn!("a page could not be read: {e}");
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable: too few storage providers answer; retry later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Answers `req`.
pub async fn answer(sites: &Sites, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let table = match sites.table().await {
        Ok(t) => t,
        Err(e) => return unavailable(&e),
    };
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().host());
    let Some(site) = site_for(&table, host) else {
        return plain(StatusCode::NOT_FOUND, "404 Not Found: no site is served for this host");
    };
    let Some(asked) = asked(req.uri().path()) else {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request: the path does not decode");
    };
    let lookup = |key: &str| {
        let name = format!("{}/{key}", site.bucket);
        async move { sites.store.current(&name).await }
    };
    let found = if asked.folder {
        lookup(&index_of(&asked.key, &site.website.index)).await
    } else {
        match lookup(&asked.key).await {
            Ok(None) => match lookup(&index_of(&asked.key, &site.website.index)).await {
                // A folder asked without its slash: where its relative links work.
                Ok(Some(_)) => {
                    let mut to = format!("{}/", req.uri().path());
                    if let Some(q) = req.uri().query() {
                        to = format!("{to}?{q}");
                    }
                    let mut r = plain(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently");
                    if let Ok(v) = HeaderValue::from_str(&to) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    return r;
                }
                other => other,
            },
            other => other,
        }
    };
    match found {
        Ok(Some(entry)) => serve(sites, &entry, req, StatusCode::OK).await,
        Ok(None) => not_found(sites, site, req).await,
        Err(e) => unavailable(&e),
    }
}

/// The site's 404 page with status 404, or a plain one.
async fn not_found(sites: &Sites, site: &Site, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    if let Some(page) = &site.website.error {
        match sites.store.current(&format!("{}/{page}", site.bucket)).await {
            Ok(Some(entry)) => return serve(sites, &entry, req, StatusCode::NOT_FOUND).await,
            Ok(None) => {}
            Err(e) => return unavailable(&e),
        }
    }
    plain(StatusCode::NOT_FOUND, "404 Not Found")
}

fn http_date(ns: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_nanos(ns))
}

/// Whether an `If-None-Match` / `If-Match` list names `etag` (weak comparison, `*` any).
fn names_etag(list: &HeaderValue, etag: &str) -> bool {
    list.to_str().is_ok_and(|l| l.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag))
}

fn date_of(v: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// A single `bytes=` range against `size`: `None` for none (or one this server does not
/// take, several ranges: then the whole body is sent), `Some(Err)` when unsatisfiable.
fn range_of(headers: &HeaderMap, size: u64, etag: &str, modified: SystemTime) -> Option<Result<std::ops::Range<u64>, ()>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let same = if_range.to_str().is_ok_and(|v| v == etag) || date_of(if_range).is_some_and(|d| d >= modified);
        if !same {
            return None;
        }
    }
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let r = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(f), Some(l)) if f <= l => f..(l + 1).min(size),
        (Some(f), None) if last.is_empty() => f..size,
        (None, Some(n)) if first.is_empty() => size.saturating_sub(n)..size,
        _ => return None,
    };
    Some(if r.start < size && r.start < r.end { Ok(r) } else { Err(()) })
}

/// Answers with version `entry`: conditions first, then the range, then the bytes.
async fn serve(sites: &Sites, entry: &IndexEntry, req: &Request<hyper::body::Incoming>, status: StatusCode) -> Response<Body> {
    let etag = format!("\"{}\"", entry.etag);
    let modified = UNIX_EPOCH + Duration::from_secs(entry.stamp.time_ns / 1_000_000_000);
    let headers = req.headers();
    let key = entry.name.split_once('/').map_or("", |(_, k)| k);
    let content_type =
        entry.content_type.clone().unwrap_or_else(|| mime_guess::from_path(key).first_or_octet_stream().to_string());
    let mut out = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, http_date(entry.stamp.time_ns))
        .header(header::CACHE_CONTROL, format!("public, max-age={}", sites.max_age))
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-content-type-options", "nosniff");
    let size = entry.size;
    let mut range = None;
    if status == StatusCode::OK {
        // RFC 9110's order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since.
        let failed = match (headers.get(header::IF_MATCH), headers.get(header::IF_UNMODIFIED_SINCE)) {
            (Some(m), _) => !names_etag(m, &etag),
            (None, Some(d)) => date_of(d).is_some_and(|d| modified > d),
            _ => false,
        };
        if failed {
            return plain(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed");
        }
        let unchanged = match (headers.get(header::IF_NONE_MATCH), headers.get(header::IF_MODIFIED_SINCE)) {
            (Some(m), _) => names_etag(m, &etag),
            (None, Some(d)) => date_of(d).is_some_and(|d| modified <= d),
            _ => false,
        };
        if unchanged {
            return out.status(StatusCode::NOT_MODIFIED).body(full(Bytes::new())).expect("valid response");
        }
        match range_of(headers, size, &etag, modified) {
            Some(Err(())) => {
                let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "416 Range Not Satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            Some(Ok(r)) => {
                out = out
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", r.start, r.end - 1));
                range = Some(r);
            }
            None => out = out.status(status),
        }
    } else {
        out = out.status(status);
    }
    let span = range.clone().unwrap_or(0..size);
    out = out.header(header::CONTENT_LENGTH, span.end - span.start);
    if req.method() == Method::HEAD {
        return out.body(full(Bytes::new())).expect("valid response");
    }
    // What a miss reads from the providers is boxed: inline, its large future would be part
    // of every request's, and moving that was most of what a hit cost.
    let body = if size <= MAX_CACHED_OBJECT {
        let held = match sites.cache.held(entry.stamp.vid).await {
            Some(bytes) => Ok(bytes),
            None => Box::pin(load_whole(sites, entry)).await,
        };
        match held {
            Ok(bytes) => full(bytes.slice(span.start as usize..span.end as usize)),
            Err(e) => return unavailable(&e),
        }
    } else {
        match Box::pin(stream(sites.store.clone(), entry.clone(), range.map(ByteRange::Span))).await {
            Ok(b) => b,
            Err(e) => return unavailable(&e),
        }
    };
    out.body(body).expect("valid response")
}

/// The bytes of a small version, through the cache (one read however many ask at once).
async fn load_whole(sites: &Sites, entry: &IndexEntry) -> Result<Bytes, Arc<EngineError>> {
    let load = async {
        let mut sink = WriteSink(Vec::with_capacity(entry.size as usize));
        sites.store.get_version_into(entry, None, &mut sink, &NoProgress).await.map(|_| Bytes::from(sink.0))
    };
    sites.cache.get_or_load(entry.stamp.vid, load).await
}

/// A body streamed from the providers. The first piece is waited for, so that a version that
/// cannot be read is a 503 before any header; a later failure ends the body with an error
/// (the client sees a cut transfer, never bytes that are not the object's).
async fn stream(store: Arc<Store>, entry: IndexEntry, range: Option<ByteRange>) -> Result<Body, EngineError> {
    let name = entry.name.clone();
    let stream = store.stream_version(entry, range).await?;
    let frames = stream.map(move |r| match r {
        Ok(b) => Ok(Frame::data(b)),
        Err(e) => {
            tracing::warn!(object = name, "a page's body was cut: {e}");
            Err(io::Error::other(e.to_string()))
        }
    });
    Ok(BodyExt::boxed(StreamBody::new(sync_wrapper::SyncStream::new(frames))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(spec: &str, size: u64) -> Option<Result<std::ops::Range<u64>, ()>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(spec).unwrap());
        range_of(&h, size, "\"e\"", UNIX_EPOCH)
    }

    #[test]
    fn ranges_as_browsers_and_players_send_them() {
        assert_eq!(range("bytes=0-9", 100), Some(Ok(0..10)));
        assert_eq!(range("bytes=90-200", 100), Some(Ok(90..100)));
        assert_eq!(range("bytes=95-", 100), Some(Ok(95..100)));
        assert_eq!(range("bytes=-5", 100), Some(Ok(95..100)));
        assert_eq!(range("bytes=-500", 100), Some(Ok(0..100)));
        assert_eq!(range("bytes=100-", 100), Some(Err(())));
        assert_eq!(range("bytes=0-0", 0), Some(Err(())));
        assert_eq!(range("bytes=5-1", 100), None, "malformed: the whole body");
        assert_eq!(range("bytes=0-1,5-6", 100), None, "several: the whole body");
        assert_eq!(range("items=0-1", 100), None);
    }

    proptest! {
        /// Any Range header: no panic, and a range taken lies inside the object.
        #[test]
        fn any_range_header_is_inside_the_object_or_refused(spec in "(bytes=)?[0-9-,= a]{0,24}", size in 0u64..1000) {
            if let Ok(v) = HeaderValue::from_str(&spec) {
                let mut h = HeaderMap::new();
                h.insert(header::RANGE, v);
                if let Some(Ok(r)) = range_of(&h, size, "\"e\"", UNIX_EPOCH) {
                    prop_assert!(r.start < r.end && r.end <= size, "{} of {}: {:?}", spec, size, r);
                }
            }
        }
    }
}
