//! The HTTP face of the server (PROTOCOL.md documents the wire format).
//!
//! Every `/v1` request goes through the same gate, in this order:
//! credential (401), branch header (403), rate limit (429), body size
//! (413), decoding and validation (400), then the [`SyncService`] call on a
//! blocking worker (bounded by a semaphore). Errors are JSON
//! [`tidesync::ErrorBody`]s with the status of their code.

mod limits;
mod stats;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tidesync::{
    AckResult, ChangesRequest, EntityKey, ErrorCode, PushRequest, ReconcileRequest, SnapshotRequest,
};
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

pub use self::limits::{InFlight, InFlightGuard, RateLimiter};
pub use self::stats::HttpStats;
use crate::auth::{self, AuthFailure};
use crate::context::TerminalContext;
use crate::decode::decode_json;
use crate::error::ServiceError;
use crate::service::SyncService;
use crate::storage::{Backend, Partition, ServerStore};

use tidesync::env::unix_now_ms;
use tidesync::transport::http;
/// The header a client may send to name the branch it means to sync; a
/// branch other than its credential's is refused with 403.
pub use tidesync::transport::http::BRANCH_HEADER;

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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 4 * 1024 * 1024,
            rate_per_sec: 50.0,
            burst: 100.0,
            storage_workers: 16,
            default_page: 500,
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
    /// Op ids being processed.
    pub in_flight: InFlight,
    /// HTTP counters.
    pub stats: HttpStats,
    workers: Arc<Semaphore>,
}

