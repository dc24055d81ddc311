//! The one [`StoreTx`] every backend runs its write transactions with.
//!
//! A [`StagedTx`] reads what the backend has committed through
//! [`CommittedReads`], at most once per key, and answers later reads of the
//! same key (its own writes included) from what it has seen. Its writes are
//! staged as [`Writes`]: when the transaction's closure succeeds
//! ([`StagedTx::run`]) the backend writes them all at once and commits; when
//! the closure fails they are dropped, so a failed transaction writes
//! nothing and gives its cursors back.
//!
//! The backend must keep the partition's writers out until it commits (the
//! cursor contract of [`crate::storage`]), so what the transaction has seen
//! stays true until then.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use tidesync::{Cursor, EntityKey, EntityState, OpId};

use super::{AuditRow, Change, LedgerEntry, Partition, StorageError, StoreTx, StoredEntity};

/// What a backend reads of its committed state inside a write transaction.
pub(crate) trait CommittedReads {
    /// The partition's head cursor (0: no change yet).
    fn head(&mut self, partition: &Partition) -> Result<Cursor, StorageError>;

    /// The entity's committed state, tombstones included.
    fn entity(
        &mut self,
        partition: &Partition,
        key: &EntityKey,
    ) -> Result<Option<StoredEntity>, StorageError>;

    /// The committed ledger entry of `(partition, terminal, op_id)`.
    fn ledger(
        &mut self,
        partition: &Partition,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError>;

    /// The committed ledger entries of many ops at once (those found), for
    /// [`StoreTx::prefetch`]; `None` if the backend reads them one by one
    /// (the default: cheap reads gain nothing from a batch).
    fn ledger_batch(
        &mut self,
        partition: &Partition,
        terminal: &str,
        op_ids: &[OpId],
    ) -> Result<Option<HashMap<OpId, LedgerEntry>>, StorageError> {
        let _ = (partition, terminal, op_ids);
        Ok(None)
    }

    /// The committed states of many entities at once (those found), for
    /// [`StoreTx::prefetch`]; `None` if the backend reads them one by one.
    fn entity_batch(
        &mut self,
        partition: &Partition,
        keys: &[EntityKey],
    ) -> Result<Option<HashMap<EntityKey, StoredEntity>>, StorageError> {
        let _ = (partition, keys);
        Ok(None)
    }
}

/// What a write transaction wrote, for the backend to write at commit.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// The last state written of each entity, by key.
    pub(crate) entities: BTreeMap<EntityKey, StoredEntity>,
    /// The new changes, in cursor order (dense, after the old head).
    pub(crate) changes: Vec<Change>,
    /// The new ledger rows `(terminal, op_id, entry)` of the partition, in
    /// the order written.
    pub(crate) ledger: Vec<(String, OpId, LedgerEntry)>,
    /// The new audit rows, in the order written.
    pub(crate) audit: Vec<AuditRow>,
}

impl Writes {
    /// Whether the transaction wrote nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.entities.is_empty()
            && self.changes.is_empty()
            && self.ledger.is_empty()
            && self.audit.is_empty()
    }

    /// The partition's head after these writes, if they moved it.
    pub(crate) fn new_head(&self) -> Option<Cursor> {
        self.changes.last().map(|c| c.cursor)
    }
}

/// A write transaction on one partition: reads through `R`, writes staged.
pub(crate) struct StagedTx<'p, R> {
    partition: &'p Partition,
    reads: R,
    /// The head including the staged changes (read on first use).
    head: Option<Cursor>,
    /// Every entity read or written so far (`None`: known to be absent).
    entities: HashMap<EntityKey, Option<StoredEntity>>,
    /// Every ledger entry read or written so far, by `(terminal, op_id)`.
    ledger: HashMap<(String, OpId), Option<LedgerEntry>>,
    writes: Writes,
}

impl<'p, R: CommittedReads> StagedTx<'p, R> {
    /// A transaction on `partition` that reads through `reads`.
    pub(crate) fn new(partition: &'p Partition, reads: R) -> Self {
        StagedTx {
            partition,
            reads,
            head: None,
            entities: HashMap::new(),
            ledger: HashMap::new(),
            writes: Writes::default(),
        }
    }

