//! `GET /v1/events`: the live channel (PROTOCOL.md "Live change
//! notifications"). A Server-Sent Events stream per subscriber that says
//! when its branch's change log moved; a poke carries the new head cursor
//! and nothing else (the client pulls the changes as usual).
//!
//! * [`Pokes`] is the in-process hub: one `watch` channel per partition
//!   with a subscriber, so a burst of writes is one poke per subscriber
//!   (the newest cursor). The push handler pokes it after each batch that
//!   applied something; on PostgreSQL every server process also LISTENs
//!   ([`crate::storage::StorageBackend::watch_changes`]), so a write on
//!   another node pokes this one's subscribers too.
//! * Limits: the gate's credential, branch, terminal and rate checks come
//!   first; then at most `events_max_subscribers` streams at once (`503`)
//!   and `events_per_terminal` per terminal (`429`), so that streams never
//!   take all of `max_connections`. A heartbeat every `events_heartbeat`
//!   (under the idle timeout, whose deadline each write moves on) lets the
//!   client notice a dead server and the server a dead client (a write
//!   fails); a stream ends after `events_max_age`, so a revoked key loses
//!   its stream within that time and a half-dead connection is not kept.
//! * On shutdown every stream ends ([`Pokes::close`]), so graceful shutdown
//!   does not wait for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tidesync::ErrorCode;
use tokio::sync::watch;

use super::conn::Peer;
use super::gate::authorize;
use super::response::ApiError;
use super::AppState;
use crate::context::{Partition, TerminalContext};
use crate::error::ServiceError;

/// The in-process hub of pokes.
#[derive(Debug)]
pub struct Pokes {
    partitions: Mutex<HashMap<Partition, watch::Sender<u64>>>,
    terminals: Mutex<HashMap<(String, String, String), usize>>,
    subscribers: AtomicUsize,
    closed: watch::Sender<bool>,
}

impl Default for Pokes {
    fn default() -> Self {
        Pokes {
            partitions: Mutex::default(),
            terminals: Mutex::default(),
            subscribers: AtomicUsize::new(0),
            closed: watch::channel(false).0,
        }
    }
}

/// Why a subscription was refused.
enum Full {
    Server(usize),
    Terminal(usize),
}

impl Pokes {
    /// The log of `partition` moved to `cursor`: its subscribers' streams
    /// send a poke (unless they have sent a later one).
    pub fn notify(&self, partition: &Partition, cursor: u64) {
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(partition) {
            tx.send_if_modified(|c| {
                let newer = cursor > *c;
                if newer {
                    *c = cursor;
                }
                newer
            });
        }
    }

    /// Streams open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::SeqCst)
    }

    /// Ends every stream (shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    fn subscribe(
        self: &Arc<Self>,
        ctx: &TerminalContext,
        max: usize,
        per_terminal: usize,
    ) -> Result<Subscription, Full> {
        let key = (ctx.tenant.clone(), ctx.branch.clone(), ctx.terminal.clone());
        let mut terminals = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        if max > 0 && self.subscribers.load(Ordering::SeqCst) >= max {
            return Err(Full::Server(max));
        }
        let n = terminals.entry(key.clone()).or_insert(0);
        if per_terminal > 0 && *n >= per_terminal {
            return Err(Full::Terminal(per_terminal));
        }
        *n += 1;
        self.subscribers.fetch_add(1, Ordering::SeqCst);
        drop(terminals);
        let partition = ctx.partition();
        let rx = self
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(partition.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Ok(Subscription {
            hub: Arc::clone(self),
            partition,
            terminal: key,
            rx: Some(rx),
        })
    }
}

/// One open stream's place in the hub; leaves it when dropped.
struct Subscription {
    hub: Arc<Pokes>,
    partition: Partition,
    terminal: (String, String, String),
    rx: Option<watch::Receiver<u64>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        {
            let mut map = self
                .hub
                .partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map
                .get(&self.partition)
                .is_some_and(|tx| tx.receiver_count() == 0)
            {
                map.remove(&self.partition);
            }
        }
        let mut terminals = self.hub.terminals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = terminals.get_mut(&self.terminal) {
            *n -= 1;
            if *n == 0 {
                terminals.remove(&self.terminal);
            }
        }
        self.hub.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn event(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The heartbeat a stream uses: the configured one, kept under half the
/// idle timeout so that the connection's idle deadline never fires on a
/// live stream.
pub(super) fn heartbeat(app: &AppState) -> Duration {
    let mut hb = app.config.events_heartbeat.max(Duration::from_millis(100));
    if !app.config.idle_timeout.is_zero() {
        hb = hb.min(app.config.idle_timeout / 2);
    }
    hb.max(Duration::from_millis(50))
}

struct Stream {
    sub: Subscription,
    sent: u64,
    ready: Option<Bytes>,
    ticker: tokio::time::Interval,
    end: tokio::time::Instant,
    closed: watch::Receiver<bool>,
}

/// `GET /v1/events`.
pub(super) async fn events(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers, client).await?;
    let sub = app
        .pokes
        .subscribe(
            &ctx,
            app.config.events_max_subscribers,
            app.config.events_per_terminal,
        )
        .map_err(|full| {
            let (status, code, message, retry) = match full {
                Full::Server(n) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Internal,
                    format!(
                        "events: {n} streams are open, the most this server takes; retry later"
                    ),
                    30,
                ),
                Full::Terminal(n) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::SyncRateLimited,
                    format!("events: this terminal has {n} streams open, the most it may"),
                    30,
                ),
            };
            let mut e = ApiError::new(ServiceError::new(code, message), &log);
            e.status = Some(status);
            e.retry_after_secs = Some(retry);
            e
        })?;
    // Subscribed before the head is read: a write in between is a poke.
    let c = ctx.clone();
    let head = app
        .blocking(move |app| app.service.head(&c))
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    let hb = heartbeat(&app);
    let ready = event(
        "ready",
        &serde_json::json!({"cursor": head.0, "heartbeat_ms": hb.as_millis() as u64}),
    );
    let max_age = if app.config.events_max_age.is_zero() {
        Duration::from_secs(86_400 * 365)
    } else {
        app.config.events_max_age
    };
    let now = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval_at(now + hb, hb);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Stream {
        sub,
        sent: head.0,
        ready: Some(ready),
        ticker,
        end: now + max_age,
        closed: app.pokes.closed.subscribe(),
    };
    tracing::debug!(terminalId = %ctx.terminal, branchId = %ctx.branch, "live channel opened");
    let body = futures::stream::unfold(state, |mut s| async move {
        if let Some(ready) = s.ready.take() {
            return Some((Ok::<_, std::io::Error>(ready), s));
        }
        if *s.closed.borrow() {
            return None;
        }
        loop {
            let rx = s.sub.rx.as_mut()?;
            tokio::select! {
                () = tokio::time::sleep_until(s.end) => return None,
                _ = s.closed.changed() => return None,
                changed = rx.changed() => {
                    changed.ok()?;
                    let cursor = *rx.borrow_and_update();
                    if cursor > s.sent {
                        s.sent = cursor;
                        let poke = event("poke", &serde_json::json!({"cursor": cursor}));
                        return Some((Ok(poke), s));
                    }
                }
                _ = s.ticker.tick() => {
                    return Some((Ok(event("ping", &serde_json::json!({}))), s));
                }
            }
        }
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies (nginx) must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.extensions_mut().insert(log);
    Ok(resp)
}
