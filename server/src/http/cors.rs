//! CORS for the origins the operator allows (`--cors-origin`, repeatable;
//! none by default: same-origin pages only).
//!
//! * A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   of a `/v1` path from an allowed origin is answered `204` here, before
//!   the gate: it carries no credential, does no storage work and is not
//!   charged to its address's limit of failed authentications. From any
//!   other origin it is answered `204` without CORS headers (the browser
//!   then refuses the request).
//! * Every other response to a request from an allowed origin (errors,
//!   `401` and `429` included) carries `Access-Control-Allow-Origin` (the
//!   origin itself, with `Vary: Origin`) and exposes `Retry-After` and
//!   `WWW-Authenticate`, so the client can read them. A request from an
//!   origin not allowed gets no CORS headers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Methods of the `/v1` endpoints.
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";

/// Request headers a client may send: the bearer key, the branch header,
/// JSON bodies (and compressed ones).
pub const ALLOW_HEADERS: &str =
    "authorization, content-type, content-encoding, accept, x-tidesync-branch, x-tidesync-terminal";

/// Response headers the client reads besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "retry-after, www-authenticate";

/// How long a browser may cache a preflight (s).
pub const MAX_AGE_SECS: u32 = 600;

/// An origin as `--cors-origin` takes it: `scheme://host[:port]`, no path;
/// a trailing `/` is dropped. The error says what is wrong.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{text:?}: an origin is scheme://host[:port]"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{text:?}: an origin is scheme://host[:port], without path, query or user"
        ));
    }
    Ok(origin.to_ascii_lowercase())
}

fn allowed<'a>(app: &AppState, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    app.config
        .cors_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The middleware (outside the gate: see the module's doc).
pub(super) async fn cors(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if app.config.cors_origins.is_empty() {
        return next.run(req).await;
    }
    let origin = allowed(&app, req.headers()).cloned();
    if is_preflight(&req) && req.uri().path().starts_with("/v1/") {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(MAX_AGE_SECS),
            );
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            parse_origin("https://App.example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:5173").unwrap(),
            "http://127.0.0.1:5173"
        );
        for bad in [
            "app.example.com",
            "ftp://x",
            "https://x/path",
            "https://",
            "*",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
