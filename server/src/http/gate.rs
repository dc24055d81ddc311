//! The gate of every `/v1` request, in this order: credential (401, or 429
//! for an address over its limit of failed authentications), branch header
//! (403), rate limit (429), then body size (413) and decoding (400) of the
//! body or query.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tidesync::env::unix_now_ms;
use tidesync::ErrorCode;

use super::response::{ApiError, LogFields};
use super::{retry_after_secs, AppState, ClientKey, BRANCH_HEADER, TERMINAL_HEADER};
use crate::auth::{self, AuthFailure, Credential, PairFailure};
use crate::context::TerminalContext;
use crate::decode::decode_json;
use crate::error::ServiceError;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// A refused credential: 401 with the reason's message.
fn unauthorized(app: &AppState, failure: AuthFailure, log: &LogFields) -> ApiError {
    app.stats.auth_failure(failure.as_str());
    let message = match failure {
        AuthFailure::Missing => "an Authorization: Bearer <key> header is required",
        AuthFailure::Invalid => "the key is not valid",
        AuthFailure::Expired => "the key has expired",
        AuthFailure::Revoked => "the key has been revoked",
    };
    ApiError::new(ServiceError::new(ErrorCode::SyncUnauthorized, message), log)
}

/// An address over its limit of failed authentications: 429.
fn too_many_failures(app: &AppState, wait: std::time::Duration, log: &LogFields) -> ApiError {
    app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
    app.stats.auth_rate_limited.fetch_add(1, Ordering::Relaxed);
    let secs = retry_after_secs(wait);
    let mut err = ApiError::new(
        ServiceError::new(
            ErrorCode::SyncRateLimited,
            format!("too many failed authentications from this address; retry after {secs} s"),
        ),
        log,
    );
    err.retry_after_secs = Some(secs);
    err.log.quiet = true;
    err
}

/// The credential step of the gate, authentication before load: a missing
/// or malformed key, and a key storage refused a moment ago, are refused
/// without storage work; a key not known to be valid is looked up only if
/// its address has failed authentications to spare (else 429); a key
/// known to be valid is looked up on every request (revocation and expiry
/// count at once) and is not held up by its address's failures.
async fn authenticate(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    client: ClientKey,
    log: &LogFields,
) -> Result<Credential, ApiError> {
    // Refused without a lookup: charged to the address, 429 once it has
    // failed too often.
    let refuse = |failure: AuthFailure| match app.auth_failures.admit(client) {
        Ok(()) => unauthorized(app, failure, log),
        Err(wait) => too_many_failures(app, wait, log),
    };
    let Some(key) = bearer(headers) else {
        return Err(refuse(AuthFailure::Missing));
    };
    if !auth::well_formed(key) {
        return Err(refuse(AuthFailure::Invalid));
    }
    let digest = auth::key_digest(key);
    let known = app.keys.is_known(&digest);
    if !known {
        if app.keys.is_unknown(&digest) {
            app.stats.auth_unknown_hits.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(AuthFailure::Invalid));
        }
        app.auth_failures
            .admit(client)
            .map_err(|wait| too_many_failures(app, wait, log))?;
    }
    app.stats.auth_lookups.fetch_add(1, Ordering::Relaxed);
    let hash = hex::encode(digest);
    let verdict = app
        .blocking(move |app| auth::verify_hash(app.service.store(), &hash, unix_now_ms()))
        .await
        .and_then(|r| r.map_err(ServiceError::from));
    match verdict {
        Ok(Ok(credential)) => {
            if !known {
                app.auth_failures.refund(client);
            }
            app.keys.accepted(digest);
            Ok(credential)
        }
        Ok(Err(failure)) => {
            app.keys.refused(digest);
            if known {
                app.auth_failures.charge(client);
            }
            Err(unauthorized(app, failure, log))
        }
        Err(e) => {
            // Not the client's failure.
            if !known {
                app.auth_failures.refund(client);
            }
            Err(ApiError::new(e, log))
        }
    }
}

