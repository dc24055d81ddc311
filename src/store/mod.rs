//! Local storage: the records the engine keeps and the [`Store`] trait that
//! every backend (in-memory, IndexedDB, SQLCipher) implements.
//!
//! The engine builds each change completely in memory as a [`WriteBatch`]
//! and hands it to [`Store::commit`], which applies it in one transaction:
//! all of it or none of it. That is how a local write and its outbox entry
//! (and its audit entry) commit together. Reads are separate calls.
//!
//! The trait speaks of logical records; a backend is free to lay them out as
//! it likes (one row per record, packed pages, ...).

pub mod conformance;
mod memory;

pub use memory::{FailingStore, MemoryStore};

use crate::error_code::ErrorCode;
use crate::hlc::Hlc;
use crate::protocol::{Cursor, EntityKey, EntityState, Fields, Mutation, OpId};
use crate::{SendOutsideWasm, SyncOutsideWasm};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The local view of an entity: its last server state with the pending local
/// mutations replayed on top, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalEntity {
    /// Collection.
    pub collection: String,
    /// Id.
    pub id: String,
    /// The fields as the user sees them.
    pub fields: Fields,
    /// Deleted locally or on the server.
    pub deleted: bool,
    /// The server version the view is based on (0: not on the server yet).
    pub server_version: u64,
    /// HLC of the latest change in the view.
    pub updated_at: Hlc,
    /// Local mutations not yet acknowledged by the server.
    pub pending: u32,
    /// The entity has an open conflict.
    pub conflicted: bool,
}

/// What the local chain of pending mutations of an entity was built on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChainBase {
    /// The entity was not on the server (as far as the client knew).
    Absent,
    /// This server state.
    State(EntityState),
}

impl ChainBase {
    /// The server version the chain was built on (0 if absent).
    pub fn version(&self) -> u64 {
        match self {
            ChainBase::Absent => 0,
            ChainBase::State(s) => s.version,
        }
    }

    /// The state, if any.
    pub fn state(&self) -> Option<&EntityState> {
        match self {
            ChainBase::Absent => None,
            ChainBase::State(s) => Some(s),
        }
    }
}

/// Everything the client keeps about one entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityRecord {
    /// Which entity.
    pub key: EntityKey,
    /// The latest server state known (the base).
    pub server: Option<EntityState>,
    /// What the pending chain was built on; `None` when nothing is pending.
    pub chain_base: Option<ChainBase>,
    /// The materialised local view (`None`: nothing to show).
    pub view: Option<LocalEntity>,
}

/// Where an outbox entry stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting to be sent (or resent after a backoff).
    Pending,
    /// Will not be sent until a person retries it; blocks later mutations of
    /// the same entity.
    DeadLetter {
        /// Why.
        code: ErrorCode,
        /// Detail (no payload data).
        message: String,
        /// When it was dead-lettered (ms).
        at_ms: u64,
    },
}

/// One queued mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Local order; FIFO per entity follows it.
    pub seq: u64,
    /// The mutation; its `base_version` is filled in when it is sent.
    pub mutation: Mutation,
    /// Pending or dead letter.
    pub state: OutboxState,
    /// Delivery attempts that reached a server and failed (or timed out).
    pub attempts: u32,
    /// Not to be sent before this time (ms).
    pub next_attempt_at: u64,
    /// It was handed to the transport at least once (outcome maybe unknown).
    pub sent: bool,
    /// The last failure, for the sync center.
    pub last_error: Option<(ErrorCode, String)>,
    /// When it was enqueued (ms).
    pub enqueued_at: u64,
}

/// An open conflict: the entity is shown with a diff until a person resolves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Which entity.
    pub key: EntityKey,
    /// The common ancestor: the server state the local change was made on.
    pub base: Option<EntityState>,
    /// The local intent: base + the local mutations.
    pub local: Option<LocalEntity>,
    /// The server's current state.
    pub server: Option<EntityState>,
    /// The local mutations that were not applied (kept, never dropped).
    pub mutations: Vec<Mutation>,
    /// Fields changed on both sides with different values.
    pub fields: Vec<String>,
    /// When it was detected (ms).
    pub detected_at: u64,
}

