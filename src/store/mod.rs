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
mod credential;
mod memory;
pub mod paged;

pub use credential::StoredCredential;
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
    /// Local mutations waiting to be sent: the same count as
    /// [`Status::pending`](crate::status::Status::pending) (dead letters and
    /// an open conflict's mutations wait for a person instead).
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
///
/// Stored form: while nothing is pending and there is no conflict, the view
/// is the server state itself, so it is not written a second time (the
/// record says `"settled": true` and the view is derived when read). Records
/// written before this form (a full `view`) read as they were.
#[derive(Clone, Debug, PartialEq)]
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

impl EntityRecord {
    /// The view of an entity with nothing pending and no conflict: its
    /// server state as it is (what the engine computes for it).
    pub fn settled_view(key: &EntityKey, server: &EntityState) -> LocalEntity {
        LocalEntity {
            collection: key.collection.clone(),
            id: key.id.clone(),
            fields: server.fields.clone(),
            deleted: server.deleted,
            server_version: server.version,
            updated_at: server.updated_at,
            pending: 0,
            conflicted: false,
        }
    }

    /// The view is exactly [`settled_view`](Self::settled_view) of the
    /// server state, so the stored form can leave it out.
    fn is_settled(&self) -> bool {
        let (Some(s), Some(v), None) = (&self.server, &self.view, &self.chain_base) else {
            return false;
        };
        v.pending == 0
            && !v.conflicted
            && v.deleted == s.deleted
            && v.server_version == s.version
            && v.updated_at == s.updated_at
            && v.collection == self.key.collection
            && v.id == self.key.id
            && v.fields == s.fields
    }
}

impl Serialize for EntityRecord {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        #[derive(Serialize)]
        struct Stored<'a> {
            key: &'a EntityKey,
            server: &'a Option<EntityState>,
            chain_base: &'a Option<ChainBase>,
            #[serde(skip_serializing_if = "Option::is_none")]
            view: Option<&'a LocalEntity>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            settled: bool,
        }
        let settled = self.is_settled();
        Stored {
            key: &self.key,
            server: &self.server,
            chain_base: &self.chain_base,
            view: if settled { None } else { self.view.as_ref() },
            settled,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EntityRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            key: EntityKey,
            server: Option<EntityState>,
            chain_base: Option<ChainBase>,
            #[serde(default)]
            view: Option<LocalEntity>,
            #[serde(default)]
            settled: bool,
        }
        let r = Stored::deserialize(deserializer)?;
        let view = match (&r.server, r.settled) {
            (Some(s), true) => Some(EntityRecord::settled_view(&r.key, s)),
            (None, true) => {
                return Err(serde::de::Error::custom(
                    "a settled entity record without a server state",
                ))
            }
            _ => r.view,
        };
        Ok(EntityRecord {
            key: r.key,
            server: r.server,
            chain_base: r.chain_base,
            view,
        })
    }
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
    /// Held for review (its anomaly score was flagged under a collection's
    /// `hold_flagged` review policy, or the write asked to be held): not sent
    /// until a person releases it, or discarded. Blocks later mutations of the
    /// same entity, like a dead letter.
    Held {
        /// Why: `flagged` or `requested`.
        reason: HoldReason,
        /// When it was held (ms).
        at_ms: u64,
    },
}

/// Why a mutation is held for review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The scorer flagged it and its collection holds flagged writes.
    Flagged,
    /// The write's options asked for it (`hold: true`).
    Requested,
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
    /// A person discarded a dead letter or a held mutation.
    Discarded,
    /// The on-device model scored it as it was queued.
    Scored {
        /// The score and flag, as sent with the mutation.
        anomaly: crate::protocol::AnomalyScore,
    },
    /// Scoring failed (the write went on unscored).
    ScoreFailed {
        /// Why (a stable code from the scorer, never field data).
        code: String,
    },
    /// Held for review instead of being sent.
    Held {
        /// `flagged` or `requested`.
        reason: HoldReason,
    },
    /// A person released a held mutation: it is sent like any other.
    Released,
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

fn yes() -> bool {
    true
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
        /// The store held entities when the snapshot began: once it is
        /// complete, a reconcile verifies the copy (`verify_pending`).
        /// Snapshots begun by older builds verify.
        #[serde(default = "yes")]
        verify: bool,
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
    /// The terminal and branch this store belongs to, set when it is first
    /// opened (stores made by older builds: at their next open). Opening it
    /// as another terminal or branch is `TERMINAL_MISMATCH`: its cursor and
    /// records are that branch's, and its queued mutations that terminal's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<StoreOwner>,
}

/// The terminal a store belongs to (see [`SyncMeta::owner`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOwner {
    /// The terminal id.
    pub terminal_id: String,
    /// Its branch.
    pub branch_id: String,
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
    /// Replace the stored credential (`None`: remove it).
    PutCredential(Option<StoredCredential>),
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

/// For backends that read key ranges: splits `keys` (sorted by (collection,
/// id)) into runs of one collection, reads each run's span with
/// `read_span(collection, first id, last id)` (the held records in that
/// range, ordered by id), and answers in the order of `keys`.
pub fn by_spans<E>(
    keys: &[EntityKey],
    mut read_span: impl FnMut(&str, &str, &str) -> Result<Vec<EntityRecord>, E>,
) -> Result<Vec<Option<EntityRecord>>, E> {
    let mut out = Vec::with_capacity(keys.len());
    let mut rest = keys;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|k| k.collection == first.collection)
            .count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        let last = &run[n - 1];
        let mut held = read_span(&first.collection, &first.id, &last.id)?
            .into_iter()
            .peekable();
        for k in run {
            while held.peek().is_some_and(|r| r.key.id < k.id) {
                held.next();
            }
            out.push(held.next_if(|r| r.key.id == k.id));
        }
    }
    Ok(out)
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
    /// The stored credential, if one was kept ([`WriteOp::PutCredential`]).
    async fn load_credential(&self) -> Result<Option<StoredCredential>, StoreError>;
    /// Whether a secret written here stays secret: the records are
    /// encrypted at rest, or never leave memory. A store that says no
    /// refuses [`WriteOp::PutCredential`] with a key (the batch fails and
    /// nothing of it is committed), so an API key is never written in clear.
    fn keeps_secrets(&self) -> bool;
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
    /// Like [`get_many`](Store::get_many), for `keys` sorted by (collection,
    /// id) without repeats, as a snapshot page comes. Backends ordered by key
    /// (memory, SQLite) read the span of each collection with one range
    /// read, so a key they do not hold costs nothing: a first sync into an
    /// empty store reads nothing per entity. The default is `get_many`
    /// (IndexedDB keys records by keyed hash, so it has no ranges).
    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.get_many(keys).await
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

#[cfg(test)]
mod tests;
