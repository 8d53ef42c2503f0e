//! A deadline for a connection's first bytes. HTTP/1 has hyper's header timeout; HTTP/2 has
//! none before the client's preface, so a client that chose h2 in its TLS handshake and then
//! says nothing would keep its connection for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that notes when its peer has first sent something.
pub(crate) struct Heard<I> {
    inner: I,
    heard: Arc<AtomicBool>,
}

impl<I> Heard<I> {
    /// `inner`, and the flag that its first bytes set.
    pub(crate) fn new(inner: I) -> (Self, Arc<AtomicBool>) {
        let heard = Arc::new(AtomicBool::new(false));
        (Heard { inner, heard: heard.clone() }, heard)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Heard<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Heard<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `conn` to its end, unless nothing was `heard` from its client `within` its start: then
/// it is dropped (and its connection closed), and `None` says so.
pub(crate) async fn unless_silent<F: Future>(conn: F, heard: Arc<AtomicBool>, within: Duration) -> Option<F::Output> {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        out = &mut conn => return Some(out),
        () = tokio::time::sleep(within) => {}
    }
    if heard.load(Ordering::Relaxed) {
        Some(conn.await)
    } else {
        None
    }
}
