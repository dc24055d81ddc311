//! The SQLite side of a write transaction: the committed rows it reads, and
//! the rows it writes when its closure succeeded (before the commit).

use rusqlite::{params, OptionalExtension};
use tidesync::{Cursor, EntityKey, OpId};

use super::{backend, read_head};
use crate::storage::sql::{decode_json, encode_json, from_sql_int, to_sql_int};
use crate::storage::staged::{CommittedReads, Writes};
use crate::storage::{LedgerEntry, Partition, StorageError, StoredEntity};

/// Reads inside a write transaction.
pub(super) struct SqliteReads<'a> {
    pub(super) tx: &'a rusqlite::Transaction<'a>,
}

impl CommittedReads for SqliteReads<'_> {
    fn head(&mut self, partition: &Partition) -> Result<Cursor, StorageError> {
        read_head(self.tx, partition)
    }

    fn entity(
        &mut self,
        p: &Partition,
        key: &EntityKey,
    ) -> Result<Option<StoredEntity>, StorageError> {
        let row: Option<(String, i64)> = self
            .tx
            .prepare_cached(
                "SELECT state, cursor FROM entities
                 WHERE tenant = ?1 AND branch = ?2 AND collection = ?3 AND id = ?4",
            )
            .map_err(backend)?
            .query_row(params![p.tenant, p.branch, key.collection, key.id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(backend)?;
        row.map(|(state, cursor)| {
            Ok(StoredEntity {
                state: decode_json(&state)?,
                cursor: Cursor(from_sql_int(cursor)),
            })
        })
        .transpose()
    }

    fn ledger(
        &mut self,
        p: &Partition,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        self.tx
            .prepare_cached(
                "SELECT fingerprint, collection, entity_id, version, cursor, applied_at_ms FROM ledger
                 WHERE tenant = ?1 AND branch = ?2 AND terminal = ?3 AND op_id = ?4",
            )
            .map_err(backend)?
            .query_row(params![p.tenant, p.branch, terminal, op_id.0], |r| {
                Ok(LedgerEntry {
                    fingerprint: r.get(0)?,
                    key: EntityKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    version: from_sql_int(r.get(3)?),
                    cursor: Cursor(from_sql_int(r.get(4)?)),
                    applied_at_ms: from_sql_int(r.get(5)?),
                })
            })
            .optional()
            .map_err(backend)
    }
}

/// Writes what a transaction staged (inside it, before the commit).
pub(super) fn write(
    tx: &rusqlite::Transaction<'_>,
    p: &Partition,
    writes: &Writes,
) -> Result<(), StorageError> {
    if let Some(head) = writes.new_head() {
        tx.prepare_cached(
            "INSERT INTO partitions (tenant, branch, head) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, branch) DO UPDATE SET head = excluded.head",
        )
        .map_err(backend)?
        .execute(params![p.tenant, p.branch, to_sql_int(head.0)])
        .map_err(backend)?;
    }
    let mut insert_change = tx
        .prepare_cached(
            "INSERT INTO changes (tenant, branch, cursor, state) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?;
    for c in &writes.changes {
        insert_change
            .execute(params![
                p.tenant,
                p.branch,
                to_sql_int(c.cursor.0),
                encode_json(&c.state)
            ])
            .map_err(backend)?;
    }
    let mut upsert_entity = tx
        .prepare_cached(
            "INSERT INTO entities (tenant, branch, collection, id, version, deleted, cursor, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tenant, branch, collection, id) DO UPDATE SET
               version = excluded.version, deleted = excluded.deleted,
               cursor = excluded.cursor, state = excluded.state",
        )
        .map_err(backend)?;
    for e in writes.entities.values() {
        let s = &e.state;
        upsert_entity
            .execute(params![
                p.tenant,
                p.branch,
                s.collection,
                s.id,
                to_sql_int(s.version),
                s.deleted,
                to_sql_int(e.cursor.0),
                encode_json(s)
            ])
            .map_err(backend)?;
    }
    let mut insert_ledger = tx
        .prepare_cached(
            "INSERT INTO ledger (tenant, branch, terminal, op_id, fingerprint, collection, entity_id,
                                 version, cursor, applied_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(backend)?;
    for (terminal, op_id, entry) in &writes.ledger {
        insert_ledger
            .execute(params![
                p.tenant,
                p.branch,
                terminal,
                op_id.0,
                entry.fingerprint,
                entry.key.collection,
                entry.key.id,
                to_sql_int(entry.version),
                to_sql_int(entry.cursor.0),
                to_sql_int(entry.applied_at_ms)
            ])
            .map_err(backend)?;
    }
    let mut insert_audit = tx
        .prepare_cached("INSERT INTO audit (tenant, branch, entry) VALUES (?1, ?2, ?3)")
        .map_err(backend)?;
    for row in &writes.audit {
        insert_audit
            .execute(params![p.tenant, p.branch, encode_json(row)])
            .map_err(backend)?;
    }
    Ok(())
}
