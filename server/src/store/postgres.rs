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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Statement};
use tidesync::{Cursor, EntityKey, EntityState, OpId};

use super::migrate;
use super::pool::Pool;
use crate::auth::{Credential, CredentialStore};
use crate::context::TerminalContext;
use crate::storage::{
    AuditEntry, Change, EntitiesAt, LedgerEntry, Partition, ServerStore, StorageError, StoreTx,
    StoredEntity,
};

fn backend(e: postgres::Error) -> StorageError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StorageError::Constraint(e.to_string());
    }
    StorageError::backend(e)
}

fn corrupt(e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialising protocol types cannot fail")
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Statements prepared once per connection.
struct Stmts {
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
    st: Stmts,
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
    let st = Stmts {
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
                &[&m.version, &m.name, &m.checksum(), &i(crate::now_ms())],
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
    fail_commits: AtomicBool,
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
            fail_commits: AtomicBool::new(false),
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

    /// Fault injection for tests: while `on`, every write transaction is
    /// rolled back at commit and fails with [`StorageError::Backend`].
    pub fn fail_commits(&self, on: bool) {
        self.fail_commits.store(on, Ordering::SeqCst);
    }

    fn conn<R>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.pool.with(|c| !c.client.is_closed(), f)
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &Stmts) -> Result<R, StorageError>,
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

/// A write transaction. Reads go to the database once per key and are
/// cached (with the transaction's own writes); writes are buffered and sent
/// in four bulk statements at commit: a batch of 100 mutations costs a
/// handful of round trips, not six per mutation.
struct PgTx<'a, 't> {
    partition: &'a Partition,
    tx: &'a mut postgres::Transaction<'t>,
    st: &'a Stmts,
    head: i64,
    wrote: bool,
    entities: HashMap<EntityKey, Option<StoredEntity>>,
    ledger: HashMap<(String, OpId), Option<LedgerEntry>>,
    dirty: BTreeMap<EntityKey, StoredEntity>,
    new_ledger: Vec<(String, OpId, LedgerEntry)>,
    changes: Vec<(i64, String)>,
    audit: Vec<String>,
}

fn ledger_row(r: &postgres::Row, offset: usize) -> LedgerEntry {
    LedgerEntry {
        fingerprint: r.get(offset),
        key: EntityKey::new(
            r.get::<_, String>(offset + 1),
            r.get::<_, String>(offset + 2),
        ),
        version: u(r.get(offset + 3)),
        cursor: Cursor(u(r.get(offset + 4))),
    }
}

impl PgTx<'_, '_> {
    /// Sends the buffered writes (one column vector per bulk-insert column).
    #[allow(clippy::type_complexity)]
    fn flush(&mut self) -> Result<(), StorageError> {
        let p = self.partition;
        if !self.changes.is_empty() {
            let (cursors, states): (Vec<i64>, Vec<String>) =
                std::mem::take(&mut self.changes).into_iter().unzip();
            self.tx
                .execute(
                    &self.st.insert_changes,
                    &[&p.tenant, &p.branch, &cursors, &states],
                )
                .map_err(backend)?;
        }
        if !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            let mut cols: (
                Vec<String>,
                Vec<String>,
                Vec<i64>,
                Vec<i64>,
                Vec<i64>,
                Vec<String>,
            ) = Default::default();
            for e in dirty.values() {
                let s = &e.state;
                cols.0.push(s.collection.clone());
                cols.1.push(s.id.clone());
                cols.2.push(i(s.version));
                cols.3.push(i64::from(s.deleted));
                cols.4.push(i(e.cursor.0));
                cols.5.push(to_json(s));
            }
            self.tx
                .execute(
                    &self.st.upsert_entities,
                    &[
                        &p.tenant, &p.branch, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5,
                    ],
                )
                .map_err(backend)?;
        }
        if !self.new_ledger.is_empty() {
            let rows = std::mem::take(&mut self.new_ledger);
            let mut cols: (
                Vec<String>,
                Vec<String>,
                Vec<String>,
                Vec<String>,
                Vec<String>,
                Vec<i64>,
                Vec<i64>,
            ) = Default::default();
            for (terminal, op, e) in rows {
                cols.0.push(terminal);
                cols.1.push(op.0);
                cols.2.push(e.fingerprint);
                cols.3.push(e.key.collection);
                cols.4.push(e.key.id);
                cols.5.push(i(e.version));
                cols.6.push(i(e.cursor.0));
            }
            self.tx
                .execute(
                    &self.st.insert_ledger,
                    &[
                        &p.tenant, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
                    ],
                )
                .map_err(backend)?;
        }
        if !self.audit.is_empty() {
            let entries = std::mem::take(&mut self.audit);
            self.tx
                .execute(&self.st.insert_audit, &[&p.tenant, &p.branch, &entries])
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl StoreTx for PgTx<'_, '_> {
    fn partition(&self) -> &Partition {
        self.partition
    }

    fn entity(&mut self, key: &EntityKey) -> Result<Option<StoredEntity>, StorageError> {
        if let Some(cached) = self.entities.get(key) {
            return Ok(cached.clone());
        }
        let p = self.partition;
        let row = self
            .tx
            .query_opt(
                &self.st.entity,
                &[&p.tenant, &p.branch, &key.collection, &key.id],
            )
            .map_err(backend)?;
        let found = row
            .map(|r| {
                Ok::<_, StorageError>(StoredEntity {
                    state: serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt)?,
                    cursor: Cursor(u(r.get(1))),
                })
            })
            .transpose()?;
        self.entities.insert(key.clone(), found.clone());
        Ok(found)
    }

    fn ledger(
        &mut self,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let k = (terminal.to_owned(), op_id.clone());
        if let Some(cached) = self.ledger.get(&k) {
            return Ok(cached.clone());
        }
        let row = self
            .tx
            .query_opt(
                &self.st.ledger,
                &[&self.partition.tenant, &terminal, &op_id.0],
            )
            .map_err(backend)?;
        let found = row.map(|r| ledger_row(&r, 0));
        self.ledger.insert(k, found.clone());
        Ok(found)
    }

    fn append_change(&mut self, state: &EntityState) -> Result<Cursor, StorageError> {
        self.head += 1;
        self.wrote = true;
        self.changes.push((self.head, to_json(state)));
        Ok(Cursor(u(self.head)))
    }

    fn put_entity(&mut self, entity: &StoredEntity) -> Result<(), StorageError> {
        self.wrote = true;
        let key = entity.state.key();
        self.entities.insert(key.clone(), Some(entity.clone()));
        self.dirty.insert(key, entity.clone());
        Ok(())
    }

    fn put_ledger(
        &mut self,
        terminal: &str,
        op_id: &OpId,
        entry: &LedgerEntry,
    ) -> Result<(), StorageError> {
        if self.ledger(terminal, op_id)?.is_some() {
            return Err(StorageError::Constraint(format!(
                "ledger already holds op {op_id} of terminal {terminal}"
            )));
        }
        self.wrote = true;
        self.ledger
            .insert((terminal.to_owned(), op_id.clone()), Some(entry.clone()));
        self.new_ledger
            .push((terminal.to_owned(), op_id.clone(), entry.clone()));
        Ok(())
    }

    fn put_audit(&mut self, entry: &AuditEntry) -> Result<(), StorageError> {
        self.wrote = true;
        self.audit.push(to_json(entry));
        Ok(())
    }

    fn prefetch(
        &mut self,
        terminal: &str,
        op_ids: &[OpId],
        keys: &[EntityKey],
    ) -> Result<(), StorageError> {
        let p = self.partition;
        let ops: Vec<&str> = op_ids.iter().map(OpId::as_str).collect();
        if !ops.is_empty() {
            let rows = self
                .tx
                .query(&self.st.ledger_many, &[&p.tenant, &terminal, &ops])
                .map_err(backend)?;
            let mut found: HashMap<String, LedgerEntry> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), ledger_row(r, 1)))
                .collect();
            for op in op_ids {
                let k = (terminal.to_owned(), op.clone());
                self.ledger
                    .entry(k)
                    .or_insert_with(|| found.remove(op.as_str()));
            }
        }
        // Entities are read one by one (and cached): a join of the
        // partition's entities with an unnest of keys planned a scan of the
        // whole partition per batch and made ingest slower, not faster.
        let _ = keys;
        Ok(())
    }
}

