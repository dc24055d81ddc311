//! The PostgreSQL backend, for several server processes on one database.
//! Schema from `migrations/postgres/`.
//!
//! # Why the cursor never skips
//!
//! A sequence hands out numbers at insert time, not at commit time: with two
//! writers, cursor 8 can commit before cursor 7, a reader pages past 8, and
//! 7 is never seen. Here every write transaction first locks its
//! partition's row (`SELECT head … FOR UPDATE`) and takes the next cursors
//! from it, so the writers of a partition run one after another, cursor
//! order is commit order, and a change becomes visible before the lock is
//! released to the next writer. A rolled-back transaction gives its cursor
//! back (the head row is only updated on success). Reads of a page and of
//! the head run in one `REPEATABLE READ` snapshot.

mod credentials;
mod transaction;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls, Statement};
use tidesync::{Cursor, EntityKey};

use self::transaction::{write, PgReads};
use super::migrate;
use super::pool::Pool;
use super::sql::{decode_json, from_sql_int, to_sql_int};
use super::staged::{CommitFailures, StagedTx};
use super::{
    AuditRow, Change, ChangeListener, EntitiesAt, Partition, ServerStore, StorageBackend,
    StorageError, StoreTx,
};

/// A driver error as a storage error (unique violations kept apart).
fn backend(e: postgres::Error) -> StorageError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StorageError::Constraint(e.to_string());
    }
    StorageError::backend(e)
}

/// Statements prepared once per connection.
struct Statements {
    lock_head: Statement,
    insert_partition: Statement,
    set_head: Statement,
    entity: Statement,
    entities_many: Statement,
    ledger: Statement,
    ledger_many: Statement,
    insert_changes: Statement,
    upsert_entities: Statement,
    insert_ledger: Statement,
    insert_audit: Statement,
    head: Statement,
    changes: Statement,
    snapshot_first: Statement,
    snapshot_after: Statement,
    live: Statement,
    notify: Statement,
    /// The NOTIFY channel of this database and schema ([`channel_name`]).
    channel: String,
}

struct PgConn {
    client: Client,
    st: Statements,
}

fn connect(url: &str, schema: Option<&str>) -> Result<Client, StorageError> {
    let mut client = Client::connect(url, NoTls).map_err(backend)?;
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .map_err(backend)?;
    }
    Ok(client)
}

/// The channel a write's NOTIFY goes to: one per schema, since channels
/// are database-wide and tests share one database across schemas.
fn channel_name(schema: Option<&str>) -> String {
    match schema {
        None => "tidesync_changes".to_owned(),
        Some(s) => format!("tidesync_changes_{s}"),
    }
}

