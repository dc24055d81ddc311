//! The engine's view of the network: one method per protocol endpoint.
//! Adapters implement it with fetch (browser), an HTTP client (Node) or
//! in memory (tests, simulation).

use crate::error_code::ErrorCode;
use crate::protocol::*;
use crate::{SendOutsideWasm, SyncOutsideWasm};
use async_trait::async_trait;

/// Why a request did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No route to the server (offline): the request was not delivered.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The host is online but the request reached no server (connection
    /// refused, DNS, TLS, a refused cross-origin request): not offline, an
    /// error to show. Sync pauses and the outbox is kept; no attempt counts.
    #[error("{0}")]
    NoServer(String),
    /// No answer in time: the request may or may not have been processed.
    #[error("request timed out")]
    Timeout,
    /// The server failed (5xx) or answered something unreadable.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status, or 0 for an unreadable answer.
        status: u16,
        /// Detail.
        message: String,
    },
    /// 429: try again after `retry_after_ms`.
    #[error("rate limited, retry after {retry_after_ms} ms")]
    RateLimited {
        /// The server's Retry-After, in ms.
        retry_after_ms: u64,
    },
    /// 401/403: the credentials are missing, wrong, expired or revoked.
    #[error("unauthorized ({code}): {message}")]
    Unauthorized {
        /// `SYNC_UNAUTHORIZED` or `SYNC_FORBIDDEN`.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// Any other 4xx with a stable code: the request as a whole is refused.
    #[error("request refused ({code}): {message}")]
    Refused {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
}

impl TransportError {
    /// The stable code to show for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            TransportError::Unreachable(_) => ErrorCode::SyncOffline,
            TransportError::NoServer(_) => ErrorCode::SyncUnreachable,
            TransportError::Timeout | TransportError::Server { .. } => ErrorCode::SyncServerError,
            TransportError::RateLimited { .. } => ErrorCode::SyncRateLimited,
            TransportError::Unauthorized { code, .. } | TransportError::Refused { code, .. } => {
                *code
            }
        }
    }
}

/// Sends protocol requests to a sync server.
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
#[cfg_attr(not(target_family = "wasm"), async_trait)]
pub trait Transport: SendOutsideWasm + SyncOutsideWasm {
    /// `POST /v1/mutations`.
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError>;
    /// `GET /v1/changes`.
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError>;
    /// `GET /v1/snapshot`.
    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError>;
    /// `POST /v1/reconcile`.
    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError>;
    /// `GET /v1/whoami`: what the transport's key was issued for. Only
    /// opening a client asks it (to learn or check the terminal and branch);
    /// a transport without it (the simulation's, the tests') answers
    /// [`TransportError::Refused`] with `BAD_ARGUMENT`, and the opening
    /// goes on with the ids it was given.
    async fn whoami(&self) -> Result<KeyIdentity, TransportError> {
        Err(TransportError::Refused {
            code: ErrorCode::BadArgument,
            message: "this transport cannot ask who a key belongs to".into(),
        })
    }
    /// `POST /v1/pair`: redeems a one-time pairing code for a new API key
    /// (sent without a key). Only opening a client asks it; the default
    /// answers `BAD_ARGUMENT`, as [`whoami`](Transport::whoami)'s does.
    async fn pair(&self, _request: PairRequest) -> Result<PairResponse, TransportError> {
        Err(TransportError::Refused {
            code: ErrorCode::BadArgument,
            message: "this transport cannot redeem a pairing code".into(),
        })
    }
}

pub mod http;
