//! An in-memory [`ServerStore`], for tests, the demo and as the reference
//! behaviour the SQL backends must match. It keeps credentials too.
//!
//! One mutex guards the data, so write transactions are fully serialised
//! (which trivially meets the cursor contract). A transaction stages its
//! writes and applies them only when its closure succeeds, so a failing
//! closure (or an injected commit failure) leaves no trace.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tidesync::{Cursor, EntityKey, OpId};

use super::staged::{CommitFailures, CommittedReads, StagedTx};
use super::{
    AuditRow, Change, Credential, CredentialStore, EntitiesAt, LedgerEntry, MakeCredential,
    PairFailure, PairingCode, Partition, ServerStore, StorageBackend, StorageError, StoreTx,
    StoredEntity,
};
use crate::context::TerminalContext;

/// The ledger key: `(partition, terminal, op_id)`.
type LedgerKey = (Partition, String, OpId);

#[derive(Debug, Default)]
struct PartitionData {
    entities: BTreeMap<EntityKey, StoredEntity>,
    /// `log[i]` has cursor `i + 1`.
    log: Vec<Change>,
    audit: Vec<AuditRow>,
}

impl PartitionData {
    fn head(&self) -> Cursor {
        Cursor(self.log.len() as u64)
    }
}

/// Everything the store holds, behind its one lock.
#[derive(Debug, Default)]
struct MemoryData {
    partitions: HashMap<Partition, PartitionData>,
    ledger: HashMap<LedgerKey, LedgerEntry>,
}

impl MemoryData {
    fn head_of(&self, partition: &Partition) -> Cursor {
        self.partitions
            .get(partition)
            .map_or(Cursor(0), PartitionData::head)
    }
}

/// In-memory server storage. Cheap to create; not persistent.
#[derive(Debug, Default)]
pub struct MemoryServerStore {
    data: Mutex<MemoryData>,
    /// By key hash.
    credentials: Mutex<HashMap<String, Credential>>,
    /// By code hash (locked before `credentials` when both are).
    pairing_codes: Mutex<HashMap<String, PairingCode>>,
    fail_commits: CommitFailures,
}

/// A poisoned lock still holds consistent data: writes are applied only
/// after the transaction's closure returned, without any call that can
/// panic half-way.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryServerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryData> {
        lock(&self.data)
    }
}

impl CommittedReads for &MemoryData {
    fn head(&mut self, partition: &Partition) -> Result<Cursor, StorageError> {
        Ok(self.head_of(partition))
    }

    fn entity(
        &mut self,
        partition: &Partition,
        key: &EntityKey,
    ) -> Result<Option<StoredEntity>, StorageError> {
        Ok(self
            .partitions
            .get(partition)
            .and_then(|d| d.entities.get(key))
            .cloned())
    }

    fn ledger(
        &mut self,
        partition: &Partition,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let key = (partition.clone(), terminal.to_owned(), op_id.clone());
        Ok(self.ledger.get(&key).cloned())
    }
}

impl ServerStore for MemoryServerStore {
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let writes = StagedTx::new(partition, &*guard).run(work)?;
        if writes.is_empty() {
            return Ok(());
        }
        self.fail_commits.check(&writes)?;
        let all = &mut *guard;
        all.ledger.extend(
            writes
                .ledger
                .into_iter()
                .map(|(terminal, op, e)| ((partition.clone(), terminal, op), e)),
        );
        let data = all.partitions.entry(partition.clone()).or_default();
        data.entities.extend(writes.entities);
        data.log.extend(writes.changes);
        data.audit.extend(writes.audit);
        Ok(())
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
        Ok(self.lock().head_of(partition))
    }

    fn audit(&self, partition: &Partition) -> Result<Vec<AuditRow>, StorageError> {
        Ok(self
            .lock()
            .partitions
            .get(partition)
            .map(|d| d.audit.clone())
            .unwrap_or_default())
    }

    fn prune_ledger(&self, before_ms: u64) -> Result<u64, StorageError> {
        let floor = super::ledger_floor(before_ms);
        let mut all = self.lock();
        let n = all.ledger.len();
        all.ledger
            .retain(|(_, _, op), e| !(e.applied_at_ms < before_ms && op.0 < floor.0));
        Ok((n - all.ledger.len()) as u64)
    }
}