/// What an audit entry records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A local mutation was made and queued.
    Queued,
    /// The server applied it.
    Applied {
        /// New server version.
        version: u64,
    },
    /// The server had applied it before (a retry); not applied twice.
    Duplicate {
        /// Version of the original application.
        version: u64,
    },
    /// Rebased onto a newer server state and kept (merge or last-write-wins).
    Rebased {
        /// The server version it now builds on.
        onto: u64,
    },
    /// Lost to a newer server state under the collection's policy.
    Superseded {
        /// The server version that won.
        by_version: u64,
    },
    /// Moved into an open conflict for a person to resolve.
    ConflictOpened,
    /// A person resolved the conflict.
    ConflictResolved {
        /// `local`, `server` or `edited`.
        choice: String,
    },
    /// Moved to the dead-letter queue.
    DeadLettered {
        /// Why.
        code: ErrorCode,
    },
    /// A person retried a dead letter.
    Retried,
    /// A person edited a dead letter and sent it again as a new mutation
    /// (`op_id`); this one will never be sent.
    ReplacedBy {
        /// The new mutation's op id.
        op_id: OpId,
    },
    /// A person discarded a dead letter.
    Discarded,
    /// Reconcile repaired this entity.
    Reconciled {
        /// `missing`, `stale` or `extra`.
        action: String,
    },
}

/// One local audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Local order.
    pub seq: u64,
    /// When (ms).
    pub at_ms: u64,
    /// The op concerned, if any.
    pub op_id: Option<crate::protocol::OpId>,
    /// The entity concerned.
    pub key: EntityKey,
    /// What happened.
    pub event: AuditEvent,
}

/// Snapshot progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum SnapshotProgress {
    /// No snapshot yet.
    NotStarted,
    /// Pages up to `after` are stored; deltas will start at `at`.
    InProgress {
        /// The first page's cursor.
        at: Cursor,
        /// Last key stored.
        after: Option<EntityKey>,
    },
    /// Complete.
    Done,
}

/// Sync state of this client, stored as one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncMeta {
    /// The installation id.
    pub client_id: String,
    /// Local schema version.
    pub schema_version: u32,
    /// Pull cursor: every change up to it is stored.
    pub cursor: Option<Cursor>,
    /// Snapshot progress.
    pub snapshot: SnapshotProgress,
    /// When the last full snapshot completed (ms).
    pub snapshot_at_ms: Option<u64>,
    /// Last successful exchange with the server (ms).
    pub last_sync_at_ms: Option<u64>,
    /// The HLC's last stamp, so it never goes back across restarts.
    pub hlc: Hlc,
    /// Next outbox sequence number.
    pub next_seq: u64,
    /// Next audit sequence number.
    pub next_audit_seq: u64,
    /// A snapshot completed over existing local data: the next pull verifies
    /// every collection with a reconcile (the snapshot leaves out entities
    /// deleted before it, which the local store may still hold).
    #[serde(default)]
    pub verify_pending: bool,
    /// Bumped by every commit of an engine: another engine on the same
    /// store (another tab) sees that its caches are stale.
    #[serde(default)]
    pub generation: u64,
}

/// One write of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Insert or replace an entity record.
    PutEntity(EntityRecord),
    /// Remove an entity record.
    DeleteEntity(EntityKey),
    /// Insert or replace an outbox entry (by `seq`).
    PutOutbox(OutboxEntry),
    /// Remove an outbox entry.
    DeleteOutbox(u64),
    /// Insert or replace an open conflict (by key).
    PutConflict(ConflictRecord),
    /// Remove an open conflict.
    DeleteConflict(EntityKey),
    /// Append an audit entry.
    AppendAudit(AuditEntry),
    /// Replace the sync state.
    PutMeta(SyncMeta),
}

