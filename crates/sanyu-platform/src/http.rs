//! The one HTTP serving loop of every Sanyu listener (the gateway's API and
//! the headless services' health listeners), with slow and idle clients
//! dropped and a cap on connections:
//!
//! - **header read timeout**: a request's header block must be complete
//!   within this long of its first byte, or the connection is closed;
//! - **body read timeout**: a request body that sends nothing for this long
//!   fails ([`tower_http::timeout::RequestBodyTimeoutLayer`]); the handler
//!   answers and the connection is closed with the body unread;
//! - **idle timeout**: a kept-alive connection with no request for this long
//!   is closed;
//! - **connection limit**: a semaphore permit is taken before `accept`, so
//!   past the limit clients wait in the kernel's backlog instead of holding
//!   a task and a socket each.
//!
//! Connections are served by hyper-util (HTTP/1.1 and h2c).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::HttpConfig;

/// The limits of a listener (from `[http]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(http: &HttpConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms.max(1)),
            body_read_timeout: Duration::from_millis(http.body_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms.max(1)),
            max_connections: http.max_connections.max(1),
        }
    }

    /// How often a connection's clock is looked at.
    fn check_every(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 8)
            .clamp(Duration::from_millis(10), Duration::from_millis(500))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// How long open connections get to finish their requests after shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `stop` is cancelled, then let open
/// connections finish (up to 10 s). Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        // The permit first: past the limit, nobody more is accepted.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            builder.clone(),
            stream,
            peer,
            app.clone(),
            limits,
            closing.clone(),
            permit,
        ));
    }
    closing.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("http: connections still open after the drain deadline");
    }
    Ok(())
}

/// What a connection is doing, for its clock.
#[derive(Debug)]
struct Activity {
    /// Requests being answered.
    in_flight: usize,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// The first byte of the next request arrived at (no request in flight).
    head_started: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// A header block did not arrive in time: close now.
    SlowHeader,
    /// No request for the idle timeout: close gracefully.
    Idle,
}

impl Activity {
    fn verdict(&self, limits: &Limits, now: Instant) -> Verdict {
        if self.in_flight > 0 {
            return Verdict::Fine;
        }
        match self.head_started {
            Some(at) if now.duration_since(at) >= limits.header_read_timeout => Verdict::SlowHeader,
            Some(_) => Verdict::Fine,
            None if now.duration_since(self.idle_since) >= limits.idle_timeout => Verdict::Idle,
            None => Verdict::Fine,
        }
    }
}

type Shared = Arc<Mutex<Activity>>;

fn with<T>(activity: &Shared, f: impl FnOnce(&mut Activity) -> T) -> T {
    // A poisoned lock only means a panic elsewhere; the counters stay usable.
    let mut guard = activity.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

/// Marks a request in flight until dropped.
struct InFlight(Shared);

impl InFlight {
    fn begin(activity: &Shared) -> Self {
        with(activity, |a| {
            a.in_flight += 1;
            a.head_started = None;
        });
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        with(&self.0, |a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
                a.head_started = None;
            }
        });
    }
}

/// A TCP stream that notes when the first byte of a request arrives.
struct Watched<S> {
    inner: S,
    activity: Shared,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            with(&self.activity, |a| {
                if a.in_flight == 0 && a.head_started.is_none() {
                    a.head_started = Some(Instant::now());
                }
            });
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    closing: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let activity: Shared = Arc::new(Mutex::new(Activity {
        in_flight: 0,
        idle_since: Instant::now(),
        head_started: None,
    }));
    let app = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .service(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = InFlight::begin(&tracked);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = <_ as ServiceExt<hyper::Request<Incoming>>>::oneshot(app, req).await;
            drop(in_flight);
            response
        }
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut clock = tokio::time::interval(limits.check_every());
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http: connection ended with an error");
                }
                return;
            }
            () = closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = clock.tick() => {
                match with(&activity, |a| a.verdict(&limits, Instant::now())) {
                    Verdict::Fine => {}
                    Verdict::SlowHeader => {
                        tracing::debug!("http: header block not complete in time; closing");
                        return;
                    }
                    Verdict::Idle if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Verdict::Idle => {}
                }
            }
        }
    }
}

/// Whether an error (a body extractor's rejection, say) comes from a request
/// body that stopped arriving ([`Limits::body_read_timeout`]).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[test]
    fn a_partial_header_block_is_cut_after_the_header_timeout_and_an_idle_connection_after_the_idle_timeout()
     {
        let start = Instant::now();
        let mut a = Activity {
            in_flight: 0,
            idle_since: start,
            head_started: Some(start),
        };
        assert_eq!(
            a.verdict(&limits(), start + Duration::from_secs(9)),
            Verdict::Fine
        );
        assert_eq!(
            a.verdict(&limits(), start + Duration::from_secs(10)),
            Verdict::SlowHeader
        );
        a.head_started = None;
        assert_eq!(
            a.verdict(&limits(), start + Duration::from_secs(59)),
            Verdict::Fine
        );
        assert_eq!(
            a.verdict(&limits(), start + Duration::from_secs(60)),
            Verdict::Idle
        );
        a.in_flight = 1;
        assert_eq!(
            a.verdict(&limits(), start + Duration::from_secs(600)),
            Verdict::Fine
        );
    }
}
