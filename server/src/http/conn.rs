//! Slow and greedy clients, per connection (issue 17, item 4):
//!
//! * a cap on open connections: over it, a new connection is answered
//!   `503` with the JSON error body and `Retry-After: 1`, then closed;
//! * an idle timeout: a connection that has sent nothing for
//!   [`HttpConfig::idle_timeout`] since it was accepted or since its last
//!   response is closed;
//! * a header timeout: once the first byte of a request has arrived, its
//!   headers must be complete within [`HttpConfig::header_timeout`], however
//!   slowly they trickle in; else the connection is closed.
//!
//! The deadlines run only while no request of the connection is in
//! progress (the [`track_requests`] middleware marks them), so a slow
//! storage call is never cut off, and a response being written moves the
//! idle deadline on each write, so a slow reader is not either (a reader
//! that stops reading for the idle timeout is disconnected). Request bodies
//! have their own deadline, [`HttpConfig::body_timeout`], in `read_json`.
//!
//! [`HttpConfig::idle_timeout`]: super::HttpConfig::idle_timeout
//! [`HttpConfig::header_timeout`]: super::HttpConfig::header_timeout
//! [`HttpConfig::body_timeout`]: super::HttpConfig::body_timeout

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::{AppState, ClientKey};

const NONE: u64 = u64::MAX;

/// What a connection's IO and the request middleware share.
#[derive(Debug)]
pub struct ConnState {
    born: Instant,
    /// Requests of this connection in progress.
    busy: AtomicUsize,
    /// When the connection last became idle or wrote (nanoseconds since `born`).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived (`NONE`: not yet).
    first_byte_at: AtomicU64,
    /// The read that went pending last: woken when a request is over, to
    /// arm the deadline that applies then.
    reader: Mutex<Option<Waker>>,
}

impl ConnState {
    fn new() -> Arc<Self> {
        Arc::new(ConnState {
            born: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            first_byte_at: AtomicU64::new(NONE),
            reader: Mutex::new(None),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.born + Duration::from_nanos(nanos)
    }
}

/// Marks a request of the connection in progress until dropped.
#[derive(Debug)]
pub(super) struct RequestGuard(Arc<ConnState>);

impl RequestGuard {
    fn new(state: &Arc<ConnState>) -> Self {
        state.busy.fetch_add(1, Ordering::SeqCst);
        RequestGuard(Arc::clone(state))
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since.store(s.now(), Ordering::SeqCst);
        s.first_byte_at.store(NONE, Ordering::SeqCst);
        if s.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            let reader = s.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(waker) = reader {
                waker.wake();
            }
        }
    }
}

/// The connection a request came on (axum's connect info).
#[derive(Clone, Debug)]
pub struct Conn {
    state: Arc<ConnState>,
    peer: SocketAddr,
}

impl Connected<IncomingStream<'_, GuardedListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Conn {
            state: Arc::clone(&stream.io().state),
            peer: *stream.remote_addr(),
        }
    }
}

/// The client address of a request, as the per-address limits key it
/// ([`ClientKey::of`]; no address when the router is served without a
/// socket). The TCP peer: behind a reverse proxy, the proxy's address.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer(pub(super) ClientKey);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<Conn>>()
            .map(|c| c.0.peer.ip());
        Ok(Peer(ClientKey::of(addr)))
    }
}

/// Marks each request in progress on its connection, which stops the
/// connection's idle and header deadlines until the handler has answered.
pub(super) async fn track_requests(req: Request, next: Next) -> Response {
    let guard = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| RequestGuard::new(&c.0.state));
    let resp = next.run(req).await;
    drop(guard);
    resp
}

/// A connection with the deadlines above and its slot under the cap.
#[derive(Debug)]
pub struct GuardedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    idle_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    app: Arc<AppState>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        self.app
            .stats
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl GuardedIo {
    /// The deadline that applies now, if any.
    fn deadline(&self) -> Option<Instant> {
        let s = &self.state;
        if s.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        match s.first_byte_at.load(Ordering::SeqCst) {
            NONE => self
                .idle_timeout
                .map(|t| s.at(s.idle_since.load(Ordering::SeqCst)) + t),
            first => self.header_timeout.map(|t| s.at(first) + t),
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            let s = &this.state;
            if buf.filled().len() > before
                && s.busy.load(Ordering::SeqCst) == 0
                && s.first_byte_at.load(Ordering::SeqCst) == NONE
            {
                s.first_byte_at.store(s.now(), Ordering::SeqCst);
            }
            return Poll::Ready(r);
        }
        // The end of a request moves the deadline, possibly earlier (from
        // the header deadline of its first byte to the idle deadline of its
        // end, for a request answered at once): it wakes this read to arm
        // the new one, whether a deadline is armed now or not.
        {
            let mut reader = this.state.reader.lock().unwrap_or_else(|e| e.into_inner());
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        let Some(deadline) = this.deadline() else {
            // No deadline while a request is in progress (or with no
            // timeouts at all). The request may have ended in between:
            // then look again.
            if this.deadline().is_some() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let what = if this.state.first_byte_at.load(Ordering::SeqCst) == NONE {
                    "idle"
                } else {
                    "headers"
                };
                this.app
                    .stats
                    .connections_timed_out
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(timeout = what, "closing a slow connection");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection closed: {what} timeout"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            // A response making progress: the idle deadline counts from here.
            this.state
                .idle_since
                .store(this.state.now(), Ordering::SeqCst);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener that caps the open connections and hands out
/// [`GuardedIo`]s.
#[derive(Debug)]
pub struct GuardedListener {
    inner: TcpListener,
    slots: Option<Arc<Semaphore>>,
    app: Arc<AppState>,
}

impl GuardedListener {
    pub(super) fn new(inner: TcpListener, app: Arc<AppState>) -> Self {
        let max = app.config.max_connections;
        GuardedListener {
            inner,
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            app,
        }
    }
}

/// The answer to a connection over the cap.
fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::to_vec(&tidesync::ErrorBody {
        code: tidesync::ErrorCode::Internal,
        message: format!("server: {max} connections are open, the most it takes; retry later"),
    })
    .expect("an error body serialises");
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl Listener for GuardedListener {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        loop {
            let (mut stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // As axum's own listener: a connection that failed
                    // before it was accepted is skipped; anything else (out
                    // of file descriptors) waits a moment.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let slot = match &self.slots {
                None => None,
                Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        self.app
                            .stats
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        let answer = refusal(self.app.config.max_connections);
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                stream.write_all(&answer).await?;
                                stream.shutdown().await
                            })
                            .await;
                        });
                        continue;
                    }
                },
            };
            self.app
                .stats
                .connections_open
                .fetch_add(1, Ordering::Relaxed);
            let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
            let io = GuardedIo {
                inner: stream,
                state: ConnState::new(),
                idle_timeout: nonzero(self.app.config.idle_timeout),
                header_timeout: nonzero(self.app.config.header_timeout),
                timer: None,
                app: Arc::clone(&self.app),
                _slot: slot,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