    /// As [`StagedTx::new`], for a backend that has read the head already
    /// (e.g. when it locked the partition).
    pub(crate) fn with_head(partition: &'p Partition, reads: R, head: Cursor) -> Self {
        let mut tx = Self::new(partition, reads);
        tx.head = Some(head);
        tx
    }

    /// Runs a transaction's closure on this transaction and returns what it
    /// wrote, for the backend to write and commit; nothing if it failed.
    pub(crate) fn run(
        mut self,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<Writes, StorageError> {
        work(&mut self)?;
        Ok(self.writes)
    }
}

impl<R: CommittedReads> StoreTx for StagedTx<'_, R> {
    fn partition(&self) -> &Partition {
        self.partition
    }

    fn entity(&mut self, key: &EntityKey) -> Result<Option<StoredEntity>, StorageError> {
        if let Some(seen) = self.entities.get(key) {
            return Ok(seen.clone());
        }
        let found = self.reads.entity(self.partition, key)?;
        self.entities.insert(key.clone(), found.clone());
        Ok(found)
    }

    fn ledger(
        &mut self,
        terminal: &str,
        op_id: &OpId,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let k = (terminal.to_owned(), op_id.clone());
        if let Some(seen) = self.ledger.get(&k) {
            return Ok(seen.clone());
        }
        let found = self.reads.ledger(self.partition, terminal, op_id)?;
        self.ledger.insert(k, found.clone());
        Ok(found)
    }

    fn append_change(&mut self, state: &EntityState) -> Result<Cursor, StorageError> {
        let head = match self.head {
            Some(head) => head,
            None => self.reads.head(self.partition)?,
        };
        let cursor = Cursor(head.0 + 1);
        self.head = Some(cursor);
        self.writes.changes.push(Change {
            cursor,
            state: state.clone(),
        });
        Ok(cursor)
    }

    fn put_entity(&mut self, entity: &StoredEntity) -> Result<(), StorageError> {
        let key = entity.state.key();
        self.entities.insert(key.clone(), Some(entity.clone()));
        self.writes.entities.insert(key, entity.clone());
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
        self.ledger
            .insert((terminal.to_owned(), op_id.clone()), Some(entry.clone()));
        self.writes
            .ledger
            .push((terminal.to_owned(), op_id.clone(), entry.clone()));
        Ok(())
    }

    fn put_audit(&mut self, entry: &AuditRow) -> Result<(), StorageError> {
        self.writes.audit.push(entry.clone());
        Ok(())
    }

    fn prefetch(
        &mut self,
        terminal: &str,
        op_ids: &[OpId],
        keys: &[EntityKey],
    ) -> Result<(), StorageError> {
        // Only what the transaction has not seen yet: its own writes (and
        // earlier reads) stay the answer.
        let ops: Vec<OpId> = op_ids
            .iter()
            .filter(|op| {
                !self
                    .ledger
                    .contains_key(&(terminal.to_owned(), (*op).clone()))
            })
            .cloned()
            .collect();
        if !ops.is_empty() {
            if let Some(mut found) = self.reads.ledger_batch(self.partition, terminal, &ops)? {
                for op in ops {
                    let entry = found.remove(&op);
                    self.ledger.insert((terminal.to_owned(), op), entry);
                }
            }
        }
        let mut unseen: Vec<EntityKey> = keys
            .iter()
            .filter(|k| !self.entities.contains_key(*k))
            .cloned()
            .collect();
        unseen.sort();
        unseen.dedup();
        if !unseen.is_empty() {
            if let Some(mut found) = self.reads.entity_batch(self.partition, &unseen)? {
                for key in unseen {
                    let entity = found.remove(&key);
                    self.entities.insert(key, entity);
                }
            }
        }
        Ok(())
    }
}

/// Fault injection for tests: while on, every write transaction fails at
/// commit (and keeps nothing); transactions that wrote nothing still succeed.
#[derive(Debug, Default)]
pub(crate) struct CommitFailures(AtomicBool);

impl CommitFailures {
    /// Turns the injected failures on or off.
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    /// The injected failure for a commit of `writes`, if it is due.
    pub(crate) fn check(&self, writes: &Writes) -> Result<(), StorageError> {
        if !writes.is_empty() && self.0.load(Ordering::SeqCst) {
            return Err(StorageError::backend("injected commit failure"));
        }
        Ok(())
    }
}
