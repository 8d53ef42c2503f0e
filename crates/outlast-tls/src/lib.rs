//! The gateway's listeners (the S3 API and the sites), HTTPS included: `cert` serves a
//! certificate that can be renewed in place, `Handshakes` takes a connection through the TLS
//! handshake in bounded time, `silence` bounds the wait for an HTTP/2 client's first bytes,
//! and `listen` is the accept loop both faces run with their own services.

mod cert;
mod listen;
mod silence;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use cert::{ReloadingCert, TlsError};
pub use listen::{serve_listener, Listening};
use silence::{unless_silent, Heard};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take: a client that opens a connection and says nothing
/// must not hold it longer.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// The default header timeout of both faces' listeners ([`Listening::header_timeout`]):
/// hyper's own default, and S3's order of magnitude for idle connections.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS side of a listener, cheap to clone into each connection's task.
#[derive(Clone)]
struct Handshakes(TlsAcceptor);

impl Handshakes {
    /// Handshakes with `cert`'s current pair (HTTP/2 and HTTP/1.1 offered).
    fn new(cert: Arc<ReloadingCert>) -> Self {
        Handshakes(TlsAcceptor::from(cert.server_config()))
    }

    /// Whether the client chose HTTP/2 in the handshake (ALPN); HTTP/1.1 otherwise. A face
    /// serves the protocol chosen rather than sniff the first bytes, so that its HTTP/1
    /// header timeout covers a client that says nothing after the handshake.
    fn chose_h2(tls: &TlsStream<TcpStream>) -> bool {
        tls.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    /// The connection from `peer` once its handshake is done; `None` (logged) when it failed
    /// or took longer than [`HANDSHAKE`].
    async fn accept(&self, socket: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE, self.0.accept(socket)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}