fn decode_states(rows: &[postgres::Row]) -> Result<Vec<EntityState>, StorageError> {
    rows.iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
        .collect()
}

fn head_in(
    tx: &mut postgres::Transaction<'_>,
    st: &Stmts,
    p: &Partition,
) -> Result<Cursor, StorageError> {
    let row = tx
        .query_opt(&st.head, &[&p.tenant, &p.branch])
        .map_err(backend)?;
    Ok(Cursor(row.map_or(0, |r| u(r.get(0)))))
}

impl ServerStore for PgStore {
    fn transaction<R, F>(&self, partition: &Partition, mut work: F) -> Result<R, StorageError>
    where
        F: FnMut(&mut dyn StoreTx) -> Result<R, StorageError>,
    {
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
            let start: i64 = row.map_or(0, |r| r.get(0));
            let mut ptx = PgTx {
                partition,
                tx: &mut tx,
                st,
                head: start,
                wrote: false,
                entities: HashMap::new(),
                ledger: HashMap::new(),
                dirty: BTreeMap::new(),
                new_ledger: Vec::new(),
                changes: Vec::new(),
                audit: Vec::new(),
            };
            let out = work(&mut ptx)?; // dropping `tx` rolls back
            ptx.flush()?;
            let (head, wrote) = (ptx.head, ptx.wrote);
            if head != start {
                tx.execute(&st.set_head, &[&partition.tenant, &partition.branch, &head])
                    .map_err(backend)?;
            }
            if wrote && self.fail_commits.load(Ordering::SeqCst) {
                return Err(StorageError::backend("injected commit failure"));
            }
            tx.commit().map_err(backend)?;
            Ok(out)
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
                        &i(since.0),
                        &i(limit as u64),
                    ],
                )
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(Change {
                        cursor: Cursor(u(r.get(0))),
                        state: serde_json::from_str(r.get::<_, &str>(1)).map_err(corrupt)?,
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
            let (t, b, l) = (&partition.tenant, &partition.branch, i(limit as u64));
            let rows = match after {
                None => tx.query(&st.snapshot_first, &[t, b, &l]),
                Some(k) => tx.query(&st.snapshot_after, &[t, b, &k.collection, &k.id, &l]),
            }
            .map_err(backend)?;
            Ok(EntitiesAt {
                entities: decode_states(&rows)?,
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
                entities: decode_states(&rows)?,
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
            Ok(Cursor(row.map_or(0, |r| u(r.get(0)))))
        })
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditEntry>, StorageError> {
        self.conn(|c| {
            let rows = c
                .client
                .query(
                    "SELECT entry FROM audit WHERE tenant = $1 AND branch = $2 ORDER BY seq",
                    &[&partition.tenant, &partition.branch],
                )
                .map_err(backend)?;
            rows.iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
                .collect()
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
        created_at_ms: u(r.get(5)),
        expires_at_ms: r.get::<_, Option<i64>>(6).map(u),
        revoked_at_ms: r.get::<_, Option<i64>>(7).map(u),
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
                        &i(c.created_at_ms),
                        &c.expires_at_ms.map(i),
                        &c.revoked_at_ms.map(i),
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
                    &[&key_id, &i(at_ms)],
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
                    &[&ctx.tenant, &ctx.branch, &ctx.terminal, &i(at_ms)],
                )
                .map_err(backend)
        })
    }
}
