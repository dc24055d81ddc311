//! [`Backend`]: the storage backend the server runs on, picked at run time
//! (by `--database`), behind one trait object.

use std::fmt;

use tidesync::{Cursor, EntityKey};

use super::{
    AuditRow, Change, Credential, CredentialStore, EntitiesAt, MakeCredential, MemoryServerStore,
    PairFailure, PairingCode, Partition, PgStore, ServerStore, SqliteStore, SqliteSync,
    StorageError, StoreTx,
};
use crate::context::TerminalContext;

/// What every storage backend offers the server: the sync data
/// ([`ServerStore`]), the credentials kept in the same database
/// ([`CredentialStore`]), its name, and the fault injection tests use.
pub trait StorageBackend: ServerStore + CredentialStore + fmt::Debug {
    /// The backend's name (`memory`, `sqlite`, `postgres`), for logs, the
    /// health check and metrics.
    fn kind(&self) -> &'static str;

    /// Fault injection for tests: while `on`, every write transaction fails
    /// at commit with [`StorageError::Backend`] and keeps nothing;
    /// transactions that wrote nothing still succeed.
    fn fail_commits(&self, on: bool);

    /// Calls `on_change` whenever any server process on this database
    /// commits a change of a partition (PostgreSQL: LISTEN/NOTIFY), from a
    /// thread of its own. False: the backend cannot (SQLite and memory are
    /// served by one process; the HTTP layer pokes in-process).
    fn watch_changes(&self, on_change: ChangeListener) -> bool {
        let _ = on_change;
        false
    }
}

/// A callback of [`StorageBackend::watch_changes`]: a partition's log
/// moved to a cursor.
pub type ChangeListener = Box<dyn Fn(&Partition, Cursor) + Send + Sync>;

/// One of the storage backends, chosen at run time.
#[derive(Debug)]
pub struct Backend(Box<dyn StorageBackend>);

impl Backend {
    /// The backend `store`.
    pub fn new(store: impl StorageBackend + 'static) -> Self {
        Backend(Box::new(store))
    }

    /// An empty in-memory backend.
    pub fn memory() -> Self {
        Self::new(MemoryServerStore::new())
    }

    /// Opens a backend from a database setting: `memory:`, a
    /// `postgres://`/`postgresql://` URL, or a SQLite file path (optionally
    /// prefixed with `sqlite:`). SQL databases are created/migrated.
    pub fn open(database: &str, sqlite_sync: SqliteSync) -> Result<Self, StorageError> {
        if database == "memory:" {
            Ok(Self::memory())
        } else if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            Ok(Self::new(PgStore::open(database)?))
        } else {
            let path = database.strip_prefix("sqlite:").unwrap_or(database);
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(StorageError::backend)?;
                }
            }
            Ok(Self::new(SqliteStore::open(path, sqlite_sync)?))
        }
    }

    /// The backend's name (`memory`, `sqlite`, `postgres`).
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// Fault injection for tests: while `on`, write transactions fail at
    /// commit and keep nothing.
    pub fn fail_commits(&self, on: bool) {
        self.0.fail_commits(on);
    }

    /// See [`StorageBackend::watch_changes`].
    pub fn watch_changes(&self, on_change: ChangeListener) -> bool {
        self.0.watch_changes(on_change)
    }
}

impl<S: StorageBackend + 'static> From<S> for Backend {
    fn from(store: S) -> Self {
        Self::new(store)
    }
}

// The trait object's methods, handed through.

impl ServerStore for Backend {
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.0.transaction_dyn(partition, work)
    }

    fn changes(
        &self,
        partition: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        self.0.changes(partition, since, limit)
    }

    fn snapshot(
        &self,
        partition: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError> {
        self.0.snapshot(partition, after, limit)
    }

    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError> {
        self.0.live_entities(partition, collection)
    }

    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError> {
        self.0.head(partition)
    }

    fn prune_ledger(&self, before_ms: u64) -> Result<u64, StorageError> {
        self.0.prune_ledger(before_ms)
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditRow>, StorageError> {
        self.0.audit(partition)
    }
}

impl CredentialStore for Backend {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.0.put_credential(c)
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        self.0.credential(key_hash)
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        self.0.revoke_credential(key_id, at_ms)
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        self.0.revoke_terminal(ctx, at_ms)
    }

    fn put_pairing_code(&self, code: &PairingCode) -> Result<(), StorageError> {
        self.0.put_pairing_code(code)
    }

    fn redeem_pairing_code(
        &self,
        code_hash: &str,
        now_ms: u64,
        make: &mut MakeCredential<'_>,
    ) -> Result<Result<Credential, PairFailure>, StorageError> {
        self.0.redeem_pairing_code(code_hash, now_ms, make)
    }
}
