//! An in-memory [`ServerStore`], for tests, the demo and as the reference
//! behaviour the SQL backends must match.
//!
//! One mutex guards everything, so write transactions are fully serialised
//! (which trivially meets the cursor contract). A transaction stages its
//! writes and applies them only when its closure succeeds, so a failing
//! closure (or an injected commit failure) leaves no trace.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use tidesync::{Cursor, EntityKey, EntityState, OpId};

use crate::storage::{
    AuditEntry, Change, EntitiesAt, LedgerEntry, Partition, ServerStore, StorageError, StoreTx,
    StoredEntity,
};

/// The ledger key: `(tenant, terminal, op_id)`.
type LedgerKey = (String, String, OpId);

#[derive(Debug, Default)]
struct PartitionData {
    entities: BTreeMap<EntityKey, StoredEntity>,
    /// `log[i]` has cursor `i + 1`.
    log: Vec<Change>,
    audit: Vec<AuditEntry>,
}

impl PartitionData {
    fn head(&self) -> Cursor {
        Cursor(self.log.len() as u64)
    }
}

#[derive(Debug, Default)]
struct Inner {
    partitions: HashMap<Partition, PartitionData>,
    ledger: HashMap<LedgerKey, LedgerEntry>,
    fail_commits: bool,
}

/// In-memory server storage. Cheap to create; not persistent.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fault injection for tests: while `on`, every write transaction fails
    /// at commit with [`StorageError::Backend`] and nothing it wrote is kept.
    /// Transactions that wrote nothing still succeed.
    pub fn fail_commits(&self, on: bool) {
        self.lock().fail_commits = on;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Writes are applied only after the closure returned, without any
        // call that can panic half-way, so a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes staged by a transaction, applied at commit.
#[derive(Debug, Default)]
struct Staged {
    entities: BTreeMap<EntityKey, StoredEntity>,
    changes: Vec<Change>,
    ledger: Vec<(LedgerKey, LedgerEntry)>,
    audit: Vec<AuditEntry>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.entities.is_empty()
            && self.changes.is_empty()
            && self.ledger.is_empty()
            && self.audit.is_empty()
    }
}

struct MemoryTx<'a> {
    partition: &'a Partition,
    committed: &'a Inner,
    staged: Staged,
}

impl MemoryTx<'_> {
    fn data(&self) -> Option<&PartitionData> {
        self.committed.partitions.get(self.partition)
    }

    fn ledger_key(&self, terminal: &str, op_id: &OpId) -> LedgerKey {
        (
            self.partition.tenant.clone(),
            terminal.to_owned(),
            op_id.clone(),
        )
    }
}

impl StoreTx for MemoryTx<'_> {
    fn partition(&self) -> &Partition {
        self.partition
    }

    fn entity(&mut self, key: &EntityKey) -> Result<Option<StoredEntity>, StorageError> {
        if let Some(e) = self.staged.entities.get(key) {
            return Ok(Some(e.clone()));
        }
        Ok(self.data().and_then(|d| d.entities.get(key)).cloned())
    }

    fn ledger(
        &mut self,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let key = self.ledger_key(terminal, op_id);
        if let Some((_, e)) = self.staged.ledger.iter().find(|(k, _)| *k == key) {
            return Ok(Some(e.clone()));
        }
        Ok(self.committed.ledger.get(&key).cloned())
    }

    fn append_change(&mut self, state: &EntityState) -> Result<Cursor, StorageError> {
        let head = self.data().map_or(Cursor(0), PartitionData::head);
        let cursor = Cursor(head.0 + self.staged.changes.len() as u64 + 1);
        self.staged.changes.push(Change {
            cursor,
            state: state.clone(),
        });
        Ok(cursor)
    }

    fn put_entity(&mut self, entity: &StoredEntity) -> Result<(), StorageError> {
        self.staged
            .entities
            .insert(entity.state.key(), entity.clone());
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
        let key = self.ledger_key(terminal, op_id);
        self.staged.ledger.push((key, entry.clone()));
        Ok(())
    }

    fn put_audit(&mut self, entry: &AuditEntry) -> Result<(), StorageError> {
        self.staged.audit.push(entry.clone());
        Ok(())
    }
}

