//! Outlast's website face: buckets marked as websites (`outlast site publish`) served to the
//! public over HTTP or HTTPS, from the spread store, so a site outlives any one host.
//!
//! `route` picks the site by Host and the key by path (never above the site's root),
//! `respond` answers with the object and the headers browsers and caches expect, `cache`
//! keeps hot small objects by version; HTTPS is `outlast-tls`'s. Compression is
//! tower-http's, where the client asks for it.

pub mod cache;
mod respond;
pub mod route;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use outlast_engine::Store;
use outlast_tls::ReloadingCert;
use tokio::net::TcpListener;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;

pub use cache::CacheStats;
pub use respond::Sites;

/// Requests served at once; past this a request is answered 503 at once.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long requests in flight may take to finish once a stop is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How the site listener runs.
#[derive(Clone)]
pub struct SiteOptions {
    /// Serve HTTPS with this certificate (HTTP when `None`).
    pub tls: Option<Arc<ReloadingCert>>,
    /// Bytes of hot objects kept in memory.
    pub cache_bytes: u64,
    /// `Cache-Control: max-age` of every page, in seconds.
    pub max_age: u32,
    /// A connection whose next request head has not all come in this long after the server
    /// began to wait for it is closed (a slow client's, or an idle one's).
    pub header_timeout: Duration,
}

impl Default for SiteOptions {
    fn default() -> Self {
        SiteOptions { tls: None, cache_bytes: 64 << 20, max_age: 60, header_timeout: outlast_tls::HEADER_TIMEOUT }
    }
}

/// Serves the website buckets of `store` on `listener` until `stop` completes, then lets
/// requests in flight finish (at most [`SHUTDOWN_GRACE`]); returns what the cache did.
pub async fn serve_sites(
    store: Arc<Store>,
    listener: TcpListener,
    opts: SiteOptions,
    stop: impl Future<Output = ()>,
) -> std::io::Result<CacheStats> {
    let sites = Arc::new(Sites::new(store, opts.cache_bytes, opts.max_age));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let reporting = tokio::spawn(report_cache_now_and_then(sites.clone()));
    let listening = outlast_tls::Listening {
        http: ConnBuilder::new(TokioExecutor::new()),
        tls: opts.tls,
        header_timeout: opts.header_timeout,
        grace: SHUTDOWN_GRACE,
    };
    let service_for = || TowerToHyperService::new(service(sites.clone(), in_flight.clone()));
    let finished = outlast_tls::serve_listener(listener, listening, service_for, stop).await;
    reporting.abort();
    if !finished {
        tracing::warn!("page requests still in flight after {SHUTDOWN_GRACE:?} were cut");
    }
    Ok(sites.cache.stats())
}

/// How often the cache's hit rate is logged while pages are served.
const CACHE_REPORT: Duration = Duration::from_secs(600);

/// Logs what the page cache did in each [`CACHE_REPORT`] that saw requests, so an operator
/// sees its hit rate without stopping the gateway.
async fn report_cache_now_and_then(sites: Arc<Sites>) {
    let mut tick = tokio::time::interval(CACHE_REPORT);
    tick.tick().await;
    let mut before = sites.cache.stats();
    loop {
        tick.tick().await;
        let now = sites.cache.stats();
        let last = CacheStats { hits: now.hits - before.hits, misses: now.misses - before.misses, held_bytes: now.held_bytes };
        if last.hits + last.misses > 0 {
            tracing::info!(
                "site cache, last {CACHE_REPORT:?}: {} hits, {} misses ({:.1}% hit rate), {} bytes held",
                last.hits,
                last.misses,
                last.hit_rate() * 100.0,
                last.held_bytes
            );
        }
        before = now;
    }
}

/// The tower service of one connection: the request log and the in-flight limit around
/// [`respond::answer`], compressed where the client asks for it (never a range: its bytes are
/// the object's, not an encoding's).
fn service(
    sites: Arc<Sites>,
    in_flight: Arc<tokio::sync::Semaphore>,
) -> impl tower::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    let not_ranges = |status: http::StatusCode, _: http::Version, _: &http::HeaderMap, _: &http::Extensions| {
        status != http::StatusCode::PARTIAL_CONTENT
    };
    let compress = CompressionLayer::new().compress_when(DefaultPredicate::new().and(not_ranges));
    tower::ServiceBuilder::new().layer(compress).service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (sites, in_flight) = (sites.clone(), in_flight.clone());
        async move {
            let started = std::time::Instant::now();
            let Ok(_permit) = in_flight.try_acquire() else {
                tracing::warn!(target: "outlast_web::request", "refused: {MAX_IN_FLIGHT} requests in flight");
                return Ok(respond::busy());
            };
            let response = respond::answer(&sites, &req).await;
            let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("-");
            let bytes = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info!(
                target: "outlast_web::request",
                "{} {host} {} {} {bytes} {:.1} ms",
                req.method(),
                req.uri().path(),
                response.status().as_u16(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}
