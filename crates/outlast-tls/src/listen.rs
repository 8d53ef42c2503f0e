//! The accept loop both faces share: connections taken from a listener, through TLS when there
//! is a certificate, served as HTTP/1.1 in the clear and in the version ALPN chose over TLS,
//! never waiting unbounded on a silent client; a stop lets requests in flight finish.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::{unless_silent, Handshakes, Heard, ReloadingCert};

/// How a face's listener runs.
pub struct Listening {
    /// Its HTTP settings (limits); [`serve_listener`] adds the timer and the header timeout.
    pub http: ConnBuilder<TokioExecutor>,
    /// Serve HTTPS with this certificate (HTTP when `None`).
    pub tls: Option<Arc<ReloadingCert>>,
    /// A connection whose next request head has not come in this long after the server began
    /// to wait for it is closed (a slow or silent client's).
    pub header_timeout: Duration,
    /// How long requests in flight may take to finish once a stop is asked.
    pub grace: Duration,
}

/// Serves `listener` with a service from `service_for` per connection until `stop`
/// completes, then lets requests in flight finish (at most `grace`; false if some were cut).
pub async fn serve_listener<S, B, M>(
    listener: TcpListener,
    listening: Listening,
    service_for: M,
    stop: impl Future<Output = ()>,
) -> bool
where
    M: Fn() -> S,
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let Listening { mut http, tls, header_timeout, grace } = listening;
    http.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // hyper-util's version sniffing waits for first bytes without a deadline, so neither
    // protocol is guessed: HTTP/1.1 in the clear (S3 clients and browsers), ALPN's over TLS.
    let (h1, h2) = (http.clone().http1_only(), http.http2_only());
    let handshakes = tls.map(Handshakes::new);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (socket, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: the
                    // listener itself is fine.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = service_for();
        let Some(handshakes) = &handshakes else {
            let conn = graceful.watch(h1.serve_connection(TokioIo::new(socket), service).into_owned());
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
            continue;
        };
        let (handshakes, h1, h2, watcher) = (handshakes.clone(), h1.clone(), h2.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Some(tls) = handshakes.accept(socket, peer).await else { return };
            let ended = if Handshakes::chose_h2(&tls) {
                // HTTP/2 has no header timeout before the client's preface.
                let (tls, heard) = Heard::new(tls);
                let conn = watcher.watch(h2.serve_connection(TokioIo::new(tls), service).into_owned());
                let Some(ended) = unless_silent(conn, heard, header_timeout).await else {
                    tracing::debug!(%peer, "an HTTP/2 client said nothing: let go");
                    return;
                };
                ended
            } else {
                watcher.watch(h1.serve_connection(TokioIo::new(tls), service).into_owned()).await
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown()).await.is_ok()
}
