//! The HTTP face of the server (PROTOCOL.md documents the wire format).
//!
//! Every `/v1` request goes through the same gate (`gate.rs`), in this order:
//! credential (401, or 429 when its address has failed too often), branch
//! header (403), rate limit (429), body size (413), decoding and validation
//! (400), then the [`SyncService`] call on a blocking worker (bounded by a
//! semaphore). Authentication comes before load: a key of the wrong shape,
//! a key storage refused a moment ago (`keys.rs`) and a request from an
//! address over its limit of failed authentications are answered without
//! any storage work. `/health` never touches storage; `/ready` does.
//! Errors are JSON [`tidesync::ErrorBody`]s with the status of their code.
//! CORS (`cors.rs`) wraps it all: preflights of allowed origins are answered
//! before the gate.

mod conn;
pub mod cors;
mod events;
mod gate;
mod keys;
mod limits;
mod response;
mod stats;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tidesync::{
    AckResult, ChangesRequest, EntityKey, ErrorCode, PairRequest, PairResponse, PushRequest,
    ReconcileRequest, SnapshotRequest,
};
use tokio::sync::Semaphore;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::decompression::RequestDecompressionLayer;

use self::conn::Peer;
pub use self::events::Pokes;
use self::gate::{authorize, authorize_credential, query_error, read_json, read_json_within};
pub use self::keys::KeyMemory;
pub use self::limits::{AuthFailureLimiter, ClientKey, InFlight, InFlightGuard, RateLimiter};
use self::response::{json_refusals, observe, ok, ApiError};
pub use self::stats::HttpStats;
use crate::error::ServiceError;
use crate::service::SyncService;
use crate::storage::{Backend, Partition, ServerStore};

use tidesync::transport::http;
/// The readiness probe: answers `200` once storage answers (through the
/// storage workers), `503` if it does not within [`READY_TIMEOUT`].
pub const READY_PATH: &str = "/ready";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// Every path the router serves (the metrics labels are checked against it).
pub const ROUTER_PATHS: &[&str] = &[
    http::PUSH_PATH,
    http::CHANGES_PATH,
    http::SNAPSHOT_PATH,
    http::RECONCILE_PATH,
    http::EVENTS_PATH,
    http::WHOAMI_PATH,
    http::PAIR_PATH,
    http::HEALTH_PATH,
    READY_PATH,
    METRICS_PATH,
];

/// How long `/ready` waits for storage (a free worker included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The header a client may send to name the branch it means to sync; a
/// branch other than its credential's is refused with 403.
pub use tidesync::transport::http::{BRANCH_HEADER, TERMINAL_HEADER};

/// Limits of the HTTP layer.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Largest request body, in bytes (after decompression); more is 413.
    pub max_body_bytes: usize,
    /// Requests per second per terminal (token refill rate); 0 disables.
    pub rate_per_sec: f64,
    /// Token bucket size per terminal.
    pub burst: f64,
    /// Storage calls running at once (blocking workers).
    pub storage_workers: usize,
    /// Default page size of changes and snapshot when `limit` is absent.
    pub default_page: u32,
    /// Most connections open at once; a connection over it is answered
    /// `503` (JSON body, `Retry-After: 1`) and closed. 0: no cap.
    pub max_connections: usize,
    /// A connection that sends nothing for this long since it was accepted
    /// or since its last response is closed. Zero: never.
    pub idle_timeout: Duration,
    /// Once a request's first byte has arrived, its headers must be
    /// complete within this; else the connection is closed. Zero: no limit.
    pub header_timeout: Duration,
    /// A request body must arrive within this, counted from when the
    /// handler starts reading it; else `408` (JSON body). Zero: no limit.
    pub body_timeout: Duration,
    /// Failed authentications per second per client address (token
    /// refill rate); over it, `/v1` requests from the address whose key is
    /// not known to be valid are `429` without a storage lookup. 0 disables.
    pub auth_failure_rate: f64,
    /// Failed authentications in a burst per client address (bucket size).
    pub auth_failure_burst: f64,
    /// How long a key storage refused is refused again without a lookup
    /// (the negative cache). A key issued after it was refused works once
    /// this has passed. Zero: no negative cache.
    pub unknown_key_ttl: Duration,
    /// Origins whose pages may call the API cross-origin (CORS), each
    /// `scheme://host[:port]` as [`cors::parse_origin`] gives it; empty:
    /// same-origin pages only (no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Live channel (`GET /v1/events`): streams open at once, at most
    /// (more are `503`); keep it well under `max_connections`. 0: no cap.
    pub events_max_subscribers: usize,
    /// Streams of one terminal at once, at most (more are `429`). 0: no cap.
    pub events_per_terminal: usize,
    /// How often a stream sends a heartbeat (kept under half the idle
    /// timeout).
    pub events_heartbeat: Duration,
    /// A stream ends after this long; the client reconnects. Zero: never.
    pub events_max_age: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 4 * 1024 * 1024,
            rate_per_sec: 50.0,
            burst: 100.0,
            storage_workers: 16,
            default_page: 500,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            auth_failure_rate: 1.0,
            auth_failure_burst: 20.0,
            unknown_key_ttl: Duration::from_secs(10),
            cors_origins: Vec::new(),
            events_max_subscribers: 1024,
            events_per_terminal: 4,
            events_heartbeat: Duration::from_secs(15),
            events_max_age: Duration::from_secs(300),
        }
    }
}

