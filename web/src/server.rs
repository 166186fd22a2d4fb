//! Serving the router over HTTP/1.1 so that slow or idle clients cannot hold
//! connections: hyper's header read timeout closes a connection whose request head does
//! not arrive in time (counted from when the connection opens or the previous response
//! was sent, so it is also the idle keep-alive limit), the router's request timeout
//! (see [`crate::app`]) answers 408 to a request whose body trickles or stalls, and a
//! client that stops reading a response for as long is dropped ([`StallGuard`]).
//!
//! `axum::serve` offers neither knob, hence this small accept loop (the shape of axum's
//! `serve-with-hyper` example), with graceful shutdown from hyper-util.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceExt;

/// What the server allows one client: time for a request's headers, time for a whole
/// request, and the size of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers, counted from when the
    /// connection opens or the previous response was sent; so it is also how long an
    /// idle keep-alive connection stays open. The connection is closed after it.
    pub header_read_timeout: Duration,
    /// How long a request may take from its headers to its response, reading the body
    /// included; a slower one is answered 408 and its connection closed.
    pub request_timeout: Duration,
    /// The largest request body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
/// lets open requests finish (at most a request timeout and a header timeout longer).
/// Each request carries the client's address as `ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%client, error = %err, "cannot set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(client));
                req
            });
        let connection = graceful.watch(http.serve_connection(
            TokioIo::new(StallGuard::new(stream, limits.request_timeout)),
            TowerToHyperService::new(service),
        ));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                // Timeouts and clients that go away end up here; nothing to act on.
                tracing::debug!(%client, error = %err, "connection closed");
            }
        });
    }
    drop(listener);
    let grace = limits.request_timeout + limits.header_read_timeout;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "open connections did not finish in time; closing them"
        );
    }
    Ok(())
}

/// After a failed accept: errors of one connection are skipped, others (such as running
/// out of file descriptors) wait a second so the loop does not spin.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %err, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection whose writes fail once the client has not taken a byte for `limit`: a
/// client that stops reading a response would otherwise hold its connection (and the
/// response's memory) for as long as TCP lets it.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Running while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's progress through; a write pending for `limit` becomes an error.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_fails_the_write_after_the_limit() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, Duration::from_secs(60));
        // Progress within the limit is fine, however slow overall.
        for _ in 0..3 {
            guarded
                .write_all(&[b'x'; 64])
                .await
                .expect("fits the buffer");
            tokio::time::sleep(Duration::from_secs(59)).await;
            let mut buf = [0u8; 64];
            client.read_exact(&mut buf).await.expect("read");
        }
        // Then the client stops reading: the write fails once 60 s pass without progress.
        let started = tokio::time::Instant::now();
        let err = guarded
            .write_all(&[b'y'; 1000])
            .await
            .expect_err("a stalled write fails");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }
}