impl AppState {
    /// State for `service` with `config`.
    pub fn new(service: SyncService<Backend>, config: HttpConfig) -> Arc<Self> {
        Arc::new(AppState {
            limiter: RateLimiter::new(config.rate_per_sec, config.burst),
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

/// What a request's log line carries besides route, status and latency.
/// Never payload contents, never credentials (only the key id).
#[derive(Clone, Debug, Default)]
struct LogFields {
    terminal: Option<String>,
    branch: Option<String>,
    key_id: Option<String>,
    attempt: Option<u32>,
    mutations: Option<usize>,
    error_code: Option<ErrorCode>,
}

/// A failed request: the error, and what to log about it.
#[derive(Debug)]
struct ApiError {
    error: ServiceError,
    retry_after_secs: Option<u64>,
    log: LogFields,
}

impl ApiError {
    fn new(error: ServiceError, log: &LogFields) -> Self {
        ApiError {
            error,
            retry_after_secs: None,
            log: log.clone(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::new(error, &LogFields::default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.error.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.error.code == ErrorCode::SyncUnauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(detail) = &self.error.detail {
            tracing::error!(errorCode = %self.error.code, detail = %detail, "request failed");
        }
        let mut log = self.log;
        log.error_code = Some(self.error.code);
        resp.extensions_mut().insert(log);
        resp
    }
}

fn ok<T: serde::Serialize>(value: T, log: LogFields) -> Response {
    let mut resp = Json(value).into_response();
    resp.extensions_mut().insert(log);
    resp
}

/// The routes, with compression, request decompression and logging.
pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route(http::PUSH_PATH, post(push))
        .route(http::CHANGES_PATH, get(changes))
        .route(http::SNAPSHOT_PATH, get(snapshot))
        .route(http::RECONCILE_PATH, post(reconcile))
        .route(http::HEALTH_PATH, get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(RequestDecompressionLayer::new())
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting connections and waits for the requests in progress to finish
/// (each mutation is its own transaction: nothing is left half-applied).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
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

fn route_name(path: &str) -> &'static str {
    match path {
        "/v1/mutations" => "mutations",
        "/v1/changes" => "changes",
        "/v1/snapshot" => "snapshot",
        "/v1/reconcile" => "reconcile",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

async fn observe(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_name(req.uri().path());
    let started = Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    app.stats.request(route, status, took);
    if matches!(route, "health" | "metrics") && status < 400 {
        return resp;
    }
    let f = resp
        .extensions()
        .get::<LogFields>()
        .cloned()
        .unwrap_or_default();
    let code = f.error_code.map(ErrorCode::as_str);
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                route,
                status,
                latencyMs = took.as_secs_f64() * 1000.0,
                terminalId = f.terminal.as_deref(),
                branchId = f.branch.as_deref(),
                keyId = f.key_id.as_deref(),
                syncAttempt = f.attempt,
                mutations = f.mutations,
                errorCode = code,
                "request"
            )
        };
    }
    match status {
        500.. => line!(error),
        400..=499 => line!(warn),
        _ => line!(info),
    }
    resp
}

async fn not_found() -> ApiError {
    ServiceError::new(ErrorCode::NotFound, "no such endpoint").into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The gate of every `/v1` request: credential, branch, rate limit.
async fn authorize(
    app: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<(TerminalContext, LogFields), ApiError> {
    let mut log = LogFields::default();
    let key = bearer(headers).map(str::to_owned);
    let verdict = app
        .blocking(move |app| auth::verify(app.service.store(), key.as_deref(), unix_now_ms()))
        .await?
        .map_err(|e| ApiError::new(e.into(), &log))?;
    let credential = match verdict {
        Ok(c) => c,
        Err(failure) => {
            app.stats.auth_failure(failure.as_str());
            let message = match failure {
                AuthFailure::Missing => "an Authorization: Bearer <key> header is required",
                AuthFailure::Invalid => "the key is not valid",
                AuthFailure::Expired => "the key has expired",
                AuthFailure::Revoked => "the key has been revoked",
            };
            return Err(ApiError::new(
                ServiceError::new(ErrorCode::SyncUnauthorized, message),
                &log,
            ));
        }
    };
    let ctx = credential.context;
    log.terminal = Some(ctx.terminal.clone());
    log.branch = Some(ctx.branch.clone());
    log.key_id = Some(credential.key_id);
    if let Some(branch) = headers.get(BRANCH_HEADER) {
        if branch.as_bytes() != ctx.branch.as_bytes() {
            return Err(ApiError::new(
                ServiceError::new(
                    ErrorCode::SyncForbidden,
                    "x-tidesync-branch: the credential does not grant this branch",
                ),
                &log,
            ));
        }
    }
    if let Err(wait) = app.limiter.check(&ctx) {
        app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = retry_after_secs(wait);
        let mut err = ApiError::new(
            ServiceError::new(
                ErrorCode::SyncRateLimited,
                format!("too many requests from this terminal; retry after {secs} s"),
            ),
            &log,
        );
        err.retry_after_secs = Some(secs);
        return Err(err);
    }
    Ok((ctx, log))
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Reads and decodes a JSON body; errors name the offending field.
async fn read_json<T: DeserializeOwned>(
    app: &AppState,
    body: Body,
    log: &LogFields,
) -> Result<T, ApiError> {
    let limit = app.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let error = if is_length_limit(&e) {
            ServiceError::new(
                ErrorCode::PayloadTooLarge,
                format!("body: larger than the limit of {limit} bytes"),
            )
        } else {
            ServiceError::invalid("body", "could not be read (bad encoding?)")
        };
        ApiError::new(error, log)
    })?;
    decode_json(&bytes).map_err(|e| ApiError::new(e, log))
}

async fn push(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (ctx, mut log) = authorize(&app, &headers).await?;
    let req: PushRequest = read_json(&app, body, &log).await?;
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

fn query_error(rejection: &QueryRejection, log: &LogFields) -> ApiError {
    // serde_urlencoded's message names the parameter.
    let text = rejection.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::new(ServiceError::invalid("query", text), log)
}

/// Query of `GET /v1/changes`.
#[derive(Debug, Deserialize)]
struct ChangesQuery {
    since: Option<u64>,
    limit: Option<u32>,
}

async fn changes(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers).await?;
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
struct SnapshotQuery {
    after_collection: Option<String>,
    after_id: Option<String>,
    limit: Option<u32>,
}

async fn snapshot(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<SnapshotQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers).await?;
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
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (ctx, log) = authorize(&app, &headers).await?;
    let req: ReconcileRequest = read_json(&app, body, &log).await?;
    let resp = app
        .blocking(move |app| app.service.reconcile(&ctx, req))
        .await
        .and_then(|r| r)
        .map_err(|e| ApiError::new(e, &log))?;
    Ok(ok(resp, log))
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let probe = Partition::new("", "");
    let res = app
        .blocking(move |app| app.service.store().head(&probe))
        .await;
    let backend = app.service.store().kind();
    match res {
        Ok(Ok(_)) => Json(serde_json::json!({"status": "ok", "backend": backend})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "backend": backend})),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let text = app
        .stats
        .render(&app.service.metrics(), app.service.store().kind());
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
