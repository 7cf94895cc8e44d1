//! The public HTTP listeners (the gateway's callback endpoint, the web service): an axum
//! [`Router`] served over HTTP/1.1 with the [`ListenerLimits`] of its config section, and the
//! same graceful shutdown as `axum::serve` (stop accepting, let in-flight requests finish).
//!
//! - **Header read**: a connection must deliver a whole request head within
//!   `header_read_timeout_ms` of being accepted, and a kept-alive one within that time of the
//!   first byte of its next request; else it is closed.
//! - **Body read**: a request's body must arrive within `body_read_timeout_ms` of its head; else
//!   the request is answered `408` and the connection closed. Time the handler spends after
//!   reading the body (a passive reply being awaited) does not count.
//! - **Idle**: a kept-alive connection waits at most `idle_timeout_ms` for its next request.
//! - **Connections**: at most `max_connections` are open at once. One more is accepted and
//!   closed at once (the accept queue keeps draining, so no client waits in it and the process
//!   holds at most one socket beyond the cap), and counted.
//! - **Head size**: a request head may use at most [`MAX_BUF_BYTES`] of buffer (431 above), so
//!   the cap also bounds the memory that heads can hold.
//!
//! Every request carries the peer's address as `axum::extract::ConnectInfo<SocketAddr>`, as
//! with `into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a kept-alive connection
//! waits for its next request, which would make the idle timeout the header timeout.
//!
//! | metric | what |
//! |---|---|
//! | `wxoa_http_connections{listener}` | gauge: connections open now |
//! | `wxoa_http_connections_refused_total{listener}` | connections closed at accept: `max_connections` were open |
//! | `wxoa_http_timeouts_total{listener,kind}` | connections closed (`kind="header"`, `"idle"`) or requests answered 408 (`"body"`) by a timeout |

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Health;
use crate::config::ListenerLimits;

/// The most buffer a connection may use to read a request head (hyper's `max_buf_size`): a
/// head that does not fit is answered 431. WeChat's callback heads are under 1 KiB; browsers'
/// (cookies included) stay well below this.
pub const MAX_BUF_BYTES: usize = 32 * 1024;

/// The listen backlog of a public listener: the kernel's queue of connections not yet
/// accepted. Above tokio's default (1024), so a burst of new connections (WeChat's, or a flood
/// beside them) overflows it later; Linux caps it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 4096;

/// Binds a public listener on `addr` with [`BACKLOG`] (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` under `limits` until `signal` completes, then stops
/// accepting and returns when every open connection has finished its in-flight request
/// (idle ones close at once, slow ones at their timeout). `name` labels the metrics on
/// `health` (`listener="<name>"`): a fixed name per service, such as `gateway`.
pub async fn serve<F>(
    listener: TcpListener,
    limits: ListenerLimits,
    router: Router,
    name: &'static str,
    health: Health,
    signal: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let metrics = Metrics::new(&health, name);
    let cap = match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n.min(Semaphore::MAX_PERMITS),
    };
    let permits = Arc::new(Semaphore::new(cap));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut signal = pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // The pause after an accept error (out of file descriptors) gives way to
                    // the shutdown signal.
                    tokio::select! {
                        () = accept_error(e) => continue,
                        () = &mut signal => break,
                    }
                }
            },
            () = &mut signal => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let refused = metrics.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused % 1000 == 1 {
                tracing::warn!(
                    listener = name,
                    max_connections = cap,
                    refused,
                    "connection cap reached: closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        tracker.spawn(connection(
            stream,
            peer,
            permit,
            router.clone(),
            limits,
            metrics.clone(),
            stop.clone(),
        ));
    }
    stop.cancel();
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// What `axum::serve` does on an accept error: a connection that failed before it was
/// accepted is skipped; anything else (out of file descriptors) is logged and accepting
/// pauses for a second.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The metric handles of one listener.
#[derive(Clone)]
struct Metrics {
    open: Arc<AtomicI64>,
    refused: Arc<AtomicU64>,
    header: Arc<AtomicU64>,
    body: Arc<AtomicU64>,
    idle: Arc<AtomicU64>,
}

