//! Serving the router over HTTP/1.1 so that slow or idle clients cannot hold
//! connections: hyper's header read timeout closes a connection whose request head does
//! not arrive in time (counted from when the connection opens or the previous response
//! was sent, so it is also the idle keep-alive limit), and the router's request timeout
//! (see [`crate::app`]) answers 408 to a request whose body trickles or stalls.
//!
//! `axum::serve` offers neither knob, hence this small accept loop (the shape of axum's
//! `serve-with-hyper` example), with graceful shutdown from hyper-util.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
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
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
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
