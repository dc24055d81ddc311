//! An in-memory [`Store`], for tests, the simulation and ephemeral sessions.

use super::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
struct Tables {
    meta: Option<SyncMeta>,
    credential: Option<StoredCredential>,
    entities: BTreeMap<EntityKey, EntityRecord>,
    outbox: BTreeMap<u64, OutboxEntry>,
    conflicts: BTreeMap<EntityKey, ConflictRecord>,
    audit: BTreeMap<u64, AuditEntry>,
    /// Armed by [`InjectFaults`]: the next commit fails after this many writes.
    fail_after: Option<usize>,
}

/// What one write replaced, to undo it.
enum Undo {
    Entity(EntityKey, Option<EntityRecord>),
    Outbox(u64, Option<OutboxEntry>),
    Conflict(EntityKey, Option<ConflictRecord>),
    Audit(u64, Option<AuditEntry>),
    Meta(Option<SyncMeta>),
    Credential(Option<StoredCredential>),
}

impl Tables {
    fn apply(&mut self, op: WriteOp) -> Undo {
        match op {
            WriteOp::PutEntity(r) => {
                let k = r.key.clone();
                Undo::Entity(k.clone(), self.entities.insert(k, r))
            }
            WriteOp::DeleteEntity(k) => {
                let old = self.entities.remove(&k);
                Undo::Entity(k, old)
            }
            WriteOp::PutOutbox(e) => Undo::Outbox(e.seq, self.outbox.insert(e.seq, e)),
            WriteOp::DeleteOutbox(seq) => Undo::Outbox(seq, self.outbox.remove(&seq)),
            WriteOp::PutConflict(c) => {
                let k = c.key.clone();
                Undo::Conflict(k.clone(), self.conflicts.insert(k, c))
            }
            WriteOp::DeleteConflict(k) => {
                let old = self.conflicts.remove(&k);
                Undo::Conflict(k, old)
            }
            WriteOp::AppendAudit(a) => Undo::Audit(a.seq, self.audit.insert(a.seq, a)),
            WriteOp::PutMeta(m) => Undo::Meta(self.meta.replace(m)),
            WriteOp::PutCredential(c) => {
                Undo::Credential(std::mem::replace(&mut self.credential, c))
            }
        }
    }

    fn undo(&mut self, u: Undo) {
        fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, k: K, old: Option<V>) {
            match old {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        match u {
            Undo::Entity(k, old) => restore(&mut self.entities, k, old),
            Undo::Outbox(k, old) => restore(&mut self.outbox, k, old),
            Undo::Conflict(k, old) => restore(&mut self.conflicts, k, old),
            Undo::Audit(k, old) => restore(&mut self.audit, k, old),
            Undo::Meta(old) => self.meta = old,
            Undo::Credential(old) => self.credential = old,
        }
    }
}

/// An in-memory store. Clones share the same data, so a test can drop an
/// engine and open a new one on the same store to model a restart.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg_attr(target_family = "wasm", async_trait(?Send))]
#[cfg_attr(not(target_family = "wasm"), async_trait)]
impl Store for MemoryStore {
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        Ok(self.lock().meta.clone())
    }

    async fn load_credential(&self) -> Result<Option<StoredCredential>, StoreError> {
        Ok(self.lock().credential.clone())
    }

    /// Nothing leaves memory.
    fn keeps_secrets(&self) -> bool {
        true
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        Ok(self.lock().entities.get(key).cloned())
    }

    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        let inner = self.lock();
        super::by_spans(keys, |collection, first, last| {
            let span = EntityKey::new(collection, first)..=EntityKey::new(collection, last);
            Ok(inner.entities.range(span).map(|(_, v)| v.clone()).collect())
        })
    }

    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        let inner = self.lock();
        let start = EntityKey::new(collection, "");
        Ok(inner
            .entities
            .range(start..)
            .take_while(|(k, _)| k.collection == collection)
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        use std::ops::Bound;
        let tables = self.lock();
        let start = match after {
            Some(a) => Bound::Excluded(EntityKey::new(collection, a)),
            None => Bound::Included(EntityKey::new(collection, "")),
        };
        Ok(tables
            .entities
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.collection == collection)
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for k in self.lock().entities.keys() {
            if out.last() != Some(&k.collection) {
                out.push(k.collection.clone());
            }
        }
        Ok(out)
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.lock().outbox.values().cloned().collect())
    }

    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        Ok(self.lock().conflicts.values().cloned().collect())
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .lock()
            .audit
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let fail_after = inner.fail_after.take();
        let mut undo = Vec::with_capacity(batch.ops.len());
        for (i, op) in batch.ops.into_iter().enumerate() {
            if fail_after == Some(i) {
                // Nothing of a failed batch stays: undo what was applied.
                while let Some(u) = undo.pop() {
                    inner.undo(u);
                }
                return Err(StoreError::Backend("injected commit failure".into()));
            }
            undo.push(inner.apply(op));
        }
        if fail_after.is_some_and(|n| n >= undo.len()) {
            while let Some(u) = undo.pop() {
                inner.undo(u);
            }
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        Ok(())
    }
}

