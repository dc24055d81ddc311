//! Stable error codes, shared by the wire protocol, the JS bindings and logs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error code. The string form (`SYNC_UNAUTHORIZED`)
/// is part of the public API: it never changes meaning once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Missing, invalid, expired or revoked credentials.
    SyncUnauthorized,
    /// Valid credentials that do not grant access to this branch or tenant.
    SyncForbidden,
    /// Too many requests; retry after the `Retry-After` delay.
    SyncRateLimited,
    /// The server could not be reached (client side only).
    SyncOffline,
    /// The server answered with a 5xx or an unreadable response.
    SyncServerError,
    /// A snapshot page could not be produced or applied.
    SnapshotFailed,
    /// A changes page could not be produced or applied.
    DeltaFailed,
    /// The server does not know the client's cursor (its change log was
    /// reset or restored): the client takes a new snapshot.
    CursorUnknown,
    /// A reconcile run failed.
    ReconcileFailed,
    /// A reconcile manifest exceeds the server's limit.
    ManifestTooLarge,
    /// A request body exceeds the server's limit.
    PayloadTooLarge,
    /// A mutation or request failed validation; the message names the field.
    EventInvalid,
    /// The same op id was sent with a different payload.
    EventDuplicate,
    /// The same op id is being processed by a concurrent request.
    EventInFlight,
    /// The storage layer failed; nothing was committed.
    StorageFailed,
    /// The mutation's base version is not the server's current version.
    Conflict,
    /// The entity does not exist (or is deleted) where the mutation needs it.
    NotFound,
    /// The entity already exists where the mutation creates it.
    AlreadyExists,
    /// The collection's policy forbids this kind of mutation.
    PolicyViolation,
    /// The mutation's schema version is not supported.
    SchemaUnsupported,
    /// The local snapshot is older than the staleness limit.
    OfflinePrimerStale,
    /// A mutation exhausted its delivery attempts.
    RetriesExhausted,
    /// The local store holds a record the code cannot read.
    StoreCorrupt,
    /// The local store refused a write for lack of space.
    QuotaExceeded,
    /// A local operation is not allowed in the entity's current state.
    InvalidState,
    /// An unexpected internal error.
    Internal,
}

impl ErrorCode {
    /// The wire form, e.g. `"SYNC_UNAUTHORIZED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SyncUnauthorized => "SYNC_UNAUTHORIZED",
            ErrorCode::SyncForbidden => "SYNC_FORBIDDEN",
            ErrorCode::SyncRateLimited => "SYNC_RATE_LIMITED",
            ErrorCode::SyncOffline => "SYNC_OFFLINE",
            ErrorCode::SyncServerError => "SYNC_SERVER_ERROR",
            ErrorCode::SnapshotFailed => "SNAPSHOT_FAILED",
            ErrorCode::DeltaFailed => "DELTA_FAILED",
            ErrorCode::CursorUnknown => "CURSOR_UNKNOWN",
            ErrorCode::ReconcileFailed => "RECONCILE_FAILED",
            ErrorCode::ManifestTooLarge => "MANIFEST_TOO_LARGE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::EventInvalid => "EVENT_INVALID",
            ErrorCode::EventDuplicate => "EVENT_DUPLICATE",
            ErrorCode::EventInFlight => "EVENT_IN_FLIGHT",
            ErrorCode::StorageFailed => "STORAGE_FAILED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::PolicyViolation => "POLICY_VIOLATION",
            ErrorCode::SchemaUnsupported => "SCHEMA_UNSUPPORTED",
            ErrorCode::OfflinePrimerStale => "OFFLINE_PRIMER_STALE",
            ErrorCode::RetriesExhausted => "RETRIES_EXHAUSTED",
            ErrorCode::StoreCorrupt => "STORE_CORRUPT",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Whether a mutation rejected with this code goes to the dead-letter
    /// queue at once (a validation failure will not pass on a retry).
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorCode::EventInvalid
                | ErrorCode::EventDuplicate
                | ErrorCode::NotFound
                | ErrorCode::AlreadyExists
                | ErrorCode::PolicyViolation
                | ErrorCode::SchemaUnsupported
                | ErrorCode::PayloadTooLarge
                | ErrorCode::SyncForbidden
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response and of every error reaching JS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable message; never contains payload data or secrets.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_as_str() {
        for code in [
            ErrorCode::SyncUnauthorized,
            ErrorCode::ManifestTooLarge,
            ErrorCode::OfflinePrimerStale,
            ErrorCode::EventDuplicate,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
