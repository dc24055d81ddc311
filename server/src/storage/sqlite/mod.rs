//! The embedded SQLite backend (the default): one database file in WAL
//! mode, schema from `migrations/sqlite/`.
//!
//! Write transactions start with `BEGIN IMMEDIATE`, which takes the
//! database's write lock up front: writers are serialised, so cursors are
//! handed out in commit order (the cursor contract of [`crate::storage`]).
//! Reads run in deferred transactions, which in WAL mode see one consistent
//! snapshot and never block the writer.

mod credentials;
mod transaction;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tidesync::{Cursor, EntityKey};

use self::transaction::{write, SqliteReads};
use super::migrate::{self, Migration};
use super::pool::Pool;
use super::sql::{decode_json, from_sql_int, to_sql_int};
use super::staged::{CommitFailures, StagedTx};
use super::{
    AuditRow, Change, EntitiesAt, Partition, ServerStore, StorageBackend, StorageError, StoreTx,
};

/// How hard SQLite syncs to disk at commit (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// Every commit is durable when acknowledged (fsync of the WAL).
    #[default]
    Full,
    /// Faster; the last commits before a power loss (not a crash of the
    /// process) may be lost. The database is never corrupted.
    Normal,
}

/// SQLite server storage.
pub struct SqliteStore {
    path: PathBuf,
    pool: Pool<Connection>,
    fail_commits: CommitFailures,
    remove_on_drop: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A driver error as a storage error (constraint violations kept apart).
fn backend(e: rusqlite::Error) -> StorageError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            return StorageError::Constraint(e.to_string());
        }
    }
    StorageError::backend(e)
}

fn open_connection(path: &Path, sync: SqliteSync, first: bool) -> Result<Connection, StorageError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    if first {
        // WAL is a property of the file: set once, before the pool opens
        // other connections (changing it needs the database to itself).
        conn.execute_batch("PRAGMA journal_mode = WAL;")
            .map_err(backend)?;
    }
    let sync = match sync {
        SqliteSync::Full => "FULL",
        SqliteSync::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection, known: &[Migration]) -> Result<(), StorageError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )
    .map_err(backend)?;
    let applied: Vec<(i64, String)> = {
        let mut st = tx
            .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .map_err(backend)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    tx.commit().map_err(backend)?;
    for m in migrate::pending(known, &applied)? {
        // Each step in its own transaction.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let again: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if again.is_some() {
            continue; // another process applied it meanwhile
        }
        tx.execute_batch(m.sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                m.version,
                m.name,
                m.checksum(),
                to_sql_int(tidesync::env::unix_now_ms())
            ],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: impl AsRef<Path>, sync: SqliteSync) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let mut first = open_connection(&path, sync, true)?;
        migrate(&mut first, migrate::SQLITE)?;
        let p = path.clone();
        let pool = Pool::new(32, move || open_connection(&p, sync, false));
        pool.with(|_| true, |_| Ok(()))?;
        Ok(SqliteStore {
            path,
            pool,
            fail_commits: CommitFailures::default(),
            remove_on_drop: false,
        })
    }

    /// A store on a new file at `path` (an existing file is replaced) that
    /// deletes its files when dropped. For tests and benchmarks.
    pub fn temporary(path: impl AsRef<Path>, sync: SqliteSync) -> Result<Self, StorageError> {
        let path = path.as_ref();
        remove_files(path);
        let mut store = Self::open(path, sync)?;
        store.remove_on_drop = true;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.pool.with(|c| c.is_autocommit(), f)
    }

    /// The migration versions applied to the database.
    pub fn schema_versions(&self) -> Result<Vec<i64>, StorageError> {
        self.conn(|c| {
            let mut st = c
                .prepare("SELECT version FROM schema_migrations ORDER BY version")
                .map_err(backend)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }
}

fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if self.remove_on_drop {
            remove_files(&self.path);
        }
    }
}