/// The credential step of `POST /v1/pair`, which presents a pairing code
/// instead of a key: a failed redeem (malformed, unknown, used, expired
/// code) is a failed authentication of its address, like a refused key,
/// so codes cannot be guessed any faster than keys. A malformed code is
/// refused without storage work; any other takes a token of its address
/// first (none left: 429 without storage work), given back when the code
/// redeems. Every refusal is 401 with one message; the reason is logged.
pub(super) async fn redeem(
    app: &Arc<AppState>,
    code: String,
    client: ClientKey,
    log: &LogFields,
) -> Result<(String, Credential), ApiError> {
    let refused = |failure: PairFailure| {
        app.stats.auth_failure(failure.as_str());
        tracing::warn!(reason = failure.as_str(), "pairing code refused");
        ApiError::new(
            ServiceError::new(
                ErrorCode::SyncUnauthorized,
                "the pairing code is not valid (unknown, used or expired)",
            ),
            log,
        )
    };
    if !auth::pairing_code_well_formed(&code) {
        return Err(match app.auth_failures.admit(client) {
            Ok(()) => refused(PairFailure::Malformed),
            Err(wait) => too_many_failures(app, wait, log),
        });
    }
    app.auth_failures
        .admit(client)
        .map_err(|wait| too_many_failures(app, wait, log))?;
    app.stats.auth_lookups.fetch_add(1, Ordering::Relaxed);
    let verdict = app
        .blocking(move |app| auth::redeem_pairing_code(app.service.store(), &code, unix_now_ms()))
        .await
        .and_then(|r| r.map_err(ServiceError::from));
    match verdict {
        Ok(Ok(redeemed)) => {
            app.auth_failures.refund(client);
            Ok(redeemed)
        }
        Ok(Err(failure)) => Err(refused(failure)),
        Err(e) => {
            // Not the client's failure.
            app.auth_failures.refund(client);
            Err(ApiError::new(e, log))
        }
    }
}

/// The gate of every `/v1` request: credential, branch, rate limit.
pub(super) async fn authorize(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    client: ClientKey,
) -> Result<(TerminalContext, LogFields), ApiError> {
    let (credential, log) = authorize_credential(app, headers, client).await?;
    Ok((credential.context, log))
}

/// [`authorize`], answering the verified credential itself (for
/// `GET /v1/whoami`, which reports its key id and expiry).
pub(super) async fn authorize_credential(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    client: ClientKey,
) -> Result<(Credential, LogFields), ApiError> {
    let mut log = LogFields::default();
    let credential = authenticate(app, headers, client, &log).await?;
    let ctx = &credential.context;
    log.terminal = Some(ctx.terminal.clone());
    log.branch = Some(ctx.branch.clone());
    log.key_id = Some(credential.key_id.clone());
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
    if let Some(terminal) = headers.get(TERMINAL_HEADER) {
        if terminal.as_bytes() != ctx.terminal.as_bytes() {
            return Err(ApiError::new(
                ServiceError::new(
                    ErrorCode::SyncForbidden,
                    format!(
                        "x-tidesync-terminal: this key was issued for terminal {:?}, not {:?}",
                        ctx.terminal,
                        String::from_utf8_lossy(terminal.as_bytes())
                    ),
                ),
                &log,
            ));
        }
    }
    if let Err(wait) = app.limiter.check(ctx) {
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
    Ok((credential, log))
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

/// Reads and decodes a JSON body; errors name the offending field. A
/// `Content-Length` over the limit is refused before any of the body is
/// read; a body without one is cut off at the limit.
pub(super) async fn read_json<T: DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &LogFields,
) -> Result<T, ApiError> {
    read_json_within(app, headers, body, log, app.config.max_body_bytes).await
}

/// [`read_json`] with a body limit of `limit` bytes (a smaller one for
/// the endpoint that needs no key).
pub(super) async fn read_json_within<T: DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    log: &LogFields,
    limit: usize,
) -> Result<T, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        return Err(ApiError::new(
            ServiceError::new(
                ErrorCode::PayloadTooLarge,
                format!("body: Content-Length {len} is over the limit of {limit} bytes"),
            ),
            log,
        ));
    }
    let read = axum::body::to_bytes(body, limit);
    let within = app.config.body_timeout;
    let read = if within.is_zero() {
        read.await
    } else if let Ok(read) = tokio::time::timeout(within, read).await {
        read
    } else {
        app.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
        let mut err = ApiError::new(
            ServiceError::invalid("body", format_args!("not received within {within:?}")),
            log,
        );
        err.status = Some(StatusCode::REQUEST_TIMEOUT);
        return Err(err);
    };
    let bytes = read.map_err(|e| {
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

/// The query parameters of the `/v1` endpoints.
const QUERY_PARAMETERS: [&str; 4] = ["since", "limit", "after_collection", "after_id"];

/// An undecodable query string: the message starts with the parameter at
/// fault (`since: invalid digit found in string`), or with `query` when the
/// query string as a whole is wrong (a parameter given twice).
pub(super) fn query_error(rejection: &QueryRejection, log: &LogFields) -> ApiError {
    // axum decodes the query with serde_path_to_error, whose message
    // starts with the parameter's name when there is one.
    let text = rejection.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let named = text
        .split_once(": ")
        .is_some_and(|(name, _)| QUERY_PARAMETERS.contains(&name));
    let error = if named {
        ServiceError::new(ErrorCode::EventInvalid, text)
    } else {
        ServiceError::invalid("query", text)
    };
    ApiError::new(error, log)
}
