//! The PostgreSQL side of a write transaction: the committed rows it reads
//! (after the partition's head row is locked), and the rows it writes in
//! bulk when its closure succeeded (before the commit).

use std::collections::HashMap;

use tidesync::{Cursor, EntityKey, OpId};

use super::{backend, head_in, Statements};
use crate::storage::sql::{decode_json, encode_json, from_sql_int, to_sql_int};
use crate::storage::staged::{CommittedReads, Writes};
use crate::storage::{LedgerEntry, Partition, StorageError, StoredEntity};

/// Reads inside a write transaction.
pub(super) struct PgReads<'a, 't> {
    pub(super) tx: &'a mut postgres::Transaction<'t>,
    pub(super) st: &'a Statements,
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
        applied_at_ms: from_sql_int(r.get(offset + 5)),
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
        p: &Partition,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let row = self
            .tx
            .query_opt(
                &self.st.ledger,
                &[&p.tenant, &p.branch, &terminal, &op_id.0],
            )
            .map_err(backend)?;
        Ok(row.map(|r| ledger_row(&r, 0)))
    }

    fn ledger_batch(
        &mut self,
        p: &Partition,
        terminal: &str,
        op_ids: &[OpId],
    ) -> Result<Option<HashMap<OpId, LedgerEntry>>, StorageError> {
        let ops: Vec<&str> = op_ids.iter().map(OpId::as_str).collect();
        let rows = self
            .tx
            .query(
                &self.st.ledger_many,
                &[&p.tenant, &p.branch, &terminal, &ops],
            )
            .map_err(backend)?;
        Ok(Some(
            rows.iter()
                .map(|r| (OpId(r.get::<_, String>(0)), ledger_row(r, 1)))
                .collect(),
        ))
    }

    fn entity_batch(
        &mut self,
        p: &Partition,
        keys: &[EntityKey],
    ) -> Result<Option<HashMap<EntityKey, StoredEntity>>, StorageError> {
        let collections: Vec<&str> = keys.iter().map(|k| k.collection.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        let rows = self
            .tx
            .query(
                &self.st.entities_many,
                &[&p.tenant, &p.branch, &collections, &ids],
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    EntityKey::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                    StoredEntity {
                        state: decode_json(r.get::<_, &str>(2))?,
                        cursor: Cursor(from_sql_int(r.get(3))),
                    },
                ))
            })
            .collect::<Result<_, StorageError>>()
            .map(Some)
    }
}

/// Writes what a transaction staged in four bulk statements (one column
/// vector per bulk-insert column), then the new head: a batch of 100
/// mutations costs a handful of round trips, not six per mutation.
#[allow(clippy::type_complexity)]
pub(super) fn write(
    tx: &mut postgres::Transaction<'_>,
    st: &Statements,
    p: &Partition,
    writes: &Writes,
) -> Result<(), StorageError> {
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
            Vec<i64>,
        ) = Default::default();
        for (terminal, op, e) in &writes.ledger {
            cols.0.push(terminal.clone());
            cols.1.push(op.0.clone());
            cols.2.push(e.fingerprint.clone());
            cols.3.push(e.key.collection.clone());
            cols.4.push(e.key.id.clone());
            cols.5.push(to_sql_int(e.version));
            cols.6.push(to_sql_int(e.cursor.0));
            cols.7.push(to_sql_int(e.applied_at_ms));
        }
        tx.execute(
            &st.insert_ledger,
            &[
                &p.tenant, &p.branch, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5,
                &cols.6, &cols.7,
            ],
        )
        .map_err(backend)?;
    }
    if !writes.audit.is_empty() {
        let rows: Vec<String> = writes.audit.iter().map(encode_json).collect();
        tx.execute(&st.insert_audit, &[&p.tenant, &p.branch, &rows])
            .map_err(backend)?;
    }
    if let Some(head) = writes.new_head() {
        tx.execute(&st.set_head, &[&p.tenant, &p.branch, &to_sql_int(head.0)])
            .map_err(backend)?;
        // Delivered to every LISTENing server process when (and only if)
        // the transaction commits: their live channels poke the branch.
        let notice = serde_json::to_string(&super::Notice {
            t: p.tenant.clone(),
            b: p.branch.clone(),
            c: head.0,
        })
        .map_err(StorageError::backend)?;
        tx.execute(&st.notify, &[&st.channel, &notice])
            .map_err(backend)?;
    }
    Ok(())
}
