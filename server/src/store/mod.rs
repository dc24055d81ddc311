//! The storage backends and [`Backend`], which picks one at run time.
//!
//! * [`SqliteStore`]: embedded SQLite, the default (a file path).
//! * [`PgStore`]: PostgreSQL by URL, for several server processes.
//! * [`crate::MemoryStore`]: in memory, for tests and demos (not persistent).

pub mod migrate;
mod pool;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Mutex;

use tidesync::{Cursor, EntityKey};

pub use self::postgres::PgStore;
pub use self::sqlite::{SqliteStore, SqliteSync};
use crate::auth::{Credential, CredentialStore};
use crate::context::TerminalContext;
use crate::memory::MemoryStore;
use crate::storage::{
    AuditEntry, Change, EntitiesAt, Partition, ServerStore, StorageError, StoreTx,
};

/// Credentials kept in memory (with [`MemoryStore`]).
#[derive(Debug, Default)]
pub struct MemoryCredentials {
    by_hash: Mutex<HashMap<String, Credential>>,
}

impl MemoryCredentials {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Credential>> {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CredentialStore for MemoryCredentials {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.map().insert(c.key_hash.clone(), c.clone());
        Ok(())
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        Ok(self.map().get(key_hash).cloned())
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        let mut map = self.map();
        let hit = map
            .values_mut()
            .find(|c| c.key_id == key_id && c.revoked_at_ms.is_none());
        Ok(hit.map(|c| c.revoked_at_ms = Some(at_ms)).is_some())
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        let mut n = 0;
        for c in self.map().values_mut() {
            if c.context == *ctx && c.revoked_at_ms.is_none() {
                c.revoked_at_ms = Some(at_ms);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// One of the storage backends, chosen at run time (by `--database`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Backend {
    /// In memory (not persistent).
    Memory(MemoryStore, MemoryCredentials),
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl Backend {
    /// An empty in-memory backend.
    pub fn memory() -> Self {
        Backend::Memory(MemoryStore::new(), MemoryCredentials::default())
    }

    /// Opens a backend from a database setting: `memory:`, a
    /// `postgres://`/`postgresql://` URL, or a SQLite file path (optionally
    /// prefixed with `sqlite:`). SQL databases are created/migrated.
    pub fn open(database: &str, sqlite_sync: SqliteSync) -> Result<Self, StorageError> {
        if database == "memory:" {
            Ok(Self::memory())
        } else if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            Ok(Backend::Postgres(PgStore::open(database)?))
        } else {
            let path = database.strip_prefix("sqlite:").unwrap_or(database);
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(StorageError::backend)?;
                }
            }
            Ok(Backend::Sqlite(SqliteStore::open(path, sqlite_sync)?))
        }
    }

    /// The backend's name (`memory`, `sqlite`, `postgres`).
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(..) => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Fault injection for tests: while `on`, write transactions fail at
    /// commit and keep nothing.
    pub fn fail_commits(&self, on: bool) {
        match self {
            Backend::Memory(m, _) => m.fail_commits(on),
            Backend::Sqlite(s) => s.fail_commits(on),
            Backend::Postgres(p) => p.fail_commits(on),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Memory($s, _) => $e,
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl ServerStore for Backend {
    fn transaction<R, F>(&self, partition: &Partition, work: F) -> Result<R, StorageError>
    where
        F: FnMut(&mut dyn StoreTx) -> Result<R, StorageError>,
    {
        each!(self, s => s.transaction(partition, work))
    }

    fn changes(
        &self,
        partition: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        each!(self, s => s.changes(partition, since, limit))
    }

    fn snapshot(
        &self,
        partition: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError> {
        each!(self, s => s.snapshot(partition, after, limit))
    }

    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError> {
        each!(self, s => s.live_entities(partition, collection))
    }

    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError> {
        each!(self, s => s.head(partition))
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditEntry>, StorageError> {
        each!(self, s => s.audit(partition))
    }
}

impl CredentialStore for Backend {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        match self {
            Backend::Memory(_, m) => m.put_credential(c),
            Backend::Sqlite(s) => s.put_credential(c),
            Backend::Postgres(p) => p.put_credential(c),
        }
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        match self {
            Backend::Memory(_, m) => m.credential(key_hash),
            Backend::Sqlite(s) => s.credential(key_hash),
            Backend::Postgres(p) => p.credential(key_hash),
        }
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        match self {
            Backend::Memory(_, m) => m.revoke_credential(key_id, at_ms),
            Backend::Sqlite(s) => s.revoke_credential(key_id, at_ms),
            Backend::Postgres(p) => p.revoke_credential(key_id, at_ms),
        }
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        match self {
            Backend::Memory(_, m) => m.revoke_terminal(ctx, at_ms),
            Backend::Sqlite(s) => s.revoke_terminal(ctx, at_ms),
            Backend::Postgres(p) => p.revoke_terminal(ctx, at_ms),
        }
    }
}