/// A set of writes that commit together or not at all. Later writes to the
/// same record win.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// The writes, in order.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a write.
    pub fn push(&mut self, op: WriteOp) {
        self.ops.push(op);
    }
    /// No writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A store error. Backends keep their own error type and convert into this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed; nothing of the batch was committed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// The device is out of space; nothing of the batch was committed.
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// A record could not be read (corrupt, tampered with, or a wrong key).
    #[error("stored record unreadable: {0}")]
    Corrupt(String),
    /// The store was closed, deleted or evicted underneath the engine.
    #[error("store is gone: {0}")]
    Gone(String),
    /// The key or passphrase does not open this store; nothing changed.
    #[error("the key does not open this store")]
    WrongKey,
    /// The store is encrypted and was opened without a key, or with another
    /// kind of key (or the other way round).
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
}

impl StoreError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Backend(_) => ErrorCode::StorageFailed,
            StoreError::Gone(_) => ErrorCode::StoreGone,
            StoreError::WrongKey => ErrorCode::StoreWrongKey,
            StoreError::KeyMismatch(_) => ErrorCode::StoreKeyMismatch,
            StoreError::QuotaExceeded => ErrorCode::QuotaExceeded,
            StoreError::Corrupt(_) => ErrorCode::StoreCorrupt,
        }
    }
}

/// A backend that can fail a commit part-way, so the conformance suite can
/// check that a failed commit leaves nothing behind
/// ([`conformance::a_failed_commit_leaves_nothing`]). Each backend fails
/// the way it would for real: IndexedDB aborts its transaction, SQLite rolls
/// back, the memory store undoes what it applied.
pub trait InjectFaults {
    /// The next commit fails after it has applied (or issued) `ops` of its
    /// writes. One-shot: later commits succeed.
    fn fail_next_commit_after(&self, ops: usize);
}

/// Local persistent storage for one client.
///
/// Contract every backend must keep (checked by [`conformance`]):
/// - [`commit`](Store::commit) applies all of a batch or none of it; when it
///   returns `Ok`, the batch is durable.
/// - Reads see every committed batch and nothing of a failed one.
/// - [`outbox`](Store::outbox) returns entries ordered by `seq`;
///   [`audit`](Store::audit) by `seq`; [`scan`](Store::scan) by id.
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
#[cfg_attr(not(target_family = "wasm"), async_trait)]
pub trait Store: SendOutsideWasm + SyncOutsideWasm {
    /// The sync state, if this store was ever initialised.
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError>;
    /// One entity record.
    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError>;
    /// Many entity records, in the order of `keys`. Backends where a read
    /// costs a round trip (IndexedDB) answer all of them in one go; the
    /// engine uses it to read a whole pulled page at once.
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
    /// Every entity record of a collection, ordered by id.
    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError>;
    /// One page of a collection: the records with an id after `after` (all
    /// of them when `None`), ordered by id, at most `limit`. Backends whose
    /// keys are ordered by id (memory, SQLite, packed pages) answer it
    /// without reading the rest of the collection; the default reads it all.
    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let mut all = self.scan(collection).await?;
        all.retain(|r| after.is_none_or(|a| r.key.id.as_str() > a));
        all.truncate(limit);
        Ok(all)
    }
    /// Whether the store can still be used, known without a read: `Err`
    /// when the backend learnt that it was closed, deleted or evicted. The
    /// status shows it as an error even when no call failed.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The collections that have at least one entity record, sorted.
    async fn collections(&self) -> Result<Vec<String>, StoreError>;
    /// Every outbox entry, ordered by `seq`.
    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Every open conflict.
    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError>;
    /// Audit entries with `seq > after`, at most `limit`, ordered by `seq`.
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Applies a batch atomically and durably.
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
}