impl ServerStore for MemoryStore {
    fn transaction<R, F>(&self, partition: &Partition, mut work: F) -> Result<R, StorageError>
    where
        F: FnMut(&mut dyn StoreTx) -> Result<R, StorageError>,
    {
        let mut guard = self.lock();
        let mut tx = MemoryTx {
            partition,
            committed: &guard,
            staged: Staged::default(),
        };
        let out = work(&mut tx)?;
        let staged = tx.staged;
        if staged.is_empty() {
            return Ok(out);
        }
        if guard.fail_commits {
            return Err(StorageError::backend("injected commit failure"));
        }
        let inner = &mut *guard;
        inner.ledger.extend(staged.ledger);
        let data = inner.partitions.entry(partition.clone()).or_default();
        data.entities.extend(staged.entities);
        data.log.extend(staged.changes);
        data.audit.extend(staged.audit);
        Ok(out)
    }

    fn changes(
        &self,
        partition: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        let guard = self.lock();
        let Some(data) = guard.partitions.get(partition) else {
            return Ok(Vec::new());
        };
        let start = usize::try_from(since.0).unwrap_or(usize::MAX);
        Ok(data
            .log
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    fn snapshot(
        &self,
        partition: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError> {
        let guard = self.lock();
        let Some(data) = guard.partitions.get(partition) else {
            return Ok(EntitiesAt::default());
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let entities = data
            .entities
            .range((lower, Bound::Unbounded))
            .map(|(_, e)| &e.state)
            .filter(|s| !s.deleted)
            .take(limit)
            .cloned()
            .collect();
        Ok(EntitiesAt {
            entities,
            head: data.head(),
        })
    }

    fn live_entities(
        &self,
        partition: &Partition,
        collection: &str,
    ) -> Result<EntitiesAt, StorageError> {
        let guard = self.lock();
        let Some(data) = guard.partitions.get(partition) else {
            return Ok(EntitiesAt::default());
        };
        let entities = data
            .entities
            .values()
            .map(|e| &e.state)
            .filter(|s| s.collection == collection && !s.deleted)
            .cloned()
            .collect();
        Ok(EntitiesAt {
            entities,
            head: data.head(),
        })
    }

    fn head(&self, partition: &Partition) -> Result<Cursor, StorageError> {
        Ok(self
            .lock()
            .partitions
            .get(partition)
            .map_or(Cursor(0), PartitionData::head))
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditEntry>, StorageError> {
        Ok(self
            .lock()
            .partitions
            .get(partition)
            .map(|d| d.audit.clone())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidesync::{Fields, Hlc};

    fn state(id: &str, version: u64, deleted: bool) -> EntityState {
        EntityState {
            collection: "rooms".into(),
            id: id.into(),
            version,
            fields: Fields::new(),
            deleted,
            updated_at: Hlc::default(),
            last_op: None,
        }
    }

    fn write(tx: &mut dyn StoreTx, s: EntityState) -> Result<Cursor, StorageError> {
        let cursor = tx.append_change(&s)?;
        tx.put_entity(&StoredEntity { state: s, cursor })?;
        Ok(cursor)
    }

    fn p(branch: &str) -> Partition {
        Partition::new("t1", branch)
    }

    #[test]
    fn cursors_are_dense_per_partition_and_visible_inside_the_transaction() {
        let store = MemoryStore::new();
        let c = store
            .transaction(&p("b1"), |tx| {
                let a = write(tx, state("a", 1, false))?;
                let b = write(tx, state("b", 1, false))?;
                assert_eq!(tx.entity(&EntityKey::new("rooms", "b"))?.unwrap().cursor, b);
                Ok((a, b))
            })
            .unwrap();
        assert_eq!(c, (Cursor(1), Cursor(2)));
        let other = store
            .transaction(&p("b2"), |tx| write(tx, state("a", 1, false)))
            .unwrap();
        assert_eq!(other, Cursor(1), "each partition has its own log");
        assert_eq!(store.head(&p("b1")).unwrap(), Cursor(2));
        assert_eq!(store.head(&p("b2")).unwrap(), Cursor(1));
        assert_eq!(store.head(&p("nope")).unwrap(), Cursor(0));
    }

    #[test]
    fn a_failing_closure_keeps_nothing_and_gives_its_cursor_back() {
        let store = MemoryStore::new();
        let err = store
            .transaction(&p("b1"), |tx| {
                write(tx, state("a", 1, false))?;
                Err::<(), _>(StorageError::Corrupt("boom".into()))
            })
            .unwrap_err();
        assert!(matches!(err, StorageError::Corrupt(_)));
        assert_eq!(store.head(&p("b1")).unwrap(), Cursor(0));
        let c = store
            .transaction(&p("b1"), |tx| write(tx, state("a", 1, false)))
            .unwrap();
        assert_eq!(c, Cursor(1));
    }

    #[test]
    fn injected_commit_failure_keeps_nothing() {
        let store = MemoryStore::new();
        store.fail_commits(true);
        let op = OpId::from_parts(1, 1);
        let res = store.transaction(&p("b1"), |tx| {
            let cursor = write(tx, state("a", 1, false))?;
            let entry = LedgerEntry {
                fingerprint: "f".into(),
                key: EntityKey::new("rooms", "a"),
                version: 1,
                cursor,
            };
            tx.put_ledger("term", &op, &entry)
        });
        assert!(matches!(res, Err(StorageError::Backend(_))));
        store.fail_commits(false);
        assert_eq!(store.head(&p("b1")).unwrap(), Cursor(0));
        let seen = store
            .transaction(&p("b1"), |tx| {
                Ok((
                    tx.entity(&EntityKey::new("rooms", "a"))?,
                    tx.ledger("term", &op)?,
                ))
            })
            .unwrap();
        assert_eq!(seen, (None, None));
    }

    #[test]
    fn ledger_is_per_tenant_and_rejects_a_second_row() {
        let store = MemoryStore::new();
        let op = OpId::from_parts(1, 1);
        let entry = LedgerEntry {
            fingerprint: "f".into(),
            key: EntityKey::new("rooms", "a"),
            version: 1,
            cursor: Cursor(1),
        };
        store
            .transaction(&p("b1"), |tx| tx.put_ledger("term", &op, &entry))
            .unwrap();
        // Same tenant, other branch: the ledger is keyed by tenant, not branch.
        let again = store.transaction(&p("b2"), |tx| tx.put_ledger("term", &op, &entry));
        assert!(matches!(again, Err(StorageError::Constraint(_))));
        let other_tenant = Partition::new("t2", "b1");
        let found = store
            .transaction(&other_tenant, |tx| tx.ledger("term", &op))
            .unwrap();
        assert_eq!(found, None);
    }

    #[test]
    fn snapshot_skips_tombstones_and_pages_by_key() {
        let store = MemoryStore::new();
        store
            .transaction(&p("b1"), |tx| {
                write(tx, state("a", 1, false))?;
                write(tx, state("b", 2, true))?;
                write(tx, state("c", 1, false))?;
                write(tx, state("d", 1, false))
            })
            .unwrap();
        let first = store.snapshot(&p("b1"), None, 2).unwrap();
        let ids: Vec<_> = first.entities.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(first.head, Cursor(4));
        let after = EntityKey::new("rooms", "c");
        let rest = store.snapshot(&p("b1"), Some(&after), 2).unwrap();
        let ids: Vec<_> = rest.entities.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["d"]);
        let live = store.live_entities(&p("b1"), "rooms").unwrap();
        assert_eq!(live.entities.len(), 3);
        assert!(store
            .live_entities(&p("b1"), "other")
            .unwrap()
            .entities
            .is_empty());
    }

    #[test]
    fn changes_returns_strictly_after_since() {
        let store = MemoryStore::new();
        for i in 0..5 {
            store
                .transaction(&p("b1"), |tx| write(tx, state(&format!("e{i}"), 1, false)))
                .unwrap();
        }
        let cursors = |since, limit| -> Vec<u64> {
            store
                .changes(&p("b1"), Cursor(since), limit)
                .unwrap()
                .iter()
                .map(|c| c.cursor.0)
                .collect()
        };
        assert_eq!(cursors(0, 2), [1, 2]);
        assert_eq!(cursors(2, 10), [3, 4, 5]);
        assert!(cursors(5, 10).is_empty());
        assert!(cursors(99, 10).is_empty());
    }
}