impl InjectFaults for MemoryStore {
    fn fail_next_commit_after(&self, ops: usize) {
        self.lock().fail_after = Some(ops);
    }
}

/// Wraps a store and fails commits on demand, to check that a failed commit
/// leaves committed state intact and the engine consistent (as redb's fuzzer
/// does with a failing backend).
#[derive(Debug, Clone)]
pub struct FailingStore<S> {
    inner: S,
    state: Arc<Mutex<FailPlan>>,
}

#[derive(Debug, Default)]
struct FailPlan {
    reads_fail: bool,
    full: bool,
    commits: u64,
    fail_at: Option<u64>,
    fail_every: Option<u64>,
}

impl<S> FailingStore<S> {
    /// Wraps `inner`; no failures until told.
    pub fn new(inner: S) -> Self {
        FailingStore {
            inner,
            state: Arc::new(Mutex::new(FailPlan::default())),
        }
    }

    /// The next commits succeed until the `n`-th from now (1 = the next one), which fails.
    pub fn fail_nth_commit(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.fail_at = Some(s.commits + n);
    }

    /// Every `n`-th commit fails (0 = never).
    pub fn fail_every(&self, n: u64) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fail_every = (n > 0).then_some(n);
    }

    /// Cancels every planned failure.
    pub fn clear_failures(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.fail_at = None;
        s.fail_every = None;
        s.reads_fail = false;
        s.full = false;
    }

    /// While `on`, the device is full: every commit fails with
    /// [`StoreError::QuotaExceeded`] (nothing of it is stored); reads work.
    pub fn set_full(&self, on: bool) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).full = on;
    }

    /// While `on`, every read and every commit fails as if the database had
    /// been deleted or closed underneath the engine ([`StoreError::Gone`]).
    pub fn fail_reads(&self, on: bool) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reads_fail = on;
    }

    fn read_check(&self) -> Result<(), StoreError> {
        if self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reads_fail
        {
            return Err(StoreError::Gone("injected: the database vanished".into()));
        }
        Ok(())
    }

    /// Commits attempted so far.
    pub fn commits(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).commits
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[cfg_attr(target_family = "wasm", async_trait(?Send))]
#[cfg_attr(not(target_family = "wasm"), async_trait)]
impl<S: Store> Store for FailingStore<S> {
    fn health(&self) -> Result<(), StoreError> {
        self.read_check()?;
        self.inner.health()
    }
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        self.read_check()?;
        self.inner.load_meta().await
    }
    async fn load_credential(&self) -> Result<Option<StoredCredential>, StoreError> {
        self.read_check()?;
        self.inner.load_credential().await
    }
    fn keeps_secrets(&self) -> bool {
        self.inner.keeps_secrets()
    }
    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        self.read_check()?;
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.read_check()?;
        self.inner.get_many(keys).await
    }
    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.read_check()?;
        self.inner.get_sorted(keys).await
    }
    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.read_check()?;
        self.inner.scan(collection).await
    }
    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        self.read_check()?;
        self.inner.scan_page(collection, after, limit).await
    }
    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.read_check()?;
        self.inner.collections().await
    }
    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read_check()?;
        self.inner.outbox().await
    }
    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        self.read_check()?;
        self.inner.conflicts().await
    }
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_check()?;
        self.inner.audit(after, limit).await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let fail = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.commits += 1;
            let n = s.commits;
            if s.reads_fail {
                Some(StoreError::Gone("injected: the database vanished".into()))
            } else if s.full {
                Some(StoreError::QuotaExceeded)
            } else if s.fail_at == Some(n) || s.fail_every.is_some_and(|k| n % k == 0) {
                Some(StoreError::Backend("injected commit failure".into()))
            } else {
                None
            }
        };
        if let Some(e) = fail {
            return Err(e);
        }
        self.inner.commit(batch).await
    }
}