fn prepare(mut client: Client, schema: Option<&str>) -> Result<PgConn, StorageError> {
    let mut p = |sql: &str| client.prepare(sql).map_err(backend);
    let st = Statements {
        lock_head: p("SELECT head FROM partitions WHERE tenant = $1 AND branch = $2 FOR UPDATE")?,
        insert_partition: p(
            "INSERT INTO partitions (tenant, branch, head) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        )?,
        set_head: p("UPDATE partitions SET head = $3 WHERE tenant = $1 AND branch = $2")?,
        entity: p("SELECT state, cursor FROM entities
                   WHERE tenant = $1 AND branch = $2 AND collection = $3 AND id = $4")?,
        // One index probe per key, whatever the planner knows of the
        // table: a plain join with the unnest (no LIMIT in a LATERAL) was
        // planned as a hash join over a scan of the whole partition when
        // the statistics were missing or the plan generic.
        entities_many: p("SELECT k.c, k.i, e.state, e.cursor
                          FROM unnest($3::text[], $4::text[]) AS k(c, i)
                          CROSS JOIN LATERAL (
                            SELECT state, cursor FROM entities
                            WHERE tenant = $1 AND branch = $2 AND collection = k.c AND id = k.i
                            LIMIT 1) AS e")?,
        ledger: p("SELECT fingerprint, collection, entity_id, version, cursor, applied_at_ms FROM ledger
                   WHERE tenant = $1 AND branch = $2 AND terminal = $3 AND op_id = $4")?,
        // The same for the ledger: `op_id = ANY($4)` was planned (generic
        // plan, no statistics) as a scan of the terminal's whole ledger
        // with the op ids as a filter.
        ledger_many: p("SELECT k.o, l.fingerprint, l.collection, l.entity_id, l.version, l.cursor,
                               l.applied_at_ms
                        FROM unnest($4::text[]) AS k(o)
                        CROSS JOIN LATERAL (
                          SELECT fingerprint, collection, entity_id, version, cursor, applied_at_ms
                          FROM ledger
                          WHERE tenant = $1 AND branch = $2 AND terminal = $3 AND op_id = k.o
                          LIMIT 1) AS l")?,
        insert_changes: p("INSERT INTO changes (tenant, branch, cursor, state)
                           SELECT $1, $2, c, s FROM unnest($3::bigint[], $4::text[]) AS t(c, s)")?,
        upsert_entities: p(
            "INSERT INTO entities (tenant, branch, collection, id, version, deleted, cursor, state)
             SELECT $1, $2, c, i, v, d, cu, s
             FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
               AS t(c, i, v, d, cu, s)
             ON CONFLICT (tenant, branch, collection, id) DO UPDATE SET
               version = excluded.version, deleted = excluded.deleted,
               cursor = excluded.cursor, state = excluded.state",
        )?,
        insert_ledger: p(
            "INSERT INTO ledger (tenant, branch, terminal, op_id, fingerprint, collection, entity_id,
                                 version, cursor, applied_at_ms)
             SELECT $1, $2, t, o, f, c, e, v, cu, at
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[],
                         $9::bigint[], $10::bigint[])
               AS x(t, o, f, c, e, v, cu, at)",
        )?,
        insert_audit: p("INSERT INTO audit (tenant, branch, entry)
                         SELECT $1, $2, e FROM unnest($3::text[]) WITH ORDINALITY AS t(e, n)
                         ORDER BY n")?,
        head: p("SELECT head FROM partitions WHERE tenant = $1 AND branch = $2")?,
        changes: p("SELECT cursor, state FROM changes
                    WHERE tenant = $1 AND branch = $2 AND cursor > $3
                    ORDER BY cursor LIMIT $4")?,
        snapshot_first: p("SELECT state FROM entities
                           WHERE tenant = $1 AND branch = $2 AND deleted = 0
                           ORDER BY collection, id LIMIT $3")?,
        snapshot_after: p("SELECT state FROM entities
                           WHERE tenant = $1 AND branch = $2 AND deleted = 0
                             AND (collection, id) > ($3, $4)
                           ORDER BY collection, id LIMIT $5")?,
        live: p("SELECT state FROM entities
                 WHERE tenant = $1 AND branch = $2 AND collection = $3 AND deleted = 0")?,
        notify: p("SELECT pg_notify($1, $2)")?,
        channel: channel_name(schema),
    };
    Ok(PgConn { client, st })
}

/// Serialises migrations of concurrent server processes.
const MIGRATION_LOCK: i64 = 0x7469_6465_7379_6e63; // "tidesync"

fn migrate(client: &mut Client) -> Result<(), StorageError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    let result = (|| {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                     checksum TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
            )
            .map_err(backend)?;
        let applied: Vec<(i64, String)> = client
            .query(
                "SELECT version, checksum FROM schema_migrations ORDER BY version",
                &[],
            )
            .map_err(backend)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for m in migrate::pending(migrate::POSTGRES, &applied)? {
            let mut tx = client.transaction().map_err(backend)?;
            tx.batch_execute(m.sql).map_err(backend)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &m.version,
                    &m.name,
                    &m.checksum(),
                    &to_sql_int(tidesync::env::unix_now_ms()),
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(())
    })();
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    result
}

/// PostgreSQL server storage.
pub struct PgStore {
    url: String,
    schema: Option<String>,
    pool: Pool<PgConn>,
    fail_commits: CommitFailures,
    drop_schema: bool,
    /// Set on drop: the LISTEN thread ([`PgStore::watch_changes`]) stops.
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL), migrates, and pools connections.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_in_schema(url, None)
    }

    /// As [`PgStore::open`], with every table in `schema` (created if
    /// needed). Lets tests share one database.
    pub fn open_in_schema(url: &str, schema: Option<&str>) -> Result<Self, StorageError> {
        if let Some(s) = schema {
            if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(StorageError::Corrupt(format!("bad schema name {s:?}")));
            }
            let mut c = connect(url, None)?;
            c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))
                .map_err(backend)?;
        }
        let mut first = connect(url, schema)?;
        migrate(&mut first)?;
        let (u2, s2) = (url.to_owned(), schema.map(str::to_owned));
        let pool = Pool::new(32, move || {
            prepare(connect(&u2, s2.as_deref())?, s2.as_deref())
        });
        pool.with(|_| true, |_| Ok(()))?;
        Ok(PgStore {
            url: url.to_owned(),
            schema: schema.map(str::to_owned),
            pool,
            fail_commits: CommitFailures::default(),
            drop_schema: false,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A store in a new schema that is dropped with the store. For tests.
    pub fn temporary(url: &str, schema: &str) -> Result<Self, StorageError> {
        let mut c = connect(url, None)?;
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .map_err(backend)?;
        let mut store = Self::open_in_schema(url, Some(schema))?;
        store.drop_schema = true;
        Ok(store)
    }

    fn conn<R>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.pool.with(|c| !c.client.is_closed(), f)
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &Statements) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.conn(|c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(backend)?;
            let out = f(&mut tx, &c.st)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The sync `postgres` client blocks on a runtime of its own when it
        // closes, which panics on a thread that drives a tokio runtime (the
        // last owner of a store may be one). Close on a plain thread.
        let conns = self.pool.drain();
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let drop_schema = self.drop_schema;
        let closer = std::thread::spawn(move || {
            drop(conns);
            if let (true, Some(s)) = (drop_schema, schema) {
                if let Ok(mut c) = connect(&url, None) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"));
                }
            }
        });
        let _ = closer.join();
    }
}

/// The rows of a query whose first column is JSON of `T`.
fn json_rows<T: serde::de::DeserializeOwned>(
    rows: &[postgres::Row],
) -> Result<Vec<T>, StorageError> {
    rows.iter()
        .map(|r| decode_json(r.get::<_, &str>(0)))
        .collect()
}

fn head_in(
    tx: &mut postgres::Transaction<'_>,
    st: &Statements,
    p: &Partition,
) -> Result<Cursor, StorageError> {
    let row = tx
        .query_opt(&st.head, &[&p.tenant, &p.branch])
        .map_err(backend)?;
    Ok(Cursor(row.map_or(0, |r| from_sql_int(r.get(0)))))
}

impl ServerStore for PgStore {
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.conn(|c| {
            let st = &c.st;
            let mut tx = c.client.transaction().map_err(backend)?;
            let key: [&(dyn postgres::types::ToSql + Sync); 2] =
                [&partition.tenant, &partition.branch];
            // First statement: lock the partition's head (create it once).
            let mut row = tx.query_opt(&st.lock_head, &key).map_err(backend)?;
            if row.is_none() {
                tx.execute(&st.insert_partition, &key).map_err(backend)?;
                row = tx.query_opt(&st.lock_head, &key).map_err(backend)?;
            }
            let head = Cursor(row.map_or(0, |r| from_sql_int(r.get(0))));
            let reads = PgReads { tx: &mut tx, st };
            // On an error, dropping `tx` rolls back.
            let writes = StagedTx::with_head(partition, reads, head).run(work)?;
            write(&mut tx, st, partition, &writes)?;
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
        self.conn(|c| {
            let rows = c
                .client
                .query(
                    &c.st.changes,
                    &[
                        &partition.tenant,
                        &partition.branch,
                        &to_sql_int(since.0),
                        &to_sql_int(limit as u64),
                    ],
                )
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(Change {
                        cursor: Cursor(from_sql_int(r.get(0))),
                        state: decode_json(r.get::<_, &str>(1))?,
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
        self.read(|tx, st| {
            let head = head_in(tx, st, partition)?;
            let (t, b, l) = (
                &partition.tenant,
                &partition.branch,
                to_sql_int(limit as u64),
            );
            let rows = match after {
                None => tx.query(&st.snapshot_first, &[t, b, &l]),
                Some(k) => tx.query(&st.snapshot_after, &[t, b, &k.collection, &k.id, &l]),
            }
            .map_err(backend)?;
            Ok(EntitiesAt {
                entities: json_rows(&rows)?,
                head,
            })
        })
    }

    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError> {
        self.read(|tx, st| {
            let head = head_in(tx, st, partition)?;
            let rows = tx
                .query(
                    &st.live,
                    &[&partition.tenant, &partition.branch, &collection],
                )
                .map_err(backend)?;
            Ok(EntitiesAt {
                entities: json_rows(&rows)?,
                head,
            })
        })
    }

    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError> {
        self.conn(|c| {
            let row = c
                .client
                .query_opt(&c.st.head, &[&partition.tenant, &partition.branch])
                .map_err(backend)?;
            Ok(Cursor(row.map_or(0, |r| from_sql_int(r.get(0)))))
        })
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditRow>, StorageError> {
        self.conn(|c| {
            let rows = c
                .client
                .query(
                    "SELECT entry FROM audit WHERE tenant = $1 AND branch = $2 ORDER BY seq",
                    &[&partition.tenant, &partition.branch],
                )
                .map_err(backend)?;
            json_rows(&rows)
        })
    }

    fn prune_ledger(&self, before_ms: u64) -> Result<u64, StorageError> {
        let floor = super::ledger_floor(before_ms);
        self.conn(|c| {
            c.client
                .execute(
                    "DELETE FROM ledger WHERE applied_at_ms < $1 AND op_id < $2",
                    &[&to_sql_int(before_ms), &floor.0],
                )
                .map_err(backend)
        })
    }
}

impl StorageBackend for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn fail_commits(&self, on: bool) {
        self.fail_commits.set(on);
    }

    fn watch_changes(&self, on_change: ChangeListener) -> bool {
        let (url, schema, stop) = (self.url.clone(), self.schema.clone(), self.stop.clone());
        let spawned = std::thread::Builder::new()
            .name("tidesync-pg-listen".into())
            .spawn(move || listen(&url, schema.as_deref(), &stop, &on_change));
        spawned.is_ok()
    }
}

/// The payload of a write's NOTIFY: the partition and its new head.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Notice {
    pub(super) t: String,
    pub(super) b: String,
    pub(super) c: u64,
}

/// `LISTEN`s on the store's channel on a connection of its own until
/// `stop`, handing every notice to `on_change`; a lost connection is
/// reopened after a second (pokes sent meanwhile are lost: the clients'
/// polls cover them).
fn listen(url: &str, schema: Option<&str>, stop: &AtomicBool, on_change: &ChangeListener) {
    let channel = channel_name(schema);
    while !stop.load(Ordering::SeqCst) {
        let mut client = match connect(url, None) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")) {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        while !stop.load(Ordering::SeqCst) && !client.is_closed() {
            let mut notes = client.notifications();
            let mut it = notes.timeout_iter(Duration::from_millis(250));
            match it.next() {
                Ok(Some(n)) => {
                    if let Ok(notice) = serde_json::from_str::<Notice>(n.payload()) {
                        on_change(&Partition::new(notice.t, notice.b), Cursor(notice.c));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
        // The sync client closes on a plain thread: this one.
        drop(client);
    }
}
