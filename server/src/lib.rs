//! Reference sync server logic for tidesync: the protocol's server side,
//! independent of HTTP and of any database.
//!
//! # Walkthrough
//!
//! A [`SyncService`] wraps a [`ServerStore`] (here the in-memory
//! [`MemoryServerStore`]; SQLite and PostgreSQL backends implement the same
//! trait). Every call carries a [`TerminalContext`], what the caller's
//! credential grants: one terminal of one branch of one tenant. The service
//! reads and writes only that branch's [`Partition`], which has its own
//! change log numbered by a [`tidesync::Cursor`] (0 = nothing yet).
//!
//! [`SyncService::push`] answers each mutation with an ack:
//! `Applied` (new version and cursor), `Duplicate` (a retry of an applied op:
//! the original result, never applied twice), `Conflict` (stale
//! `base_version`: here is the server state) or `Rejected` (stable code). An
//! idempotency ledger keyed by (tenant, branch, terminal, op_id) remembers applied
//! ops only, so a conflicting op can be rebased and resent with the same id.
//! [`SyncService::changes`] and [`SyncService::snapshot`] page through the
//! log and the state; [`SyncService::reconcile`] compares bucket digests and
//! plans repairs. Per-collection [`ServerPolicy`]s add append-only and
//! read-only collections; the admin API ([`SyncService::admin_put`],
//! [`SyncService::seed`]) loads cloud-owned data.
//!
//! ```
//! use tidesync::{payload_checksum, AckResult, Cursor, Hlc, Mutation, MutationKind, OpId, PushRequest};
//! use tidesync_server::{MemoryServerStore, SyncService, TerminalContext};
//!
//! let service = SyncService::new(MemoryServerStore::new());
//! let ctx = TerminalContext::new("acme", "downtown", "till-1");
//!
//! let payload = serde_json::json!({"name": "Blue room"}).as_object().unwrap().clone();
//! let m = Mutation {
//!     op_id: OpId::from_parts(1_700_000_000_000, 42),
//!     client_id: "install-1".into(),
//!     terminal_id: "till-1".into(),
//!     branch_id: "downtown".into(),
//!     collection: "rooms".into(),
//!     entity_id: "r1".into(),
//!     kind: MutationKind::Create,
//!     checksum: payload_checksum("rooms", "r1", MutationKind::Create, Some(&payload)),
//!     payload: Some(payload),
//!     base_version: 0,
//!     hlc: Hlc::default(),
//!     schema_version: 1,
//!     offline: false,
//!     anomaly: None,
//! };
//! let request = PushRequest { protocol: 1, attempt: 0, mutations: vec![m] };
//!
//! let first = service.push(&ctx, request.clone()).unwrap();
//! assert_eq!(first.acks[0].result, AckResult::Applied { version: 1, cursor: Cursor(1) });
//!
//! // The response was lost; the terminal retries. Same result, applied once.
//! let retry = service.push(&ctx, request).unwrap();
//! assert_eq!(retry.acks[0].result, AckResult::Duplicate { version: 1, cursor: Cursor(1) });
//! assert_eq!(service.metrics().applied, 1);
//! ```

#![warn(missing_docs)]

mod admin;
pub mod auth;
/// The native HTTP transport, from its own crate (`tidesync-http-client`,
/// which depends only on the core); re-exported for the server's tests.
pub mod client {
    pub use tidesync_http_client::HttpTransport;
}
mod context;
mod decide;
mod decode;
mod error;
pub mod http;
pub mod in_process;
mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod reconcile;
pub mod rules;
mod service;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{Partition, TerminalContext};
pub use decide::ServerPolicy;
pub use decode::decode_json;
pub use error::ServiceError;
pub use in_process::InProcessTransport;
pub use metrics::ServiceMetrics;
pub use service::{Clock, ServiceConfig, SyncService};
pub use storage::{
    AuditRow, Backend, Change, EntitiesAt, LedgerEntry, MemoryServerStore, PgStore, ServerStore,
    SqliteStore, SqliteSync, StorageBackend, StorageError, StoreTx, StoredEntity,
};

/// Milliseconds since the Unix epoch, from the system clock (the core's
/// one clock helper).
pub use tidesync::env::unix_now_ms as now_ms;