/// Shared state of the HTTP server.
#[derive(Debug)]
pub struct AppState {
    /// The protocol logic and its store.
    pub service: SyncService<Backend>,
    /// The limits.
    pub config: HttpConfig,
    /// Per-terminal rate limiter.
    pub limiter: RateLimiter,
    /// Per-address limit on failed authentications.
    pub auth_failures: AuthFailureLimiter,
    /// Keys recently refused and accepted (by hash).
    pub keys: KeyMemory,
    /// Op ids being processed.
    pub in_flight: InFlight,
    /// HTTP counters.
    pub stats: HttpStats,
    /// The live channel's subscribers, poked when their branch's log moves.
    pub pokes: Arc<Pokes>,
    workers: Arc<Semaphore>,
}

impl AppState {
    /// State for `service` with `config`.
    pub fn new(service: SyncService<Backend>, config: HttpConfig) -> Arc<Self> {
        let pokes = Arc::new(Pokes::default());
        // Several server processes on one PostgreSQL: a write on any of
        // them pokes this one's subscribers (LISTEN/NOTIFY). The listener
        // holds the hub weakly: it ends with the server.
        let weak = Arc::downgrade(&pokes);
        service
            .store()
            .watch_changes(Box::new(move |partition, cursor| {
                if let Some(p) = weak.upgrade() {
                    p.notify(partition, cursor.0);
                }
            }));
        Arc::new(AppState {
            pokes,
            limiter: RateLimiter::new(config.rate_per_sec, config.burst),
            auth_failures: AuthFailureLimiter::new(
                config.auth_failure_rate,
                config.auth_failure_burst,
            ),
            keys: KeyMemory::new(config.unknown_key_ttl),
            workers: Arc::new(Semaphore::new(config.storage_workers.max(1))),
            service,
            config,
            in_flight: InFlight::default(),
            stats: HttpStats::default(),
        })
    }

    /// Runs a storage call on a blocking worker once one is free. The permit
    /// (and whatever `f` owns, e.g. an [`InFlightGuard`]) is held until the
    /// call is over, even if the client goes away.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AppState) -> R + Send + 'static,
    ) -> Result<R, ServiceError> {
        let permit = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::new(ErrorCode::Internal, "server is shutting down"))?;
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let busy = app.stats.storage_busy.fetch_add(1, Ordering::SeqCst) + 1;
            app.stats.storage_busy_max.fetch_max(busy, Ordering::SeqCst);
            let out = f(&app);
            app.stats.storage_busy.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(|_| ServiceError::new(ErrorCode::Internal, "internal error"))
    }
}

/// The routes, with compression, request decompression and logging. Each
/// is documented in `docs/openapi.json` (`crate::openapi`, whose test lists
/// these paths).
pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route(http::PUSH_PATH, post(push))
        .route(http::CHANGES_PATH, get(changes))
        .route(http::SNAPSHOT_PATH, get(snapshot))
        .route(http::RECONCILE_PATH, post(reconcile))
        .route(http::EVENTS_PATH, get(events::events))
        .route(http::WHOAMI_PATH, get(whoami))
        .route(http::PAIR_PATH, post(pair))
        .route(http::HEALTH_PATH, get(health))
        .route(READY_PATH, get(ready))
        .route(METRICS_PATH, get(metrics))
        .fallback(not_found)
        // The fastest level: sync bodies are JSON, which compresses well
        // even so, and brotli's default level cost about a quarter of the
        // server's CPU while serving a first sync (perf, bench/node).
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .quality(CompressionLevel::Fastest),
        )
        .layer(RequestDecompressionLayer::new())
        // Outside the decompression and compression layers, so that their
        // refusals (415) get a JSON body and are counted and logged too.
        .layer(middleware::from_fn(json_refusals))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        // CORS outside the gate and the counters: a preflight is answered
        // here, with no credential and no charge to the address's limit of
        // failed authentications; every other response gets its headers.
        .layer(middleware::from_fn_with_state(Arc::clone(&app), cors::cors))
        // Outermost: a request is in progress (its connection's idle and
        // header deadlines stopped) until it has its response.
        .layer(middleware::from_fn(conn::track_requests))
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting connections and waits for the requests in progress to finish
/// (each mutation is its own transaction: nothing is left half-applied).
/// Connections are capped and slow ones closed as [`HttpConfig`] says.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = conn::GuardedListener::new(listener, Arc::clone(&app));
    let pokes = Arc::clone(&app.pokes);
    let service = router(app).into_make_service_with_connect_info::<conn::Conn>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Live streams never finish by themselves: end them, or the
            // graceful shutdown would wait for them.
            pokes.close();
        })
        .await
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in progress");
}

