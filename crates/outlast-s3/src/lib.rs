//! Outlast's S3 face: the S3 API over the spread store, so that S3 clients work unchanged.
//!
//! s3s parses requests, checks signatures and writes responses; this crate answers them from
//! the engine (`service`), finds secrets and grants in the store's key records (`auth`,
//! `records`), streams bodies both ways (`body`) and maps the engine's errors to S3's at this
//! edge (`error`). `serve` runs it on a listener until asked to stop.

mod auth;
mod body;
mod error;
pub mod records;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use outlast_engine::Store;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

pub use records::{create_key, delete_key, list_keys, Access, AccessKey, Grant};
pub use service::Gateway;

/// How long requests in flight may take to finish once a stop is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves the S3 API of `store` on `listener` until `stop` completes, then lets requests in
/// flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(store: Arc<Store>, listener: TcpListener, stop: impl Future<Output = ()>) -> std::io::Result<()> {
    let records = Arc::new(records::Records::new(store.clone()));
    let mut builder = S3ServiceBuilder::new(Gateway::new(store, records.clone()));
    builder.set_auth(auth::KeyAuth(records.clone()));
    builder.set_access(auth::Grants(records));
    let service = builder.build();
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or a connection reset before it was taken: the
                        // listener itself is fine.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?} were cut");
    }
    Ok(())
}