impl Metrics {
    fn new(health: &Health, name: &str) -> Metrics {
        let listener = format!("listener=\"{name}\"");
        let timeouts = |kind: &str| {
            health.counter(
                "wxoa_http_timeouts_total",
                &format!("{listener},kind=\"{kind}\""),
            )
        };
        Metrics {
            open: health.gauge("wxoa_http_connections", &listener),
            refused: health.counter("wxoa_http_connections_refused_total", &listener),
            header: timeouts("header"),
            body: timeouts("body"),
            idle: timeouts("idle"),
        }
    }
}

/// Where a connection is between requests, as its watchdog sees it.
mod phase {
    /// Accepted, no request yet: the header timeout runs from the accept.
    pub(super) const NEW: u8 = 0;
    /// Kept alive after a response, nothing read since: the idle timeout runs.
    pub(super) const IDLE: u8 = 1;
    /// Bytes of a request head read on a kept-alive connection: the header timeout runs.
    pub(super) const HEAD: u8 = 2;
    /// A request is being handled (its body under the body timeout): no watchdog deadline.
    pub(super) const BUSY: u8 = 3;
}

/// One connection's state, shared by its IO (reads), its service (requests) and its watchdog.
struct ConnState {
    accepted: Instant,
    phase: AtomicU8,
    /// Milliseconds after `accepted` when the current phase began.
    since_ms: AtomicU64,
    /// Set by the body when it timed out; the response becomes a 408.
    body_timed_out: AtomicBool,
    /// Woken on a phase change that moves the deadline.
    wake: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            accepted: Instant::now(),
            phase: AtomicU8::new(phase::NEW),
            since_ms: AtomicU64::new(0),
            body_timed_out: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn enter(&self, to: u8) {
        let since = self.accepted.elapsed().as_millis() as u64;
        self.since_ms.store(since, Ordering::Relaxed);
        self.phase.store(to, Ordering::Release);
        self.wake.notify_one();
    }

    /// Bytes were read: on an idle kept-alive connection, a request head has begun.
    fn on_read(&self) {
        if self.phase.load(Ordering::Acquire) == phase::IDLE {
            self.enter(phase::HEAD);
        }
    }

