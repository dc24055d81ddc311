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

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Statement};
use tidesync::{Cursor, EntityKey, OpId};

use super::migrate;
use super::pool::Pool;
use super::sql::{decode_json, encode_json, from_sql_int, to_sql_int};
use super::staged::{CommitFailures, CommittedReads, StagedTx, Writes};
use super::{
    AuditRow, Change, Credential, CredentialStore, EntitiesAt, LedgerEntry, Partition, ServerStore,
    StorageBackend, StorageError, StoreTx, StoredEntity,
};
use crate::context::TerminalContext;

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

fn prepare(mut client: Client) -> Result<PgConn, StorageError> {
    let mut p = |sql: &str| client.prepare(sql).map_err(backend);
    let st = Statements {
        lock_head: p("SELECT head FROM partitions WHERE tenant = $1 AND branch = $2 FOR UPDATE")?,
        insert_partition: p(
            "INSERT INTO partitions (tenant, branch, head) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        )?,
        set_head: p("UPDATE partitions SET head = $3 WHERE tenant = $1 AND branch = $2")?,
        entity: p("SELECT state, cursor FROM entities
                   WHERE tenant = $1 AND branch = $2 AND collection = $3 AND id = $4")?,
        ledger: p("SELECT fingerprint, collection, entity_id, version, cursor FROM ledger
                   WHERE tenant = $1 AND terminal = $2 AND op_id = $3")?,
        ledger_many: p("SELECT op_id, fingerprint, collection, entity_id, version, cursor FROM ledger
                        WHERE tenant = $1 AND terminal = $2 AND op_id = ANY($3::text[])")?,
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
            "INSERT INTO ledger (tenant, terminal, op_id, fingerprint, collection, entity_id, version, cursor)
             SELECT $1, t, o, f, c, e, v, cu
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
               AS x(t, o, f, c, e, v, cu)",
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
        let pool = Pool::new(32, move || prepare(connect(&u2, s2.as_deref())?));
        pool.with(|_| true, |_| Ok(()))?;
        Ok(PgStore {
            url: url.to_owned(),
            schema: schema.map(str::to_owned),
            pool,
            fail_commits: CommitFailures::default(),
            drop_schema: false,
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

/// Reads inside a write transaction.
struct PgReads<'a, 't> {
    tx: &'a mut postgres::Transaction<'t>,
    st: &'a Statements,
}

fn ledger_row(r: &postgres::Row, offset: usize) -> LedgerEntry {
    LedgerEntry {
        fingerprint: r.get(offset),
        key: EntityKey::new(
            r.get::<_, String>(offset + 1),
            r.get::<_, String>(offset + 2),
        ),
        version: from_sql_int(r.get(offset + 3)),
        cursor: Cursor(from_sql_int(r.get(offset + 4))),
    }
}

impl CommittedReads for PgReads<'_, '_> {
    fn head(&mut self, partition: &Partition) -> Result<Cursor, StorageError> {
        head_in(self.tx, self.st, partition)
    }

    fn entity(
        &mut self,
        p: &Partition,
        key: &EntityKey,
    ) -> Result<Option<StoredEntity>, StorageError> {
        let row = self
            .tx
            .query_opt(
                &self.st.entity,
                &[&p.tenant, &p.branch, &key.collection, &key.id],
            )
            .map_err(backend)?;
        row.map(|r| {
            Ok(StoredEntity {
                state: decode_json(r.get::<_, &str>(0))?,
                cursor: Cursor(from_sql_int(r.get(1))),
            })
        })
        .transpose()
    }

    fn ledger(
        &mut self,
        tenant: &str,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let row = self
            .tx
            .query_opt(&self.st.ledger, &[&tenant, &terminal, &op_id.0])
            .map_err(backend)?;
        Ok(row.map(|r| ledger_row(&r, 0)))
    }

    fn ledger_batch(
        &mut self,
        tenant: &str,
        terminal: &str,
        op_ids: &[OpId],
    ) -> Result<Option<HashMap<OpId, LedgerEntry>>, StorageError> {
        let ops: Vec<&str> = op_ids.iter().map(OpId::as_str).collect();
        let rows = self
            .tx
            .query(&self.st.ledger_many, &[&tenant, &terminal, &ops])
            .map_err(backend)?;
        Ok(Some(
            rows.iter()
                .map(|r| (OpId(r.get::<_, String>(0)), ledger_row(r, 1)))
                .collect(),
        ))
    }
}

/// Writes what a transaction staged in four bulk statements (one column
/// vector per bulk-insert column), then the new head: a batch of 100
/// mutations costs a handful of round trips, not six per mutation.
#[allow(clippy::type_complexity)]
fn write(
    tx: &mut postgres::Transaction<'_>,
    st: &Statements,
    p: &Partition,
    writes: Writes,
) -> Result<(), StorageError> {
    let new_head = writes.new_head();
    if !writes.changes.is_empty() {
        let (cursors, states): (Vec<i64>, Vec<String>) = writes
            .changes
            .iter()
            .map(|c| (to_sql_int(c.cursor.0), encode_json(&c.state)))
            .unzip();
        tx.execute(
            &st.insert_changes,
            &[&p.tenant, &p.branch, &cursors, &states],
        )
        .map_err(backend)?;
    }
    if !writes.entities.is_empty() {
        let mut cols: (
            Vec<String>,
            Vec<String>,
            Vec<i64>,
            Vec<i64>,
            Vec<i64>,
            Vec<String>,
        ) = Default::default();
        for e in writes.entities.values() {
            let s = &e.state;
            cols.0.push(s.collection.clone());
            cols.1.push(s.id.clone());
            cols.2.push(to_sql_int(s.version));
            cols.3.push(i64::from(s.deleted));
            cols.4.push(to_sql_int(e.cursor.0));
            cols.5.push(encode_json(s));
        }
        tx.execute(
            &st.upsert_entities,
            &[
                &p.tenant, &p.branch, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5,
            ],
        )
        .map_err(backend)?;
    }
    if !writes.ledger.is_empty() {
        let mut cols: (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<i64>,
            Vec<i64>,
        ) = Default::default();
        for (terminal, op, e) in writes.ledger {
            cols.0.push(terminal);
            cols.1.push(op.0);
            cols.2.push(e.fingerprint);
            cols.3.push(e.key.collection);
            cols.4.push(e.key.id);
            cols.5.push(to_sql_int(e.version));
            cols.6.push(to_sql_int(e.cursor.0));
        }
        tx.execute(
            &st.insert_ledger,
            &[
                &p.tenant, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
            ],
        )
        .map_err(backend)?;
    }
    if !writes.audit.is_empty() {
        let rows: Vec<String> = writes.audit.iter().map(encode_json).collect();
        tx.execute(&st.insert_audit, &[&p.tenant, &p.branch, &rows])
            .map_err(backend)?;
    }
    if let Some(head) = new_head {
        tx.execute(&st.set_head, &[&p.tenant, &p.branch, &to_sql_int(head.0)])
            .map_err(backend)?;
    }
    Ok(())
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
            let mut staged = StagedTx::with_head(partition, reads, head);
            work(&mut staged)?; // dropping `tx` rolls back
            let writes = staged.into_writes();
            let injected = self.fail_commits.check(&writes);
            write(&mut tx, st, partition, writes)?;
            injected?;
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
}

fn credential_row(r: &postgres::Row) -> Credential {
    Credential {
        key_hash: r.get(0),
        key_id: r.get(1),
        context: TerminalContext::new(
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, String>(4),
        ),
        created_at_ms: from_sql_int(r.get(5)),
        expires_at_ms: r.get::<_, Option<i64>>(6).map(from_sql_int),
        revoked_at_ms: r.get::<_, Option<i64>>(7).map(from_sql_int),
    }
}

impl CredentialStore for PgStore {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.conn(|conn| {
            conn.client
                .execute(
                    "INSERT INTO credentials (key_hash, key_id, tenant, branch, terminal,
                         created_at_ms, expires_at_ms, revoked_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &c.key_hash,
                        &c.key_id,
                        &c.context.tenant,
                        &c.context.branch,
                        &c.context.terminal,
                        &to_sql_int(c.created_at_ms),
                        &c.expires_at_ms.map(to_sql_int),
                        &c.revoked_at_ms.map(to_sql_int),
                    ],
                )
                .map_err(backend)?;
            Ok(())
        })
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        self.conn(|conn| {
            let row = conn
                .client
                .query_opt(
                    "SELECT key_hash, key_id, tenant, branch, terminal, created_at_ms,
                            expires_at_ms, revoked_at_ms
                     FROM credentials WHERE key_hash = $1",
                    &[&key_hash],
                )
                .map_err(backend)?;
            Ok(row.as_ref().map(credential_row))
        })
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        self.conn(|conn| {
            let n = conn
                .client
                .execute(
                    "UPDATE credentials SET revoked_at_ms = $2
                     WHERE key_id = $1 AND revoked_at_ms IS NULL",
                    &[&key_id, &to_sql_int(at_ms)],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        self.conn(|conn| {
            conn.client
                .execute(
                    "UPDATE credentials SET revoked_at_ms = $4
                     WHERE tenant = $1 AND branch = $2 AND terminal = $3
                       AND revoked_at_ms IS NULL",
                    &[&ctx.tenant, &ctx.branch, &ctx.terminal, &to_sql_int(at_ms)],
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
}