async fn not_found() -> ApiError {
    ServiceError::new(ErrorCode::NotFound, "path: no such endpoint").into()
}

async fn push(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (ctx, mut log) = authorize(&app, &headers, client).await?;
    let req: PushRequest = read_json(&app, &headers, body, &log).await?;
    log.attempt = Some(req.attempt);
    log.mutations = Some(req.mutations.len());
    app.stats
        .mutations_received
        .fetch_add(req.mutations.len() as u64, Ordering::Relaxed);
    let guard = match app
        .in_flight
        .claim(&ctx, req.mutations.iter().map(|m| &m.op_id))
    {
        Ok(g) => g,
        Err(op) => {
            app.stats.in_flight_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                eventId = %op,
                terminalId = %ctx.terminal,
                branchId = %ctx.branch,
                syncAttempt = req.attempt,
                errorCode = ErrorCode::EventInFlight.as_str(),
                "op already in flight"
            );
            return Err(ApiError::new(
                ServiceError::new(
                    ErrorCode::EventInFlight,
                    format!("op_id: {op} is being processed by another request; retry later"),
                ),
                &log,
            ));
        }
    };
    let attempt = req.attempt;
    let c = ctx.clone();
    let resp = app
        .blocking(move |app| {
            let _guard = guard;
            app.service.push(&c, req)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    let moved = resp
        .acks
        .iter()
        .filter_map(|a| match a.result {
            AckResult::Applied { cursor, .. } => Some(cursor.0),
            _ => None,
        })
        .max();
    if let Some(cursor) = moved {
        app.pokes.notify(&ctx.partition(), cursor);
    }
    for ack in &resp.acks {
        let (t, b) = (ctx.terminal.as_str(), ctx.branch.as_str());
        match &ack.result {
            AckResult::Applied { .. } | AckResult::Duplicate { .. } => tracing::debug!(
                eventId = %ack.op_id, terminalId = t, branchId = b, syncAttempt = attempt,
                "mutation acknowledged"
            ),
            AckResult::Conflict { .. } => tracing::info!(
                eventId = %ack.op_id, terminalId = t, branchId = b, syncAttempt = attempt,
                errorCode = ErrorCode::Conflict.as_str(), "mutation conflict"
            ),
            AckResult::Rejected { code, .. } => tracing::warn!(
                eventId = %ack.op_id, terminalId = t, branchId = b, syncAttempt = attempt,
                errorCode = code.as_str(), "mutation rejected"
            ),
        }
    }
    Ok(ok(resp, log))
}

/// Query of `GET /v1/changes`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct ChangesQuery {
    /// Changes strictly after this cursor (default 0); ahead of the log is 410 CURSOR_UNKNOWN.
    since: Option<u64>,
    /// At most this many (default --default-page); clamped to 1..=--max-changes-page.
    limit: Option<u32>,
}

async fn changes(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers, client).await?;
    let Query(q) = query.map_err(|r| query_error(&r, &log))?;
    let req = ChangesRequest {
        since: tidesync::Cursor(q.since.unwrap_or(0)),
        limit: q.limit.unwrap_or(app.config.default_page),
    };
    let page = app
        .blocking(move |app| app.service.changes(&ctx, req))
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    Ok(ok(page, log))
}