    /// When the watchdog closes the connection, and which timeout that is.
    fn deadline(&self, limits: &ListenerLimits) -> Option<(Instant, Timeout)> {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        let since = || self.accepted + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.phase.load(Ordering::Acquire) {
            phase::NEW => {
                ms(limits.header_read_timeout_ms).map(|t| (self.accepted + t, Timeout::Header))
            }
            phase::HEAD => {
                ms(limits.header_read_timeout_ms).map(|t| (since() + t, Timeout::Header))
            }
            phase::IDLE => ms(limits.idle_timeout_ms).map(|t| (since() + t, Timeout::Idle)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Timeout {
    Header,
    Idle,
}

/// Serves one connection under its watchdog.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    router: Router,
    limits: ListenerLimits,
    metrics: Metrics,
    stop: CancellationToken,
) {
    metrics.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGauge(metrics.open.clone());
    let state = Arc::new(ConnState::new());
    // hyper allocates its read buffer at its first read: a connection that sends nothing
    // waits here, costing no buffer, until it sends or its header timeout passes.
    let first_bytes = async {
        match state.deadline(&limits) {
            Some((at, _)) => tokio::time::timeout_at(at, stream.readable()).await.is_ok(),
            None => {
                let _ = stream.readable().await;
                true
            }
        }
    };
    tokio::select! {
        arrived = first_bytes => if !arrived {
            metrics.header.fetch_add(1, Ordering::Relaxed);
            return;
        },
        () = stop.cancelled() => return,
    }
    let io = hyper_util::rt::TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
    });
    let service = ConnService {
        router,
        peer,
        state: state.clone(),
        body_timeout: (limits.body_read_timeout_ms > 0)
            .then(|| Duration::from_millis(limits.body_read_timeout_ms)),
        body_timeouts: metrics.body.clone(),
    };
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .max_buf_size(MAX_BUF_BYTES)
            .serve_connection(io, service)
    );
    let far = Duration::from_secs(86_400 * 365);
    let mut sleep = pin!(tokio::time::sleep(far));
    let mut draining = false;
    loop {
        let deadline = state.deadline(&limits);
        let at = deadline.map_or_else(|| Instant::now() + far, |(at, _)| at);
        sleep.as_mut().reset(at);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut sleep, if deadline.is_some() => {
                // Re-read: the connection may have moved on in the same wake-up.
                if let Some((at, kind)) = state.deadline(&limits)
                    && Instant::now() >= at
                {
                    match kind {
                        Timeout::Header => metrics.header.fetch_add(1, Ordering::Relaxed),
                        Timeout::Idle => metrics.idle.fetch_add(1, Ordering::Relaxed),
                    };
                    break; // dropping the connection closes the socket
                }
            }
            () = state.wake.notified() => {}
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Decrements the open-connections gauge when the connection ends.
struct OpenGauge(Arc<AtomicI64>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, telling the connection's state when bytes arrive.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.on_read();
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service.
struct ConnService {
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnState>,
    body_timeout: Option<Duration>,
    body_timeouts: Arc<AtomicU64>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<AxumBody>;
    type Error = Infallible;
    type Future = Respond;

    fn call(&self, request: Request<Incoming>) -> Respond {
        self.state.phase.store(phase::BUSY, Ordering::Release);
        self.state.body_timed_out.store(false, Ordering::Relaxed);
        let deadline = match self.body_timeout {
            Some(t) if !request.body().is_end_stream() => Some(Instant::now() + t),
            _ => None,
        };
        let state = self.state.clone();
        let mut request = request.map(|inner| TimedBody::new(inner, deadline, state));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Respond {
            inner: tower_service::Service::call(&mut router, request),
            state: self.state.clone(),
            body_timeout: self.body_timeout.unwrap_or_default(),
            body_timeouts: self.body_timeouts.clone(),
        }
    }
}

/// The router's response; a 408 instead when the body timed out. Its end starts the idle time.
struct Respond {
    inner: axum::routing::future::RouteFuture<Infallible>,
    state: Arc<ConnState>,
    body_timeout: Duration,
    body_timeouts: Arc<AtomicU64>,
}

impl Future for Respond {
    type Output = Result<Response<AxumBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(Ok(mut response)) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        if this.state.body_timed_out.load(Ordering::Relaxed) {
            this.body_timeouts.fetch_add(1, Ordering::Relaxed);
            response = Response::new(AxumBody::from(format!(
                "request body not received within {} ms",
                this.body_timeout.as_millis()
            )));
            *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        this.state.enter(phase::IDLE);
        Poll::Ready(Ok(response))
    }
}

/// Data frames smaller than this are copied together and handed on as one.
///
/// hyper hands on each read as a slice of its read buffer, and a slice still held (a handler
/// collecting the body) keeps the whole buffer: its next read takes a new one of at least
/// 8 KiB. A client sending its body a byte per packet made each byte cost 8 KiB until the
/// body was done (500 such clients grew the gateway by 300 MB in 4 s); copied, it costs a
/// byte.
const COALESCE_BYTES: usize = 8 * 1024;

/// A request body that fails once its deadline passes with the body unfinished, and hands on
/// small reads copied together.
struct TimedBody {
    inner: Incoming,
    deadline: Option<Instant>,
    /// Made on the first wait: a body that is already buffered costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    state: Arc<ConnState>,
    /// Small data frames, copied, not yet handed on.
    pending: BytesMut,
    /// Trailers that came while `pending` held data: handed on after it.
    trailers: Option<HeaderMap>,
}

impl TimedBody {
    fn new(inner: Incoming, deadline: Option<Instant>, state: Arc<ConnState>) -> TimedBody {
        TimedBody {
            inner,
            deadline,
            sleep: None,
            state,
            pending: BytesMut::new(),
            trailers: None,
        }
    }

    fn take_pending(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        Poll::Ready(Some(Ok(Frame::data(
            std::mem::take(&mut self.pending).freeze(),
        ))))
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimeout;

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) if this.pending.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) => return this.take_pending(),
                Poll::Pending => break,
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let last = this.inner.is_end_stream();
                    // A body read whole, or a big read: handed on as it is.
                    if this.pending.is_empty() && (last || data.len() >= COALESCE_BYTES) {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    this.pending.extend_from_slice(&data);
                    if last || this.pending.len() >= COALESCE_BYTES {
                        return this.take_pending();
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            return match frame.into_trailers() {
                Ok(trailers) if !this.pending.is_empty() => {
                    this.trailers = Some(trailers);
                    this.take_pending()
                }
                Ok(trailers) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            };
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.state.body_timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.trailers.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let held = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}
