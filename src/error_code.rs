//! Stable error codes, shared by the wire protocol, the JS bindings and logs.
//!
//! The list is written once, in [`error_codes!`]: the enum, its wire form,
//! [`ErrorCode::ALL`] and each code's meaning come from it. The TypeScript
//! union in `src/web/tidesync.d.ts` and the table in PROTOCOL.md are checked
//! against [`ErrorCode::ALL`] by tests.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a code can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The server sends it, and the client may also report it.
    Server,
    /// Only the client reports it (its store, its arguments, its network).
    Client,
}

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])+ $name:ident = $wire:literal, $origin:ident; )+) => {
        /// A stable, machine-readable error code. The string form
        /// (`SYNC_UNAUTHORIZED`) is part of the public API: it never changes
        /// meaning once released.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[doc = $doc])+ $name, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The wire form, e.g. `"SYNC_UNAUTHORIZED"`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$name => $wire,)+ }
            }

            /// The code of a wire form.
            pub fn parse(wire: &str) -> Option<ErrorCode> {
                match wire { $($wire => Some(ErrorCode::$name),)+ _ => None }
            }

            /// What the code means (its doc comment).
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$name => concat!($($doc),+).trim_ascii(),)+ }
            }

            /// Who reports it.
            pub fn origin(self) -> Origin {
                match self { $(ErrorCode::$name => Origin::$origin,)+ }
            }
        }
    };
}

error_codes! {
    /// Missing, invalid, expired or revoked credentials.
    SyncUnauthorized = "SYNC_UNAUTHORIZED", Server;
    /// Valid credentials that do not grant access to this branch or tenant,
    /// or that were issued for another terminal.
    SyncForbidden = "SYNC_FORBIDDEN", Server;
    /// Too many requests; retry after the `Retry-After` delay.
    SyncRateLimited = "SYNC_RATE_LIMITED", Server;
    /// The device is offline (the host says so: `navigator.onLine` is false, or the offline event): the server could not be reached.
    SyncOffline = "SYNC_OFFLINE", Client;
    /// The device is online but the request got no answer: the server refused the cross-origin request (CORS) or could not be reached (DNS, TLS, connection refused).
    SyncUnreachable = "SYNC_UNREACHABLE", Client;
    /// The server answered with a 5xx or an unreadable response.
    SyncServerError = "SYNC_SERVER_ERROR", Server;
    /// A snapshot page could not be produced or applied.
    SnapshotFailed = "SNAPSHOT_FAILED", Server;
    /// A changes page could not be produced or applied.
    DeltaFailed = "DELTA_FAILED", Server;
    /// The server does not know the client's cursor (its change log was reset or restored): the client takes a new snapshot.
    CursorUnknown = "CURSOR_UNKNOWN", Server;
    /// A reconcile run failed.
    ReconcileFailed = "RECONCILE_FAILED", Server;
    /// A reconcile manifest exceeds the server's limit.
    ManifestTooLarge = "MANIFEST_TOO_LARGE", Server;
    /// A request body exceeds the server's limit.
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", Server;
    /// A mutation or request failed validation; the message names the field.
    EventInvalid = "EVENT_INVALID", Server;
    /// The same op id was sent with a different payload.
    EventDuplicate = "EVENT_DUPLICATE", Server;
    /// The op was made before the server's replay window and is not in its ledger: it may have been applied and forgotten, so it is not applied; a person sends the change again (a new op id).
    OpExpired = "OP_EXPIRED", Server;
    /// The same op id is being processed by a concurrent request.
    EventInFlight = "EVENT_IN_FLIGHT", Server;
    /// The storage layer failed; nothing was committed.
    StorageFailed = "STORAGE_FAILED", Server;
    /// The mutation's base version is not the server's current version.
    Conflict = "CONFLICT", Server;
    /// The entity does not exist (or is deleted) where the mutation needs it.
    NotFound = "NOT_FOUND", Server;
    /// The entity already exists where the mutation creates it.
    AlreadyExists = "ALREADY_EXISTS", Server;
    /// The collection's policy forbids this kind of mutation.
    PolicyViolation = "POLICY_VIOLATION", Server;
    /// The mutation's schema version is not supported.
    SchemaUnsupported = "SCHEMA_UNSUPPORTED", Server;
    /// The local snapshot is older than the staleness limit.
    OfflinePrimerStale = "OFFLINE_PRIMER_STALE", Client;
    /// A mutation exhausted its delivery attempts.
    RetriesExhausted = "RETRIES_EXHAUSTED", Client;
    /// The local store holds a record the code cannot read.
    StoreCorrupt = "STORE_CORRUPT", Client;
    /// The local store refused a write for lack of space.
    QuotaExceeded = "QUOTA_EXCEEDED", Client;
    /// A local operation is not allowed in the entity's current state.
    InvalidState = "INVALID_STATE", Client;
    /// The local database was deleted, evicted or closed underneath the engine.
    StoreGone = "STORE_GONE", Client;
    /// The key or passphrase does not open this store; nothing changed.
    StoreWrongKey = "STORE_WRONG_KEY", Client;
    /// An encrypted store opened without a key, or with another kind of key.
    StoreKeyMismatch = "STORE_KEY_MISMATCH", Client;
    /// The database, or the API key, belongs to another terminal or branch (or tenant) than the one asked for; nothing was queued or stored.
    TerminalMismatch = "TERMINAL_MISMATCH", Client;
    /// The database does not know its terminal yet: open it once with the terminal's API key (pairing) or with its terminal and branch ids.
    NotPaired = "NOT_PAIRED", Client;
    /// An argument of a client call is malformed; the message names it.
    BadArgument = "BAD_ARGUMENT", Client;
    /// No tab holds the engine (the leading tab closed or does not answer).
    LeaderUnavailable = "LEADER_UNAVAILABLE", Client;
    /// No anomaly model was given (empty bytes), or this build has no model runtime.
    ModelMissing = "MODEL_MISSING", Client;
    /// The anomaly model's SHA-256 is not in the allow list; it was not loaded.
    ModelNotAllowed = "MODEL_NOT_ALLOWED", Client;
    /// The anomaly model (or its features file) cannot be loaded; writes go on unscored.
    ModelCorrupt = "MODEL_CORRUPT", Client;
    /// An unexpected internal error.
    Internal = "INTERNAL", Server;
}

impl ErrorCode {
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
                | ErrorCode::OpExpired
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    fn wire_form_matches_as_str_and_parses_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!(!code.meaning().is_empty(), "{code} has a meaning");
        }
        assert_eq!(ErrorCode::parse("NO_SUCH_CODE"), None);
        let mut wires: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        wires.sort_unstable();
        wires.dedup();
        assert_eq!(wires.len(), ErrorCode::ALL.len(), "wire forms are unique");
    }
}