fn read_head(tx: &rusqlite::Transaction<'_>, p: &Partition) -> Result<Cursor, StorageError> {
    let head: Option<i64> = tx
        .prepare_cached("SELECT head FROM partitions WHERE tenant = ?1 AND branch = ?2")
        .map_err(backend)?
        .query_row(params![p.tenant, p.branch], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(Cursor(head.map_or(0, from_sql_int)))
}

/// The rows of a query whose first column is JSON of `T`.
fn json_rows<T: serde::de::DeserializeOwned>(
    st: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, StorageError> {
    let rows = st
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(backend)?;
    rows.map(|r| decode_json(&r.map_err(backend)?)).collect()
}

impl ServerStore for SqliteStore {
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // On an error, dropping `tx` rolls back.
            let writes = StagedTx::new(partition, SqliteReads { tx: &tx }).run(work)?;
            write(&tx, partition, &writes)?;
            self.fail_commits.check(&writes)?;
            tx.commit().map_err(backend)
        })
    }

    fn changes(
        &self,
        partition: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        self.conn(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT cursor, state FROM changes
                     WHERE tenant = ?1 AND branch = ?2 AND cursor > ?3
                     ORDER BY cursor LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![
                        partition.tenant,
                        partition.branch,
                        to_sql_int(since.0),
                        to_sql_int(limit as u64)
                    ],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .map_err(backend)?;
            rows.map(|r| {
                let (cursor, state) = r.map_err(backend)?;
                Ok(Change {
                    cursor: Cursor(from_sql_int(cursor)),
                    state: decode_json(&state)?,
                })
            })
            .collect()
        })
    }

    fn snapshot(
        &self,
        partition: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError> {
        self.conn(|conn| {
            let tx = conn.transaction().map_err(backend)?;
            let head = read_head(&tx, partition)?;
            // The first page starts after ("", ""), below every key (a
            // collection name is never empty). One plain row-value range,
            // so each page is an index seek: an `OR` here made SQLite scan
            // the partition from its start for every page (1M entities
            // took minutes).
            let (c, id) = after.map_or(("", ""), |k| (k.collection.as_str(), k.id.as_str()));
            let entities = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT state FROM entities
                         WHERE tenant = ?1 AND branch = ?2 AND (collection, id) > (?3, ?4)
                           AND deleted = 0
                         ORDER BY collection, id LIMIT ?5",
                    )
                    .map_err(backend)?;
                json_rows(
                    &mut st,
                    params![
                        partition.tenant,
                        partition.branch,
                        c,
                        id,
                        to_sql_int(limit as u64)
                    ],
                )?
            };
            tx.commit().map_err(backend)?;
            Ok(EntitiesAt { entities, head })
        })
    }

    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError> {
        self.conn(|conn| {
            let tx = conn.transaction().map_err(backend)?;
            let head = read_head(&tx, partition)?;
            let entities = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT state FROM entities
                         WHERE tenant = ?1 AND branch = ?2 AND collection = ?3 AND deleted = 0",
                    )
                    .map_err(backend)?;
                json_rows(
                    &mut st,
                    params![partition.tenant, partition.branch, collection],
                )?
            };
            tx.commit().map_err(backend)?;
            Ok(EntitiesAt { entities, head })
        })
    }

    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError> {
        self.conn(|conn| {
            let tx = conn.transaction().map_err(backend)?;
            let head = read_head(&tx, partition)?;
            tx.commit().map_err(backend)?;
            Ok(head)
        })
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditRow>, StorageError> {
        self.conn(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT entry FROM audit WHERE tenant = ?1 AND branch = ?2 ORDER BY seq",
                )
                .map_err(backend)?;
            json_rows(&mut st, params![partition.tenant, partition.branch])
        })
    }

    fn prune_ledger(&self, before_ms: u64) -> Result<u64, StorageError> {
        let floor = super::ledger_floor(before_ms);
        self.conn(|conn| {
            conn.execute(
                "DELETE FROM ledger WHERE applied_at_ms < ?1 AND op_id < ?2",
                params![to_sql_int(before_ms), floor.0],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
    }
}

impl StorageBackend for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn fail_commits(&self, on: bool) {
        self.fail_commits.set(on);
    }
}