impl CredentialStore for MemoryServerStore {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        lock(&self.credentials).insert(c.key_hash.clone(), c.clone());
        Ok(())
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        Ok(lock(&self.credentials).get(key_hash).cloned())
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        let mut all = lock(&self.credentials);
        let hit = all
            .values_mut()
            .find(|c| c.key_id == key_id && c.revoked_at_ms.is_none());
        Ok(hit.map(|c| c.revoked_at_ms = Some(at_ms)).is_some())
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        let mut n = 0;
        for c in lock(&self.credentials).values_mut() {
            if c.context == *ctx && c.revoked_at_ms.is_none() {
                c.revoked_at_ms = Some(at_ms);
                n += 1;
            }
        }
        Ok(n)
    }

    fn put_pairing_code(&self, code: &PairingCode) -> Result<(), StorageError> {
        let mut all = lock(&self.pairing_codes);
        if all.contains_key(&code.code_hash) {
            return Err(StorageError::Constraint("pairing code stored twice".into()));
        }
        all.insert(code.code_hash.clone(), code.clone());
        Ok(())
    }

    fn redeem_pairing_code(
        &self,
        code_hash: &str,
        now_ms: u64,
        make: &mut MakeCredential<'_>,
    ) -> Result<Result<Credential, PairFailure>, StorageError> {
        // Both locks held throughout: the check, the mark and the new
        // credential are one step.
        let mut codes = lock(&self.pairing_codes);
        let Some(code) = codes.get_mut(code_hash) else {
            return Ok(Err(PairFailure::Unknown));
        };
        if code.redeemed_at_ms.is_some() {
            return Ok(Err(PairFailure::Used));
        }
        if now_ms >= code.expires_at_ms {
            return Ok(Err(PairFailure::Expired));
        }
        let credential = make(&code.context)?;
        let mut credentials = lock(&self.credentials);
        if credentials.contains_key(&credential.key_hash) {
            return Err(StorageError::Constraint("credential stored twice".into()));
        }
        credentials.insert(credential.key_hash.clone(), credential.clone());
        code.redeemed_at_ms = Some(now_ms);
        Ok(Ok(credential))
    }
}

impl StorageBackend for MemoryServerStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn fail_commits(&self, on: bool) {
        self.fail_commits.set(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidesync::{EntityState, Fields, Hlc};

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
        let store = MemoryServerStore::new();
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
        let store = MemoryServerStore::new();
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
        let store = MemoryServerStore::new();
        store.fail_commits(true);
        let op = OpId::from_parts(1, 1);
        let res = store.transaction(&p("b1"), |tx| {
            let cursor = write(tx, state("a", 1, false))?;
            let entry = LedgerEntry {
                fingerprint: "f".into(),
                key: EntityKey::new("rooms", "a"),
                version: 1,
                cursor,
                applied_at_ms: 0,
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
    fn ledger_is_per_partition_and_rejects_a_second_row() {
        let store = MemoryServerStore::new();
        let op = OpId::from_parts(1, 1);
        let entry = LedgerEntry {
            fingerprint: "f".into(),
            key: EntityKey::new("rooms", "a"),
            version: 1,
            cursor: Cursor(1),
            applied_at_ms: 0,
        };
        store
            .transaction(&p("b1"), |tx| tx.put_ledger("term", &op, &entry))
            .unwrap();
        let again = store.transaction(&p("b1"), |tx| tx.put_ledger("term", &op, &entry));
        assert!(matches!(again, Err(StorageError::Constraint(_))));
        // Same tenant, other branch: its own ledger (issue 17).
        let other_branch = store
            .transaction(&p("b2"), |tx| tx.ledger("term", &op))
            .unwrap();
        assert_eq!(other_branch, None);
        let other_tenant = Partition::new("t2", "b1");
        let found = store
            .transaction(&other_tenant, |tx| tx.ledger("term", &op))
            .unwrap();
        assert_eq!(found, None);
    }

    #[test]
    fn snapshot_skips_tombstones_and_pages_by_key() {
        let store = MemoryServerStore::new();
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
        let store = MemoryServerStore::new();
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
