//! The storage the sync service is written against: the [`ServerStore`]
//! trait and its types, and every backend that implements it.
//!
//! The service never touches a database directly: it asks a [`ServerStore`]
//! to run a closure inside **one transaction** on one [`Partition`] and hands
//! that closure a [`StoreTx`] to read and write through. Everything one
//! mutation does (the ledger check, the entity row, the change-log row, the
//! ledger row and the audit row) happens inside one such closure, so it
//! commits as a whole or not at all, and the ledger check sees exactly the
//! state the writes are made against.
//!
//! The trait is synchronous on purpose: the HTTP layer calls it from
//! `spawn_blocking`, and the SQL backends (SQLite through `rusqlite`,
//! PostgreSQL through the sync `postgres` crate) map onto it directly. Every
//! backend uses the same [`StoreTx`] (`staged.rs`): a read goes to the
//! database once per key and sees the transaction's own writes; writes are
//! staged and handed to the backend when the closure succeeds, which writes
//! them and commits:
//!
//! | trait                         | SQL                                                        |
//! |-------------------------------|------------------------------------------------------------|
//! | [`ServerStore::transaction`]  | `BEGIN` … `COMMIT` (`ROLLBACK` when the closure fails)     |
//! | [`StoreTx::entity`]           | `SELECT … FROM entities WHERE tenant, branch, collection, id` |
//! | [`StoreTx::ledger`]           | `SELECT … FROM ledger WHERE tenant, branch, terminal, op_id` |
//! | [`StoreTx::append_change`]    | at commit: `INSERT INTO changes`, then the partition's `head` |
//! | [`StoreTx::put_entity`]       | at commit: `INSERT … ON CONFLICT DO UPDATE` into `entities` |
//! | [`StoreTx::put_ledger`]       | at commit: `INSERT INTO ledger` (primary key `tenant, branch, terminal, op_id`) |
//! | [`StoreTx::put_audit`]        | at commit: `INSERT INTO audit`                             |
//!
//! The backends:
//!
//! * [`SqliteStore`]: embedded SQLite, the default (a file path).
//! * [`PgStore`]: PostgreSQL by URL, for several server processes.
//! * [`MemoryServerStore`]: in memory, for tests and demos (not persistent),
//!   and the reference behaviour the SQL backends must match.
//!
//! [`Backend`] is whichever of them the server was started with.
//!
//! # The cursor contract
//!
//! The cursors of a partition are `1, 2, 3, …` without gaps, and they become
//! visible in order: a reader that sees cursor `c` also sees every cursor
//! below `c`. Otherwise a change that commits late (behind a higher cursor a
//! client has already pulled past) would be skipped forever. A database
//! sequence is **not** enough for this: it hands numbers out when a row is
//! inserted, not when it commits. Backends must serialise the write
//! transactions of one partition instead, e.g. SQLite `BEGIN IMMEDIATE`, or
//! on PostgreSQL lock the partition's head row (`SELECT head FROM partitions
//! … FOR UPDATE`) as the first statement of [`ServerStore::transaction`] and
//! take the next cursor from it. The lock is held until commit, so the cursor
//! order is the commit order, and a rolled-back transaction gives its cursor
//! back.

mod backend;
mod credentials;
pub mod memory;
pub mod migrate;
mod pool;
pub mod postgres;
mod sql;
pub mod sqlite;
mod staged;

use std::error::Error as StdError;

use serde::{Deserialize, Serialize};
use tidesync::{Cursor, EntityKey, EntityState, ErrorCode, Hlc, OpId};

pub use self::backend::{Backend, ChangeListener, StorageBackend};
pub use self::credentials::{
    Credential, CredentialStore, MakeCredential, PairFailure, PairingCode,
};
pub use self::memory::MemoryServerStore;
pub use self::postgres::PgStore;
pub use self::sqlite::{SqliteStore, SqliteSync};
pub use crate::context::Partition;

/// An entity as stored: its current state (tombstones included) and the
/// change-log cursor of the change that produced that state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEntity {
    /// The current state.
    pub state: EntityState,
    /// The cursor of the change that produced `state`.
    pub cursor: Cursor,
}

/// One row of a partition's change log: the full entity state after a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the partition's log.
    pub cursor: Cursor,
    /// The entity state after the change (with `last_op`).
    pub state: EntityState,
}

/// What the idempotency ledger remembers about one applied mutation, keyed by
/// `(tenant, branch, terminal, op_id)`: two branches never share a row, even
/// when one terminal name was issued on both. Only applied mutations are
/// recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The mutation's payload fingerprint (its `checksum`): a replay must
    /// carry the same one.
    pub fingerprint: String,
    /// The entity the mutation changed.
    pub key: EntityKey,
    /// The version the mutation produced.
    pub version: u64,
    /// The cursor of the change it produced.
    pub cursor: Cursor,
    /// Server time of the application, milliseconds since the Unix epoch
    /// (the replay window counts from it).
    #[serde(default)]
    pub applied_at_ms: u64,
}

/// One audit row per applied write (the server's record of who changed
/// what; the terminal keeps its own audit events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// The mutation's op id (`None`: an administrative write).
    pub op_id: Option<OpId>,
    /// The terminal that sent it (`None`: an administrative write).
    pub terminal: Option<String>,
    /// The entity changed.
    pub key: EntityKey,
    /// The version produced.
    pub version: u64,
    /// The cursor of the change produced.
    pub cursor: Cursor,
    /// The mutation's HLC.
    pub hlc: Hlc,
    /// The terminal believed it was offline when it made the change.
    pub originated_offline: bool,
    /// Server time of the application, milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
    /// The terminal's on-device anomaly score of the mutation, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<tidesync::protocol::AnomalyScore>,
}

