//! Outlast's S3 face: the S3 API over the spread store, so that S3 clients work unchanged.
//!
//! s3s parses requests, checks signatures and writes responses; this crate answers them from
//! the engine (`service`), finds secrets and grants in the store's key records (`auth`,
//! `records`), streams bodies both ways (`body`), keeps buckets' settings (`buckets`),
//! answers browsers' CORS preflights (`cors`), runs multipart uploads (`uploads`) and maps the
//! engine's errors to S3's at this edge (`error`). `serve` runs it on a listener until asked to stop.

mod auth;
mod body;
pub mod buckets;
mod cors;
mod error;
pub mod records;
mod service;
pub mod uploads;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use outlast_engine::Store;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

pub use records::{create_key, delete_key, list_keys, Access, AccessKey, Grant};
pub use service::Gateway;

/// Requests served at once; past this a request is answered 503 SlowDown at once, so a flood
/// costs memory for its connections but not for the work behind them.
pub const MAX_IN_FLIGHT: usize = 512;
/// Largest request head (request line and headers) read: S3's own limit is 8 KiB of user
/// metadata and a few KiB of signed headers.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Wraps `service` with the request log and the in-flight limit. A log line has the method,
/// the path (bucket and key, never the query string, which may carry a presigned URL's
/// signature; headers are never logged), the status, the response's length and the time
/// taken.
fn logged(
    service: s3s::service::S3Service,
    in_flight: Arc<tokio::sync::Semaphore>,
    records: Arc<records::Records>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = s3s::HttpResponse,
    Error = s3s::HttpError,
    Future = impl Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (service, in_flight, records) = (service.clone(), in_flight.clone(), records.clone());
        async move {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let started = std::time::Instant::now();
            let Ok(_permit) = in_flight.try_acquire() else {
                tracing::warn!(target: "outlast_s3::request", %method, path, "refused: {MAX_IN_FLIGHT} requests in flight");
                return Ok(slow_down());
            };
            let origin = req.headers().get(http::header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
            // A refusal may come before the body is read: then the connection is closed after
            // the answer, so that unread body bytes are never taken for the next request.
            let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
                || req.headers().get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
            let mut response = if method == http::Method::OPTIONS {
                Ok(cors::preflight(&records, &path, req.headers()).await)
            } else {
                service.call(req.map(s3s::Body::from)).await
            };
            if let (Some(origin), Ok(r)) = (&origin, &mut response) {
                if method != http::Method::OPTIONS {
                    cors::decorate(&records, &path, &method, origin, r).await;
                }
            }
            if let Ok(r) = &mut response {
                if has_body && (r.status().is_client_error() || r.status().is_server_error()) {
                    r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                let bytes = r.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info!(
                    target: "outlast_s3::request",
                    "{method} {path} {} {bytes} {:.1} ms",
                    r.status().as_u16(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
            response
        }
    })
}

/// S3's answer to a client that should come back later.
fn slow_down() -> s3s::HttpResponse {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let mut r = http::Response::new(s3s::Body::from(body.to_string()));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// How long requests in flight may take to finish once a stop is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How a gateway runs besides its listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Multipart uploads left open longer than this are aborted and their parts let go.
    pub upload_expiry: Duration,
    /// Serve HTTPS with this certificate (HTTP when `None`). Over HTTPS clients may send
    /// bodies unsigned (the payload's SHA-256 is then computed by neither side), as AWS's
    /// own SDKs do by default.
    pub tls: Option<Arc<outlast_tls::ReloadingCert>>,
    /// A connection whose next request head has not all come in this long after the server
    /// began to wait for it is closed: slow or idle clients do not hold sockets for ever.
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { upload_expiry: uploads::DEFAULT_EXPIRY, tls: None, header_timeout: outlast_tls::HEADER_TIMEOUT }
    }
}

/// Serves the S3 API of `store` on `listener` until `stop` completes, then lets requests in
/// flight finish (at most [`SHUTDOWN_GRACE`]). Meanwhile it sweeps multipart uploads
/// (`uploads::Uploads::sweep`) now and then.
pub async fn serve(
    store: Arc<Store>,
    listener: TcpListener,
    opts: ServeOptions,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let records = Arc::new(records::Records::new(store.clone()));
    let uploads = Arc::new(uploads::Uploads::new(store.clone(), opts.upload_expiry));
    let sweeper = tokio::spawn(sweep_now_and_then(uploads.clone()));
    let mut builder = S3ServiceBuilder::new(Gateway::new(store, records.clone(), uploads));
    builder.set_auth(auth::KeyAuth(records.clone()));
    builder.set_access(auth::Grants(records.clone()));
    let service = builder.build();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1().max_buf_size(MAX_HEADER_BYTES);
    http.http2().max_header_list_size(MAX_HEADER_BYTES as u32);
    let listening = outlast_tls::Listening { http, tls: opts.tls, header_timeout: opts.header_timeout, grace: SHUTDOWN_GRACE };
    let service_for = || logged(service.clone(), in_flight.clone(), records.clone());
    let finished = outlast_tls::serve_listener(listener, listening, service_for, stop).await;
    sweeper.abort();
    if !finished {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?} were cut");
    }
    Ok(())
}

/// Sweeps the uploads at start and then every [`uploads::Uploads::sweep_interval`]; a sweep
/// that fails (providers down) is tried again at the next tick.
async fn sweep_now_and_then(uploads: Arc<uploads::Uploads>) {
    let mut tick = tokio::time::interval(uploads.sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match uploads.sweep().await {
            Ok(r) if r != uploads::SweepReport::default() => tracing::info!(
                "uploads swept: {} expired, {} completes finished, {} part attempts let go",
                r.expired,
                r.finished,
                r.parts_removed
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("sweeping multipart uploads failed (tried again later): {e}"),
        }
    }
}
