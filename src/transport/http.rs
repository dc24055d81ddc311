//! The reference server's HTTP binding (PROTOCOL.md), shared by every HTTP
//! transport: the browser's `fetch` adapter and the native client. One place
//! says which header carries the branch, where each endpoint lives and how a
//! non-2xx answer maps onto a [`TransportError`].

use super::TransportError;
use crate::error_code::{ErrorBody, ErrorCode};

/// The header that names the terminal's branch.
pub const BRANCH_HEADER: &str = "x-tidesync-branch";
/// The header in which a terminal states its terminal id: a key issued for
/// another terminal is refused at first contact (`403 SYNC_FORBIDDEN`),
/// before any mutation is sent and dead-lettered.
pub const TERMINAL_HEADER: &str = "x-tidesync-terminal";

/// `POST`: push a batch of mutations.
pub const PUSH_PATH: &str = "/v1/mutations";
/// `GET`: a page of the change feed.
pub const CHANGES_PATH: &str = "/v1/changes";
/// `GET`: a page of the snapshot.
pub const SNAPSHOT_PATH: &str = "/v1/snapshot";
/// `POST`: a reconcile round.
pub const RECONCILE_PATH: &str = "/v1/reconcile";
/// `GET`: the live channel, a Server-Sent Events stream of pokes
/// ([`crate::client::live`]).
pub const EVENTS_PATH: &str = "/v1/events";
/// What the presented key was issued for ([`KeyIdentity`](crate::protocol::KeyIdentity)).
pub const WHOAMI_PATH: &str = "/v1/whoami";
/// `POST`, no key: redeem a one-time pairing code
/// ([`PairRequest`](crate::protocol::PairRequest)) for a new API key.
pub const PAIR_PATH: &str = "/v1/pair";
/// `GET`: the reachability probe.
pub const HEALTH_PATH: &str = "/health";

/// The `Retry-After` used when a 429 carries none, in ms.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1000;

/// A `Retry-After` header (a delay in seconds) in ms; `None` when absent or
/// not a number of seconds.
pub fn retry_after_ms(value: Option<&str>) -> Option<u64> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
}

/// The error for a non-2xx HTTP `status`, its `Retry-After` header (delay in
/// seconds) and its body (an [`ErrorBody`] when the server wrote one).
pub fn error_for_status(status: u16, retry_after: Option<&str>, body: &[u8]) -> TransportError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(b) => (Some(b.code), b.message),
        None => (None, format!("HTTP {status}")),
    };
    match (status, code) {
        (429, _) => TransportError::RateLimited {
            retry_after_ms: retry_after_ms(retry_after).unwrap_or(DEFAULT_RETRY_AFTER_MS),
        },
        (401 | 403, code) => TransportError::Unauthorized {
            code: code.unwrap_or(if status == 403 {
                ErrorCode::SyncForbidden
            } else {
                ErrorCode::SyncUnauthorized
            }),
            message,
        },
        (400..=499, Some(code)) => TransportError::Refused { code, message },
        (s, _) => TransportError::Server { status: s, message },
    }
}

/// The error for a 2xx answer whose body could not be read.
pub fn unreadable(detail: impl std::fmt::Display) -> TransportError {
    TransportError::Server {
        status: 0,
        message: format!("unreadable response: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> Vec<u8> {
        format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes()
    }

    #[test]
    fn statuses_map_onto_transport_errors() {
        assert_eq!(
            error_for_status(429, Some("7"), b""),
            TransportError::RateLimited {
                retry_after_ms: 7000
            }
        );
        assert_eq!(
            error_for_status(429, Some("soon"), b""),
            TransportError::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
        assert_eq!(
            error_for_status(403, None, b"").code(),
            ErrorCode::SyncForbidden
        );
        assert_eq!(
            error_for_status(401, None, b"<html>").code(),
            ErrorCode::SyncUnauthorized
        );
        assert_eq!(
            error_for_status(413, None, &body("PAYLOAD_TOO_LARGE")).code(),
            ErrorCode::PayloadTooLarge
        );
        // A 4xx without a stable code (a proxy's page) is a server failure, retried.
        assert!(matches!(
            error_for_status(404, None, b"not found"),
            TransportError::Server { status: 404, .. }
        ));
        assert!(matches!(
            error_for_status(503, None, &body("STORAGE_FAILED")),
            TransportError::Server { status: 503, .. }
        ));
    }
}