/// Query of `GET /v1/snapshot`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct SnapshotQuery {
    /// With after_id: continue strictly after this key (a collection name).
    #[cfg_attr(feature = "openapi", schemars(extend("pattern" = "^[a-z][a-z0-9_-]{0,63}$")))]
    after_collection: Option<String>,
    /// With after_collection: continue strictly after this key (an entity
    /// id: 1 to 128 bytes of UTF-8, no control character).
    #[cfg_attr(
        feature = "openapi",
        schemars(extend("minLength" = 1, "maxLength" = 128, "pattern" = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))
    )]
    after_id: Option<String>,
    /// At most this many (default --default-page); clamped to 1..=--max-snapshot-page.
    limit: Option<u32>,
}

async fn snapshot(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
    query: Result<Query<SnapshotQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers, client).await?;
    let Query(q) = query.map_err(|r| query_error(&r, &log))?;
    let after = match (q.after_collection, q.after_id) {
        (Some(c), Some(id)) => Some(EntityKey::new(c, id)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ApiError::new(
                ServiceError::invalid("after_id", "is required with after_collection"),
                &log,
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::new(
                ServiceError::invalid("after_collection", "is required with after_id"),
                &log,
            ))
        }
    };
    let req = SnapshotRequest {
        after,
        limit: q.limit.unwrap_or(app.config.default_page),
    };
    let page = app
        .blocking(move |app| app.service.snapshot(&ctx, req))
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    Ok(ok(page, log))
}

async fn reconcile(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers, client).await?;
    let req: ReconcileRequest = read_json(&app, &headers, body, &log).await?;
    let resp = app
        .blocking(move |app| app.service.reconcile(&ctx, req))
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    Ok(ok(resp, log))
}

/// What the presented key was issued for: its tenant, branch, terminal, key
/// id and expiry (never the key or its hash). The gate is the other
/// endpoints' (401, 429, and 403 when a branch or terminal header is sent
/// and is not the key's), but the headers are not needed: a client asks
/// this to learn them. Storage work: the credential lookup only.
async fn whoami(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (credential, log) = authorize_credential(&app, &headers, client).await?;
    Ok(ok(credential.identity(), log))
}

/// The largest `POST /v1/pair` body: it needs no key, so anyone may send
/// one, and a code is 64 characters.
pub const PAIR_MAX_BODY_BYTES: usize = 1024;

/// Redeems a one-time pairing code for a new API key of its terminal (no
/// `Authorization`; the code is the credential). The new key does not
/// expire (an ordinary key, valid until revoked; the code's expiry bounds
/// the code only). A refused code is 401 with one message and counts as a
/// failed authentication of the address (429 once over the limit); see
/// `gate::redeem`. Never logs the code or the key, only the new key's id.
async fn pair(
    State(app): State<Arc<AppState>>,
    Peer(client): Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut log = response::LogFields::default();
    let limit = PAIR_MAX_BODY_BYTES.min(app.config.max_body_bytes);
    let req: PairRequest = read_json_within(&app, &headers, body, &log, limit).await?;
    let (api_key, credential) = gate::redeem(&app, req.code, client, &log).await?;
    log.terminal = Some(credential.context.terminal.clone());
    log.branch = Some(credential.context.branch.clone());
    log.key_id = Some(credential.key_id.clone());
    tracing::info!(
        keyId = %credential.key_id,
        terminalId = %credential.context.terminal,
        branchId = %credential.context.branch,
        "pairing code redeemed for a new key"
    );
    let identity = credential.identity();
    let mut resp = ok(PairResponse { api_key, identity }, log);
    // It carries a key: no cache or proxy keeps it.
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// Liveness: the process answers HTTP. No storage work, so it answers
/// while every storage worker is busy.
async fn health(State(app): State<Arc<AppState>>) -> Response {
    let backend = app.service.store().kind();
    Json(serde_json::json!({"status": "ok", "backend": backend})).into_response()
}

/// Readiness: storage answers a query (through the storage workers) within
/// [`READY_TIMEOUT`].
async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let probe = Partition::new("", "");
    let res = tokio::time::timeout(
        READY_TIMEOUT,
        app.blocking(move |app| app.service.store().head(&probe)),
    )
    .await;
    let backend = app.service.store().kind();
    match res {
        Ok(Ok(Ok(_))) => {
            Json(serde_json::json!({"status": "ok", "backend": backend})).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "backend": backend})),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let mut text = app
        .stats
        .render(&app.service.metrics(), app.service.store().kind());
    text.push_str(&format!(
        "# HELP tidesync_events_subscribers Live streams (GET /v1/events) open now.\n\
         # TYPE tidesync_events_subscribers gauge\ntidesync_events_subscribers {}\n",
        app.pokes.subscribers()
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How long [`RateLimiter`] asks a client to wait, rounded up to seconds as
/// `Retry-After` carries them.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
