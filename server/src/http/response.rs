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
    /// Logged at debug level only: a refusal a flood produces by the
    /// thousand (an address over its limit of failed authentications),
    /// which the metrics count.
    pub(super) quiet: bool,
}

/// A failed request: the error, and what to log about it.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) error: ServiceError,
    pub(super) retry_after_secs: Option<u64>,
    /// A status other than the code's (408 for a body that came too late).
    pub(super) status: Option<StatusCode>,
    pub(super) log: LogFields,
}

impl ApiError {
    pub(super) fn new(error: ServiceError, log: &LogFields) -> Self {
        ApiError {
            error,
            retry_after_secs: None,
            status: None,
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
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
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

/// Gives every refusal that did not come from a handler (axum's 405, the
/// request decompression's 415, a timeout's 408, …) the JSON error body of
/// the protocol: `{"code", "message"}`, the status kept. Handler errors
/// ([`ApiError`]) are JSON already and pass through.
pub(super) async fn json_refusals(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if status.as_u16() < 400 || is_json(&resp) {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "path: no such endpoint".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = resp
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                ErrorCode::NotFound,
                format!("method: {method} is not allowed on {path} (allowed: {allowed})"),
            )
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::EventInvalid,
            "content-encoding: not supported (send gzip, br or identity)".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "body: larger than the server's limit".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::EventInvalid,
            "body: not received in time".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            ErrorCode::Internal,
            "server: overloaded; retry later".to_owned(),
        ),
        s if s.is_client_error() => (
            ErrorCode::EventInvalid,
            format!("request: refused ({})", s.as_u16()),
        ),
        s => (
            ErrorCode::Internal,
            format!("server: internal error ({})", s.as_u16()),
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    let body = serde_json::to_vec(&tidesync::ErrorBody { code, message })
        .expect("an error body serialises");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut log = parts
        .extensions
        .get::<LogFields>()
        .cloned()
        .unwrap_or_default();
    log.error_code = Some(code);
    parts.extensions.insert(log);
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

pub(super) fn ok<T: serde::Serialize>(value: T, log: LogFields) -> Response {
    let mut resp = Json(value).into_response();
    resp.extensions_mut().insert(log);
    resp
}

/// The metrics label of a route: every path the router serves has its own
/// (the router's own constants, so that a new route cannot fall into
/// `other`, as the live channel once did).
fn route_name(path: &str) -> &'static str {
    use tidesync::transport::http as p;
    match path {
        p::PUSH_PATH => "mutations",
        p::CHANGES_PATH => "changes",
        p::SNAPSHOT_PATH => "snapshot",
        p::RECONCILE_PATH => "reconcile",
        p::EVENTS_PATH => "events",
        p::WHOAMI_PATH => "whoami",
        p::PAIR_PATH => "pair",
        p::HEALTH_PATH => "health",
        super::READY_PATH => "ready",
        super::METRICS_PATH => "metrics",
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
    if matches!(route, "health" | "ready" | "metrics") && status < 400 {
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
        _ if f.quiet => line!(debug),
        500.. => line!(error),
        400..=499 => line!(warn),
        _ => line!(info),
    }
    resp
}

#[cfg(test)]
mod route_tests {
    #[test]
    fn every_route_of_the_router_has_its_own_metrics_label() {
        let mut seen = std::collections::BTreeSet::new();
        for path in super::super::ROUTER_PATHS {
            let name = super::route_name(path);
            assert_ne!(name, "other", "{path} is counted as other");
            assert!(seen.insert(name), "{path}: label {name} used twice");
        }
        assert_eq!(super::route_name("/nope"), "other");
    }
}
