//! What every response carries: JSON errors with the status of their code
//! ([`ApiError`]), the fields of its log line ([`LogFields`]), and the
//! middleware that counts, times and logs each request ([`observe`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidesync::ErrorCode;

use super::AppState;
use crate::error::ServiceError;

/// What a request's log line carries besides route, status and latency.
/// Never payload contents, never credentials (only the key id).
#[derive(Clone, Debug, Default)]
pub(super) struct LogFields {
    pub(super) terminal: Option<String>,
    pub(super) branch: Option<String>,
    pub(super) key_id: Option<String>,
    pub(super) attempt: Option<u32>,
    pub(super) mutations: Option<usize>,
    pub(super) error_code: Option<ErrorCode>,
}

/// A failed request: the error, and what to log about it.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) error: ServiceError,
    pub(super) retry_after_secs: Option<u64>,
    pub(super) log: LogFields,
}

impl ApiError {
    pub(super) fn new(error: ServiceError, log: &LogFields) -> Self {
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

pub(super) fn ok<T: serde::Serialize>(value: T, log: LogFields) -> Response {
    let mut resp = Json(value).into_response();
    resp.extensions_mut().insert(log);
    resp
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

pub(super) async fn observe(
    State(app): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
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