/// Entities read together with the change-log head they are consistent with
/// (both from one read transaction).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntitiesAt {
    /// The entities read.
    pub entities: Vec<EntityState>,
    /// The partition's head cursor at the time of the read.
    pub head: Cursor,
}

/// A storage failure. Nothing of the failed transaction was committed; the
/// service reports it as [`ErrorCode::StorageFailed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend (driver, connection, disk) failed.
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// A write violated a uniqueness constraint of the schema (e.g. a second
    /// ledger row for the same op id).
    #[error("storage constraint violated: {0}")]
    Constraint(String),
    /// Stored data cannot be read back (corrupt row, unknown format).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// Wraps a backend error.
    pub fn backend(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        StorageError::Backend(err.into())
    }

    /// The stable code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::StorageFailed
    }
}

/// The reads and writes available inside one write transaction on one
/// partition. Reads see the transaction's own writes.
pub trait StoreTx {
    /// The partition the transaction runs on.
    fn partition(&self) -> &Partition;

    /// The entity's current state (tombstones included) and its cursor.
    fn entity(&mut self, key: &EntityKey) -> Result<Option<StoredEntity>, StorageError>;

    /// The ledger entry of `(partition, terminal, op_id)`, if that mutation
    /// was applied on this partition.
    fn ledger(&mut self, terminal: &str, op_id: &OpId)
        -> Result<Option<LedgerEntry>, StorageError>;

    /// Appends the state after a change to the partition's log and returns
    /// its cursor (the head + 1; see the module docs for the ordering rule).
    fn append_change(&mut self, state: &EntityState) -> Result<Cursor, StorageError>;

    /// Inserts or replaces the entity row.
    fn put_entity(&mut self, entity: &StoredEntity) -> Result<(), StorageError>;

    /// Records an applied mutation in the ledger. Fails with
    /// [`StorageError::Constraint`] if the key is already present.
    fn put_ledger(
        &mut self,
        terminal: &str,
        op_id: &OpId,
        entry: &LedgerEntry,
    ) -> Result<(), StorageError>;

    /// Appends an audit row.
    fn put_audit(&mut self, entry: &AuditRow) -> Result<(), StorageError>;

    /// A hint that the transaction is about to read the ledger entries of
    /// `op_ids` (of `terminal`) and the entities `keys`: a backend with
    /// costly round trips may load them all at once. The default does
    /// nothing; reads must return the same answers either way.
    fn prefetch(
        &mut self,
        terminal: &str,
        op_ids: &[OpId],
        keys: &[EntityKey],
    ) -> Result<(), StorageError> {
        let _ = (terminal, op_ids, keys);
        Ok(())
    }
}

/// Server-side storage: per-partition entities, change log and audit trail,
/// and the per-tenant idempotency ledger.
///
/// Implementations must be safe to share between threads; every call is
/// independent (no session state between calls).
pub trait ServerStore: Send + Sync {
    /// Runs `work` inside one write transaction on `partition` and commits
    /// what it wrote if it returns `Ok`; if it returns `Err` (or the commit
    /// fails) nothing it wrote is kept.
    ///
    /// Write transactions of one partition must be serialisable with respect
    /// to each other (see the module docs). A backend may run `work` again
    /// after a transient failure (e.g. a PostgreSQL serialization failure),
    /// so `work` must have no effect outside the transaction.
    fn transaction<R, F>(&self, partition: &Partition, mut work: F) -> Result<R, StorageError>
    where
        Self: Sized,
        F: FnMut(&mut dyn StoreTx) -> Result<R, StorageError>,
    {
        let mut out = None;
        self.transaction_dyn(partition, &mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        Ok(out.expect("a committed transaction has run its work"))
    }

    /// [`ServerStore::transaction`] in the form a trait object can offer:
    /// what a backend implements (the contract is the same).
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;

    /// The changes with a cursor strictly greater than `since`, in cursor
    /// order, at most `limit` of them.
    fn changes(
        &self,
        partition: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError>;

    /// Live entities (no tombstones) ordered by `(collection, id)` (byte-wise),
    /// strictly after `after`, at most `limit` of them, with the head cursor
    /// read in the same read transaction.
    fn snapshot(
        &self,
        partition: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError>;

    /// Every live entity of one collection (any order), with the head cursor
    /// read in the same read transaction. Used for reconcile digests.
    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError>;

    /// The cursor of the latest committed change (0: none yet).
    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError>;

    /// The partition's audit trail in the order it was written.
    fn audit(&self, partition: &Partition) -> Result<Vec<AuditRow>, StorageError>;

    /// Removes, in every partition, the ledger rows of mutations that were
    /// both applied before `before_ms` and made before it (their op id's
    /// time; see [`ledger_floor`]); returns how many. The service refuses
    /// an op made before the window with `OP_EXPIRED` when it has no row,
    /// so a pruned op is never applied twice.
    fn prune_ledger(&self, before_ms: u64) -> Result<u64, StorageError>;
}

/// The smallest op id made at `before_ms`: ULIDs in canonical text sort by
/// their time, so `op_id < ledger_floor(t)` is "made before `t`" in SQL too.
pub fn ledger_floor(before_ms: u64) -> OpId {
    OpId::from_parts(before_ms, 0)
}
