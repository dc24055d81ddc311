//! An in-memory [`Store`], for tests, the simulation and ephemeral sessions.

use super::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
struct Inner {
    meta: Option<SyncMeta>,
    entities: BTreeMap<EntityKey, EntityRecord>,
    outbox: BTreeMap<u64, OutboxEntry>,
    conflicts: BTreeMap<EntityKey, ConflictRecord>,
    audit: BTreeMap<u64, AuditEntry>,
}

/// An in-memory store. Clones share the same data, so a test can drop an
/// engine and open a new one on the same store to model a restart.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg_attr(target_family = "wasm", async_trait(?Send))]
#[cfg_attr(not(target_family = "wasm"), async_trait)]
impl Store for MemoryStore {
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        Ok(self.lock().meta.clone())
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        Ok(self.lock().entities.get(key).cloned())
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
        for op in batch.ops {
            match op {
                WriteOp::PutEntity(r) => {
                    inner.entities.insert(r.key.clone(), r);
                }
                WriteOp::DeleteEntity(k) => {
                    inner.entities.remove(&k);
                }
                WriteOp::PutOutbox(e) => {
                    inner.outbox.insert(e.seq, e);
                }
                WriteOp::DeleteOutbox(seq) => {
                    inner.outbox.remove(&seq);
                }
                WriteOp::PutConflict(c) => {
                    inner.conflicts.insert(c.key.clone(), c);
                }
                WriteOp::DeleteConflict(k) => {
                    inner.conflicts.remove(&k);
                }
                WriteOp::AppendAudit(a) => {
                    inner.audit.insert(a.seq, a);
                }
                WriteOp::PutMeta(m) => inner.meta = Some(m),
            }
        }
        Ok(())
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
    }

    /// While `on`, every read fails as if the database had been deleted.
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
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        self.read_check()?;
        self.inner.load_meta().await
    }
    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        self.read_check()?;
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.read_check()?;
        self.inner.get_many(keys).await
    }
    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.read_check()?;
        self.inner.scan(collection).await
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
            s.fail_at == Some(n) || s.fail_every.is_some_and(|k| n % k == 0)
        };
        if fail {
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        self.inner.commit(batch).await
    }
}
