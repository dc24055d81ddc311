//! The sync engine: local writes with their outbox entries, push, pull,
//! conflict handling, reconcile and status, generic over a [`Store`], a
//! [`Transport`] and an [`Environment`].
//!
//! ## How a mutation travels
//! 1. A local write builds the new local view, an outbox entry and an audit
//!    entry and commits them in ONE store batch.
//! 2. [`Engine::push`] sends the head of each entity's chain (FIFO per entity;
//!    one entity's failure never holds back another) in batches sized by the
//!    [`Throttle`]. Each ack is handled in one batch: `applied`/`duplicate`
//!    remove the entry and advance the base; `conflict` hands the chain to the
//!    collection's [`ConflictPolicy`]; `rejected` dead-letters it; transport
//!    failures back off with full jitter (time offline never counts toward
//!    the attempt cap).
//! 3. [`Engine::pull`] takes a snapshot on first run, then the change feed
//!    from the stored cursor; the cursor is committed in the same batch as the
//!    changes it covers. A change that carries the op id of a chain's head is
//!    that head's acknowledgement (the push answer was lost).
//! 4. The local view of an entity is always its last server state with its
//!    pending (or conflicted) mutations replayed on top, in order.

use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::hlc::{node_id, HlcClock};
use crate::migrate::{MigrationOutcome, QueuedMigration};
use crate::outbox::Outbox;
use crate::policy::{decide, ConflictPolicy, Decision};
use crate::protocol::*;
use crate::retry::RetryPolicy;
use crate::status::{Event, Filter, Metrics, Phase, Status};
use crate::store::*;
use crate::throttle::{ConnectionHint, Throttle, ThrottleConfig};
use crate::transport::{Transport, TransportError};
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How an engine is set up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// This installation's id (kept in the store after the first open).
    pub client_id: String,
    /// The terminal the credentials belong to.
    pub terminal_id: String,
    /// The terminal's branch.
    pub branch_id: String,
    /// Schema version of the payloads this build writes.
    pub schema_version: u32,
    /// Conflict policy per collection.
    pub policies: BTreeMap<String, ConflictPolicy>,
    /// Policy of collections not listed.
    pub default_policy: ConflictPolicy,
    /// Delivery retries.
    pub retry: RetryPolicy,
    /// Push sizing.
    pub throttle: ThrottleConfig,
    /// Envelope limits (checked before a write is accepted).
    pub limits: Limits,
    /// A local copy not brought up to date for this long is stale (ms).
    pub stale_after_ms: u64,
    /// Snapshot page size.
    pub snapshot_page: u32,
    /// Changes page size.
    pub changes_page: u32,
    /// Most pages pulled in one [`Engine::pull`].
    pub max_pull_pages: usize,
    /// Reconcile buckets.
    pub reconcile_buckets: u32,
    /// Most manifest entries per reconcile request.
    pub max_manifest: usize,
    /// Most push rounds in one [`Engine::sync_now`].
    pub max_push_rounds: usize,
}

impl EngineConfig {
    /// Defaults for a terminal.
    pub fn new(
        client_id: impl Into<String>,
        terminal_id: impl Into<String>,
        branch_id: impl Into<String>,
    ) -> Self {
        EngineConfig {
            client_id: client_id.into(),
            terminal_id: terminal_id.into(),
            branch_id: branch_id.into(),
            schema_version: 1,
            policies: BTreeMap::new(),
            default_policy: ConflictPolicy::LastWriteWins,
            retry: RetryPolicy::default(),
            throttle: ThrottleConfig::default(),
            limits: Limits::default(),
            stale_after_ms: 24 * 3600 * 1000,
            snapshot_page: 1000,
            changes_page: 500,
            max_pull_pages: 100,
            reconcile_buckets: 64,
            max_manifest: 5000,
            max_push_rounds: 50,
        }
    }

    /// Declares a collection's policy.
    pub fn with_policy(mut self, collection: impl Into<String>, policy: ConflictPolicy) -> Self {
        self.policies.insert(collection.into(), policy);
        self
    }
}

/// An error from the engine, with a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EngineError {
    /// Stable code.
    pub code: ErrorCode,
    /// Detail; never payload data.
    pub message: String,
}

impl EngineError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::new(e.code(), e.to_string())
    }
}

impl From<ApplyError> for EngineError {
    fn from(e: ApplyError) -> Self {
        EngineError::new(e.code, e.message)
    }
}

/// How a person resolves a conflict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "choice", content = "fields", rename_all = "snake_case")]
pub enum Resolution {
    /// Keep the local intent: it is sent as a new mutation on the server's version.
    Local,
    /// Keep the server's state; the local mutations are dropped (audited).
    Server,
    /// Use these fields: sent as a new mutation on the server's version.
    Edited(Fields),
}

/// What one [`Engine::sync_now`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Mutations sent (retries included).
    pub sent: usize,
    /// Acknowledged as applied or duplicate.
    pub acknowledged: usize,
    /// Conflicts met.
    pub conflicts: usize,
    /// Moved to the dead-letter queue.
    pub dead_lettered: usize,
    /// Server changes stored.
    pub pulled: usize,
    /// The first error met, if any (also in the status).
    pub error: Option<ErrorCode>,
}

struct State {
    meta: SyncMeta,
    clock: HlcClock,
    outbox: Outbox,
    conflicts: BTreeMap<EntityKey, ConflictRecord>,
    online: bool,
    syncing: bool,
    last_error: Option<(ErrorCode, String)>,
    /// When unreachable: next probe time.
    offline_until: u64,
    /// Rate-limited or unauthorized: no push before this time.
    paused_until: u64,
    /// A whole batch was refused as too large: cap batches at this size.
    batch_cap: Option<usize>,
    metrics: Metrics,
    throttle: Throttle,
    last_status: Option<Status>,
}

/// Changes being prepared for one store batch.
#[derive(Default)]
struct Txn {
    batch: WriteBatch,
    records: BTreeMap<EntityKey, Option<EntityRecord>>,
    original_views: BTreeMap<EntityKey, Option<LocalEntity>>,
    dirty: BTreeSet<EntityKey>,
    audits: Vec<(Option<OpId>, EntityKey, AuditEvent)>,
    alerts: Vec<Event>,
    report: SyncReport,
}

impl Txn {
    async fn record<S: Store>(
        &mut self,
        store: &S,
        key: &EntityKey,
    ) -> Result<EntityRecord, EngineError> {
        if !self.records.contains_key(key) {
            let rec = store.get(key).await?;
            self.original_views
                .insert(key.clone(), rec.as_ref().and_then(|r| r.view.clone()));
            self.records.insert(key.clone(), rec);
        }
        Ok(self.records[key].clone().unwrap_or_else(|| EntityRecord {
            key: key.clone(),
            server: None,
            chain_base: None,
            view: None,
        }))
    }

    /// Reads the records of `keys` not read yet, in one store call.
    async fn prefetch<S: Store>(
        &mut self,
        store: &S,
        keys: &[EntityKey],
    ) -> Result<(), EngineError> {
        let missing: Vec<EntityKey> = keys
            .iter()
            .filter(|k| !self.records.contains_key(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let recs = store.get_many(&missing).await?;
        for (k, rec) in missing.into_iter().zip(recs) {
            self.original_views
                .insert(k.clone(), rec.as_ref().and_then(|r| r.view.clone()));
            self.records.insert(k, rec);
        }
        Ok(())
    }

    fn put_record(&mut self, rec: EntityRecord) {
        self.dirty.insert(rec.key.clone());
        self.records.insert(rec.key.clone(), Some(rec));
    }

    fn audit(&mut self, op: Option<&OpId>, key: &EntityKey, event: AuditEvent) {
        self.audits.push((op.cloned(), key.clone(), event));
    }
}

impl State {
    fn put_entry(&mut self, tx: &mut Txn, e: OutboxEntry) {
        tx.batch.push(WriteOp::PutOutbox(e.clone()));
        self.outbox.insert(e);
    }

    fn remove_entry(&mut self, tx: &mut Txn, seq: u64) -> Option<OutboxEntry> {
        tx.batch.push(WriteOp::DeleteOutbox(seq));
        self.outbox.remove(seq)
    }

    fn status(&self, now: u64, stale_after: u64) -> Status {
        let phase = if self.syncing {
            Phase::Syncing
        } else if !self.online {
            Phase::Offline
        } else if self.last_error.is_some() {
            Phase::Error
        } else {
            Phase::Idle
        };
        let stale = self.meta.snapshot != SnapshotProgress::Done
            || self
                .meta
                .snapshot_at_ms
                .is_none_or(|t| now.saturating_sub(t) > stale_after);
        Status {
            phase,
            pending: self.outbox.pending_count(),
            conflicts: self.conflicts.len(),
            dead_letters: self.outbox.dead_letter_count(),
            last_error: self.last_error.clone(),
            stale,
            last_sync_at: self.meta.last_sync_at_ms,
            drift_age_ms: self.meta.last_sync_at_ms.map(|t| now.saturating_sub(t)),
        }
    }
}

/// Replays `mutations` on `server` to give the local view.
pub fn compute_view<'a>(
    key: &EntityKey,
    server: Option<&EntityState>,
    mutations: impl IntoIterator<Item = &'a Mutation>,
    conflicted: bool,
) -> Option<LocalEntity> {
    let mut cur = server.cloned();
    let base_version = server.map(|s| s.version).unwrap_or(0);
    let mut pending = 0u32;
    for m in mutations {
        pending += 1;
        // A mutation that no longer applies (e.g. a patch of an entity deleted
        // on the server) is left out of the view; the push will surface it.
        if let Ok(next) = apply_mutation(cur.as_ref(), m, base_version) {
            cur = Some(next);
        }
    }
    let cur = cur?;
    Some(LocalEntity {
        collection: key.collection.clone(),
        id: key.id.clone(),
        fields: cur.fields,
        deleted: cur.deleted,
        server_version: base_version,
        updated_at: cur.updated_at,
        pending,
        conflicted,
    })
}

/// A subscription to engine events; a stream of [`Event`].
pub type Subscription = UnboundedReceiver<Event>;

/// The sync engine of one client. See the module docs.
pub struct Engine<S, T, E> {
    store: S,
    transport: T,
    env: E,
    config: EngineConfig,
    state: Mutex<State>,
    sync_lock: Mutex<()>,
    subscribers: std::sync::Mutex<Vec<(Filter, UnboundedSender<Event>)>>,
}

impl<S, T, E> std::fmt::Debug for Engine<S, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Opens an engine on a store, initialising it on first use. Queued
    /// mutations, dead letters and conflicts from earlier sessions are picked
    /// up as they were.
    pub async fn open(
        store: S,
        transport: T,
        env: E,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        Self::open_with_migrations(store, transport, env, config, Vec::new()).await
    }

    /// Like [`open`](Self::open), and carries queued mutations written at an
    /// older schema version forward with `migrations` (see [`crate::migrate`]).
    /// A version step without a migration keeps the payloads as they are.
    pub async fn open_with_migrations(
        store: S,
        transport: T,
        env: E,
        config: EngineConfig,
        migrations: Vec<Box<dyn QueuedMigration>>,
    ) -> Result<Self, EngineError> {
        let meta = match store.load_meta().await? {
            Some(m) => {
                if m.schema_version > config.schema_version {
                    return Err(EngineError::new(
                        ErrorCode::SchemaUnsupported,
                        format!(
                            "the store is at schema {} but this build knows {}",
                            m.schema_version, config.schema_version
                        ),
                    ));
                }
                m
            }
            None => {
                let m = SyncMeta {
                    client_id: config.client_id.clone(),
                    schema_version: config.schema_version,
                    cursor: None,
                    snapshot: SnapshotProgress::NotStarted,
                    snapshot_at_ms: None,
                    last_sync_at_ms: None,
                    hlc: Default::default(),
                    next_seq: 1,
                    next_audit_seq: 1,
                    verify_pending: false,
                    generation: 0,
                };
                store
                    .commit(WriteBatch {
                        ops: vec![WriteOp::PutMeta(m.clone())],
                    })
                    .await?;
                m
            }
        };
        let outbox = Outbox::from_entries(store.outbox().await?);
        let conflicts = store
            .conflicts()
            .await?
            .into_iter()
            .map(|c| (c.key.clone(), c))
            .collect();
        let clock = HlcClock::new(node_id(&meta.client_id), meta.hlc);
        let state = State {
            meta,
            clock,
            outbox,
            conflicts,
            online: true,
            syncing: false,
            last_error: None,
            offline_until: 0,
            paused_until: 0,
            batch_cap: None,
            metrics: Metrics::default(),
            throttle: Throttle::new(config.throttle.clone()),
            last_status: None,
        };
        let engine = Engine {
            store,
            transport,
            env,
            config,
            state: Mutex::new(state),
            sync_lock: Mutex::new(()),
            subscribers: std::sync::Mutex::new(Vec::new()),
        };
        engine.migrate_queued(&migrations).await?;
        Ok(engine)
    }

    /// Runs the schema steps from the store's version to the build's, each
    /// in its own batch with the new version.
    async fn migrate_queued(
        &self,
        migrations: &[Box<dyn QueuedMigration>],
    ) -> Result<(), EngineError> {
        let mut st = self.state.lock().await;
        while st.meta.schema_version < self.config.schema_version {
            let from = st.meta.schema_version;
            let step = migrations.iter().find(|m| m.upgrades_from() == from);
            let now = self.env.now_ms();
            let mut tx = Txn::default();
            let carry = |m: &Mutation| -> Result<Mutation, (ErrorCode, String)> {
                let outcome = step.map_or(MigrationOutcome::Keep, |s| s.migrate(m));
                let mut m = m.clone();
                match outcome {
                    MigrationOutcome::Keep => {}
                    MigrationOutcome::Rewrite(payload) => m.payload = payload,
                    MigrationOutcome::Hold { code, message } => return Err((code, message)),
                }
                m.schema_version = from + 1;
                m.checksum =
                    payload_checksum(&m.collection, &m.entity_id, m.kind, m.payload.as_ref());
                Ok(m)
            };
            let entries: Vec<OutboxEntry> = st
                .outbox
                .iter()
                .filter(|e| e.mutation.schema_version == from && e.state == OutboxState::Pending)
                .cloned()
                .collect();
            for mut e in entries {
                let key = e.mutation.key();
                match carry(&e.mutation) {
                    Ok(m) => {
                        e.mutation = m;
                        st.put_entry(&mut tx, e);
                    }
                    Err((code, message)) => {
                        self.dead_letter(&mut st, &mut tx, e, code, message, now)
                    }
                }
                let rec = tx.record(&self.store, &key).await?;
                tx.put_record(rec);
            }
            let keys: Vec<EntityKey> = st.conflicts.keys().cloned().collect();
            for key in keys {
                let mut c = st.conflicts[&key].clone();
                // A conflict's mutations are only replayed for display and
                // resolved by a person: carry what can be carried, keep the rest.
                for m in c.mutations.iter_mut().filter(|m| m.schema_version == from) {
                    if let Ok(next) = carry(m) {
                        *m = next;
                    }
                }
                tx.batch.push(WriteOp::PutConflict(c.clone()));
                st.conflicts.insert(key.clone(), c);
                let rec = tx.record(&self.store, &key).await?;
                tx.put_record(rec);
            }
            st.meta.schema_version = from + 1;
            self.finish(&mut st, tx).await?;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The client id in use.
    pub async fn client_id(&self) -> String {
        self.state.lock().await.meta.client_id.clone()
    }

    /// The policy of a collection.
    pub fn policy(&self, collection: &str) -> ConflictPolicy {
        self.config
            .policies
            .get(collection)
            .copied()
            .unwrap_or(self.config.default_policy)
    }

    fn new_ulid(&self, now: u64) -> OpId {
        let r = (u128::from(self.env.random_u64()) << 64) | u128::from(self.env.random_u64());
        OpId::from_parts(now, r)
    }

    // ------------------------------------------------------------------
    // Subscriptions and status

    /// Events matching `filter`, from now on.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        let (tx, rx) = unbounded();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((filter, tx));
        rx
    }

    fn emit(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|(_, tx)| !tx.is_closed());
        for ev in events {
            for (filter, tx) in subs.iter() {
                if filter.matches(&ev) {
                    let _ = tx.unbounded_send(ev.clone());
                }
            }
        }
    }

    fn status_event(&self, st: &mut State) -> Option<Event> {
        let status = st.status(self.env.now_ms(), self.config.stale_after_ms);
        let mut cmp = status.clone();
        cmp.drift_age_ms = None;
        let changed = st.last_status.as_ref() != Some(&cmp);
        st.last_status = Some(cmp);
        changed.then_some(Event::Status { status })
    }

    /// The current status for the sync pill.
    pub async fn status(&self) -> Status {
        let st = self.lock_read().await;
        st.status(self.env.now_ms(), self.config.stale_after_ms)
    }

    /// Counters since open.
    pub async fn metrics(&self) -> Metrics {
        self.state.lock().await.metrics.clone()
    }

    /// The sync state as stored.
    pub async fn meta(&self) -> SyncMeta {
        self.lock_read().await.meta.clone()
    }

    /// The host learnt the network went up or down (online/offline events).
    pub async fn set_online(&self, online: bool) {
        let mut st = self.state.lock().await;
        st.online = online;
        if online {
            st.offline_until = 0;
        }
        let ev = self.status_event(&mut st);
        drop(st);
        self.emit(ev.into_iter().collect());
    }

    /// The host's connection hint (`navigator.connection`).
    pub async fn set_connection_hint(&self, hint: ConnectionHint) {
        self.state.lock().await.throttle.set_hint(hint);
    }

    /// Caps upload bandwidth (bytes per second), or lifts the cap.
    pub async fn set_max_bytes_per_sec(&self, cap: Option<u64>) {
        self.state.lock().await.throttle.set_max_bytes_per_sec(cap);
    }

    /// The host refreshed the credentials: resume at once.
    pub async fn credentials_changed(&self) {
        let mut st = self.state.lock().await;
        st.paused_until = 0;
        st.last_error = None;
    }

    /// When the engine next has something to do (ms), for the host's timer.
    pub async fn next_wakeup(&self) -> Option<u64> {
        let st = self.state.lock().await;
        let due = st.outbox.next_due(&st.conflicts)?;
        let mut t = due.max(st.paused_until).max(st.throttle.next_allowed_at());
        if !st.online {
            t = t.max(st.offline_until);
        }
        Some(t)
    }

    // ------------------------------------------------------------------
    // Reads

    /// One entity's local view (`None` if absent or deleted).
    pub async fn get(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<LocalEntity>, EngineError> {
        Ok(self
            .store
            .get(&EntityKey::new(collection, id))
            .await?
            .and_then(|r| r.view)
            .filter(|v| !v.deleted))
    }

    /// Every live entity of a collection, ordered by id.
    pub async fn query(&self, collection: &str) -> Result<Vec<LocalEntity>, EngineError> {
        Ok(self
            .store
            .scan(collection)
            .await?
            .into_iter()
            .filter_map(|r| r.view)
            .filter(|v| !v.deleted)
            .collect())
    }

    /// The outbox: pending mutations and dead letters, in order.
    pub async fn outbox(&self) -> Vec<OutboxEntry> {
        self.lock_read().await.outbox.iter().cloned().collect()
    }

    /// Dead letters only.
    pub async fn dead_letters(&self) -> Vec<OutboxEntry> {
        self.lock_read()
            .await
            .outbox
            .iter()
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .collect()
    }

    /// Open conflicts.
    pub async fn conflicts(&self) -> Vec<ConflictRecord> {
        self.lock_read().await.conflicts.values().cloned().collect()
    }

    /// Local audit entries after `after`.
    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.store.audit(after, limit).await?)
    }

    // ------------------------------------------------------------------
    // Local writes

    /// Creates an entity; `id` defaults to a new ULID.
    pub async fn create(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
    ) -> Result<LocalEntity, EngineError> {
        let id = self.id_or_new(id);
        self.local_write(collection, &id, MutationKind::Create, Some(fields))
            .await
    }

    fn id_or_new(&self, id: Option<&str>) -> String {
        match id {
            Some(id) => id.to_string(),
            None => self.new_ulid(self.env.now_ms()).0,
        }
    }

    /// Applies a JSON merge patch to an entity.
    pub async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: Fields,
    ) -> Result<LocalEntity, EngineError> {
        self.local_write(collection, id, MutationKind::Patch, Some(patch))
            .await
    }

    /// Deletes an entity.
    pub async fn delete(&self, collection: &str, id: &str) -> Result<LocalEntity, EngineError> {
        self.local_write(collection, id, MutationKind::Delete, None)
            .await
    }

    /// Appends a record to an append-only collection; `id` defaults to a new ULID.
    pub async fn append(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
    ) -> Result<LocalEntity, EngineError> {
        let id = self.id_or_new(id);
        self.local_write(collection, &id, MutationKind::Append, Some(fields))
            .await
    }

    /// A new mutation of this terminal, stamped and validated.
    fn new_mutation(
        &self,
        st: &mut State,
        key: &EntityKey,
        kind: MutationKind,
        payload: Option<Fields>,
        base_version: u64,
        now: u64,
    ) -> Result<Mutation, EngineError> {
        let m = Mutation {
            op_id: self.new_ulid(now),
            client_id: st.meta.client_id.clone(),
            terminal_id: self.config.terminal_id.clone(),
            branch_id: self.config.branch_id.clone(),
            collection: key.collection.clone(),
            entity_id: key.id.clone(),
            kind,
            checksum: payload_checksum(&key.collection, &key.id, kind, payload.as_ref()),
            payload,
            base_version,
            hlc: st.clock.tick(now),
            schema_version: self.config.schema_version,
            offline: !st.online,
        };
        validate_mutation(&m, &self.config.limits)?;
        Ok(m)
    }

    /// Queues `m` at the end of the outbox, with its audit entry.
    fn enqueue(&self, st: &mut State, tx: &mut Txn, m: Mutation, now: u64) {
        let seq = st.meta.next_seq;
        st.meta.next_seq += 1;
        tx.audit(Some(&m.op_id), &m.key(), AuditEvent::Queued);
        st.put_entry(
            tx,
            OutboxEntry {
                seq,
                mutation: m,
                state: OutboxState::Pending,
                attempts: 0,
                next_attempt_at: now,
                sent: false,
                last_error: None,
                enqueued_at: now,
            },
        );
    }

    async fn local_write(
        &self,
        collection: &str,
        id: &str,
        kind: MutationKind,
        payload: Option<Fields>,
    ) -> Result<LocalEntity, EngineError> {
        let policy = self.policy(collection);
        match (policy, kind) {
            (ConflictPolicy::AppendOnly, MutationKind::Append) => {}
            (ConflictPolicy::AppendOnly, _) => {
                return Err(EngineError::new(
                    ErrorCode::PolicyViolation,
                    format!("{collection} is append-only: use append"),
                ))
            }
            (_, MutationKind::Append) => {
                return Err(EngineError::new(
                    ErrorCode::PolicyViolation,
                    format!("{collection} is not append-only: use create"),
                ))
            }
            _ => {}
        }
        let key = EntityKey::new(collection, id);
        let mut st = self.lock_fresh().await?;
        if st.conflicts.contains_key(&key) {
            return Err(EngineError::new(
                ErrorCode::InvalidState,
                format!("{key} has an open conflict: resolve it first"),
            ));
        }
        let now = self.env.now_ms();
        let mut m = self.new_mutation(&mut st, &key, kind, payload, 0, now)?;

        let mut tx = Txn::default();
        let mut rec = tx.record(&self.store, &key).await?;
        let chain: Vec<Mutation> = st
            .outbox
            .chain(&key)
            .iter()
            .map(|e| e.mutation.clone())
            .collect();
        // The view the user is changing must accept the change.
        let view = compute_view(&key, rec.server.as_ref(), &chain, false);
        let view_state = view.as_ref().map(|v| EntityState {
            collection: v.collection.clone(),
            id: v.id.clone(),
            version: v.server_version,
            fields: v.fields.clone(),
            deleted: v.deleted,
            updated_at: v.updated_at,
            last_op: None,
        });
        apply_mutation(view_state.as_ref(), &m, 0)?;

        m.base_version = match chain.last() {
            Some(prev) => prev.base_version,
            None => rec.server.as_ref().map(|s| s.version).unwrap_or(0),
        };
        if rec.chain_base.is_none() {
            rec.chain_base = Some(match &rec.server {
                Some(s) => ChainBase::State(s.clone()),
                None => ChainBase::Absent,
            });
        }
        self.enqueue(&mut st, &mut tx, m, now);
        tx.put_record(rec);
        self.finish(&mut st, tx).await?;
        st.metrics.queued += 1;
        drop(st);
        self.get_view(&key).await
    }

    async fn get_view(&self, key: &EntityKey) -> Result<LocalEntity, EngineError> {
        self.store
            .get(key)
            .await?
            .and_then(|r| r.view)
            .ok_or_else(|| EngineError::new(ErrorCode::Internal, "view missing after write"))
    }

    /// Commits `tx`: refreshes the views of touched entities, numbers the
    /// audit entries, stores the sync state, and emits events on success. On
    /// failure, reloads the caches from the store (nothing was committed).
    async fn finish(&self, st: &mut State, mut tx: Txn) -> Result<SyncReport, EngineError> {
        let mut events = Vec::new();
        let listening = !self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let dirty = std::mem::take(&mut tx.dirty);
        for key in dirty {
            let Some(Some(mut rec)) = tx.records.remove(&key) else {
                continue;
            };
            let conflict = st.conflicts.get(&key);
            let muts: Vec<&Mutation> = match conflict {
                Some(c) => c.mutations.iter().collect(),
                None => st
                    .outbox
                    .chain(&key)
                    .into_iter()
                    .map(|e| &e.mutation)
                    .collect(),
            };
            if muts.is_empty() && conflict.is_none() {
                rec.chain_base = None;
            }
            rec.view = compute_view(&key, rec.server.as_ref(), muts, conflict.is_some());
            let original = tx.original_views.get(&key).and_then(|v| v.as_ref());
            if listening && original != rec.view.as_ref() {
                events.push(Event::Changed {
                    key: key.clone(),
                    entity: rec.view.clone(),
                });
            }
            if rec.server.is_none() && rec.view.is_none() {
                tx.batch.push(WriteOp::DeleteEntity(key));
            } else {
                tx.batch.push(WriteOp::PutEntity(rec));
            }
        }
        let now = self.env.now_ms();
        for (op, key, event) in std::mem::take(&mut tx.audits) {
            let seq = st.meta.next_audit_seq;
            st.meta.next_audit_seq += 1;
            tx.batch.push(WriteOp::AppendAudit(AuditEntry {
                seq,
                at_ms: now,
                op_id: op,
                key,
                event,
            }));
        }
        st.meta.hlc = st.clock.last();
        st.meta.generation = st.meta.generation.wrapping_add(1);
        tx.batch.push(WriteOp::PutMeta(st.meta.clone()));
        if let Err(e) = self.store.commit(tx.batch).await {
            self.reload(st).await;
            let err = EngineError::from(e);
            st.last_error = Some((err.code, err.message.clone()));
            return Err(err);
        }
        events.append(&mut tx.alerts);
        events.extend(self.status_event(st));
        self.emit(events);
        Ok(tx.report)
    }

    /// Locks the state, first reloading the caches if another engine on the
    /// same store (another tab, another process) committed since we last
    /// looked. The host serialises engines that share a store (the browser
    /// adapter with a Web Lock), so nothing commits between this check and
    /// our own commit.
    async fn lock_fresh(&self) -> Result<futures::lock::MutexGuard<'_, State>, EngineError> {
        let mut st = self.state.lock().await;
        let stored = match self.store.load_meta().await {
            Ok(m) => m,
            Err(e) => {
                // A store that cannot be read (evicted, closed, corrupt) is
                // an error the pill shows, not only a failed call.
                let err = EngineError::from(e);
                st.last_error = Some((err.code, err.message.clone()));
                let ev = self.status_event(&mut st);
                self.emit(ev.into_iter().collect());
                return Err(err);
            }
        };
        if stored.as_ref().map(|m| m.generation) != Some(st.meta.generation) {
            self.reload(&mut st).await;
        }
        Ok(st)
    }

    /// [`lock_fresh`](Self::lock_fresh) for reads: a store that cannot be
    /// read leaves the cached state in place.
    async fn lock_read(&self) -> futures::lock::MutexGuard<'_, State> {
        match self.lock_fresh().await {
            Ok(st) => st,
            Err(_) => self.state.lock().await,
        }
    }

    /// Rebuilds the caches from the store (after a failed commit, or when
    /// another engine on the same store committed).
    async fn reload(&self, st: &mut State) {
        if let Ok(Some(meta)) = self.store.load_meta().await {
            // Never go back in time: take the later of the two clocks.
            let hlc = st.clock.last().max(meta.hlc);
            st.clock = HlcClock::new(node_id(&meta.client_id), hlc);
            st.meta = meta;
            st.meta.hlc = hlc;
        }
        if let Ok(entries) = self.store.outbox().await {
            st.outbox = Outbox::from_entries(entries);
        }
        if let Ok(conflicts) = self.store.conflicts().await {
            st.conflicts = conflicts.into_iter().map(|c| (c.key.clone(), c)).collect();
        }
    }

    // ------------------------------------------------------------------
    // Dead letters and conflicts

    /// Puts a dead letter back in the queue, due now, with its attempts reset.
    pub async fn retry(&self, seq: u64) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let mut e = st
            .outbox
            .get(seq)
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .ok_or_else(|| {
                EngineError::new(ErrorCode::NotFound, format!("no dead letter {seq}"))
            })?;
        let mut tx = Txn::default();
        e.state = OutboxState::Pending;
        e.attempts = 0;
        e.next_attempt_at = self.env.now_ms();
        tx.audit(
            Some(&e.mutation.op_id),
            &e.mutation.key(),
            AuditEvent::Retried,
        );
        st.put_entry(&mut tx, e);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Drops a dead letter; the entity's view is replayed without it.
    pub async fn discard(&self, seq: u64) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let e = st
            .outbox
            .get(seq)
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .ok_or_else(|| {
                EngineError::new(ErrorCode::NotFound, format!("no dead letter {seq}"))
            })?;
        let mut tx = Txn::default();
        let key = e.mutation.key();
        let rec = tx.record(&self.store, &key).await?;
        st.remove_entry(&mut tx, seq);
        tx.put_record(rec);
        tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::Discarded);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Resolves an open conflict. `Local` and `Edited` queue one new mutation
    /// that turns the server's current state into the chosen one.
    pub async fn resolve(
        &self,
        key: &EntityKey,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let conflict = st.conflicts.get(key).cloned().ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no conflict on {key}"))
        })?;
        let mut tx = Txn::default();
        let mut rec = tx.record(&self.store, key).await?;
        let (choice, target): (&str, Option<Option<Fields>>) = match resolution {
            Resolution::Local => (
                "local",
                Some(
                    conflict
                        .local
                        .clone()
                        .filter(|l| !l.deleted)
                        .map(|l| l.fields),
                ),
            ),
            Resolution::Server => ("server", None),
            Resolution::Edited(f) => ("edited", Some(Some(f))),
        };
        let server = rec.server.clone().filter(|s| !s.deleted);
        let now = self.env.now_ms();
        let new = match target {
            None => None,
            Some(target) => match (&server, target) {
                (Some(s), Some(t)) if s.fields == t => None,
                (Some(s), Some(t)) => Some((MutationKind::Patch, Some(diff_patch(&s.fields, &t)))),
                (Some(_), None) => Some((MutationKind::Delete, None)),
                (None, Some(t)) => Some((MutationKind::Create, Some(t))),
                (None, None) => None,
            },
        };
        st.conflicts.remove(key);
        tx.batch.push(WriteOp::DeleteConflict(key.clone()));
        rec.chain_base = None;
        if let Some((kind, payload)) = new {
            let base_version = rec.server.as_ref().map(|s| s.version).unwrap_or(0);
            let m = match self.new_mutation(&mut st, key, kind, payload, base_version, now) {
                Ok(m) => m,
                Err(e) => {
                    st.conflicts.insert(key.clone(), conflict);
                    return Err(e);
                }
            };
            rec.chain_base = Some(match &rec.server {
                Some(s) => ChainBase::State(s.clone()),
                None => ChainBase::Absent,
            });
            self.enqueue(&mut st, &mut tx, m, now);
        }
        for m in &conflict.mutations {
            tx.audit(
                Some(&m.op_id),
                key,
                AuditEvent::ConflictResolved {
                    choice: choice.to_string(),
                },
            );
        }
        tx.put_record(rec);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    // ------------------------------------------------------------------
    // Sync

    /// Pushes what is due, pulls, and pushes what the pull made due again.
    /// Transport failures are absorbed into the status; only a store failure
    /// is an `Err`.
    pub async fn sync_now(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.set_syncing(true).await;
        let result = async {
            let mut report = self.push_rounds().await?;
            let pulled = self.pull_locked().await?;
            merge_report(&mut report, pulled);
            let again = self.push_rounds().await?;
            merge_report(&mut report, again);
            Ok(report)
        }
        .await;
        self.set_syncing(false).await;
        result
    }

    async fn set_syncing(&self, on: bool) {
        let mut st = self.state.lock().await;
        st.syncing = on;
        let ev = self.status_event(&mut st);
        drop(st);
        self.emit(ev.into_iter().collect());
    }

    async fn push_rounds(&self) -> Result<SyncReport, EngineError> {
        let mut report = SyncReport::default();
        for _ in 0..self.config.max_push_rounds {
            let r = self.push_once().await?;
            let sent = r.sent;
            merge_report(&mut report, r);
            if sent == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// One push round: sends the due heads in up to `concurrency` batches.
    pub async fn push(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.push_once().await
    }

    async fn push_once(&self) -> Result<SyncReport, EngineError> {
        let batches: Vec<Vec<OutboxEntry>> = {
            let st = self.lock_fresh().await?;
            let now = self.env.now_ms();
            if now < st.paused_until
                || now < st.throttle.next_allowed_at()
                || (!st.online && now < st.offline_until)
            {
                return Ok(SyncReport::default());
            }
            let plan = st.throttle.plan();
            let batch_size = st
                .batch_cap
                .map_or(plan.batch_size, |c| c.min(plan.batch_size))
                .max(1);
            let due: Vec<OutboxEntry> = st
                .outbox
                .due_heads(now, &st.conflicts, batch_size * plan.concurrency)
                .into_iter()
                .cloned()
                .collect();
            due.chunks(batch_size).map(|c| c.to_vec()).collect()
        };
        if batches.is_empty() {
            return Ok(SyncReport::default());
        }
        let sends = batches.into_iter().map(|batch| async move {
            let attempt = batch.iter().map(|e| e.attempts).max().unwrap_or(0) + 1;
            let request = PushRequest {
                protocol: PROTOCOL_VERSION,
                attempt,
                mutations: batch.iter().map(|e| e.mutation.clone()).collect(),
            };
            let bytes = serde_json::to_vec(&request)
                .map(|v| v.len() as u64)
                .unwrap_or(0);
            let started = self.env.now_ms();
            let result = self.transport.push(request).await;
            (batch, result, bytes, started)
        });
        let results = futures::future::join_all(sends).await;
        let mut report = SyncReport::default();
        for (batch, result, bytes, started) in results {
            let r = self
                .apply_push_result(batch, result, bytes, started)
                .await?;
            merge_report(&mut report, r);
        }
        Ok(report)
    }

    async fn apply_push_result(
        &self,
        batch: Vec<OutboxEntry>,
        result: Result<PushResponse, TransportError>,
        bytes: u64,
        started: u64,
    ) -> Result<SyncReport, EngineError> {
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let mut tx = Txn::default();
        if result.is_ok() {
            let keys: Vec<EntityKey> = batch.iter().map(|e| e.mutation.key()).collect();
            tx.prefetch(&self.store, &keys).await?;
        }
        tx.report.sent = batch.len();
        st.metrics.push_requests += 1;
        match result {
            Err(err) => self.on_push_failure(&mut st, &mut tx, &batch, err, now),
            Ok(resp) => {
                st.online = true;
                st.last_error = None;
                st.batch_cap = None;
                st.meta.last_sync_at_ms = Some(now);
                st.metrics.last_push_latency_ms = now.saturating_sub(started);
                st.throttle
                    .record(batch.len(), bytes, now.saturating_sub(started), now);
                let mut acks: BTreeMap<OpId, AckResult> =
                    resp.acks.into_iter().map(|a| (a.op_id, a.result)).collect();
                for entry in batch {
                    // The entry may have changed since it was sent (never
                    // removed: only dead letters are discarded).
                    let Some(current) = st.outbox.get(entry.seq).cloned() else {
                        continue;
                    };
                    match acks.remove(&entry.mutation.op_id) {
                        Some(result) => self.on_ack(&mut st, &mut tx, current, result, now).await?,
                        None => self.schedule_retry(
                            &mut st,
                            &mut tx,
                            current,
                            ErrorCode::SyncServerError,
                            "the server's answer had no ack for this mutation".into(),
                            0,
                            true,
                            now,
                        ),
                    }
                }
            }
        }
        self.finish(&mut st, tx).await
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule_retry(
        &self,
        st: &mut State,
        tx: &mut Txn,
        mut e: OutboxEntry,
        code: ErrorCode,
        message: String,
        retry_after_ms: u64,
        counts: bool,
        now: u64,
    ) {
        if counts {
            e.attempts += 1;
            st.metrics.retries += 1;
        }
        e.sent = true;
        if counts && e.attempts >= self.config.retry.max_attempts {
            let msg = format!("{} attempts failed; last: {code}: {message}", e.attempts);
            self.dead_letter(st, tx, e, ErrorCode::RetriesExhausted, msg, now);
            return;
        }
        e.next_attempt_at = now
            + self.config.retry.backoff_ms(
                e.attempts.max(1),
                self.env.random_u64(),
                retry_after_ms,
            );
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %e.mutation.op_id,
            sync_attempt = e.attempts,
            error_code = %code,
            retry_at_ms = e.next_attempt_at,
            "delivery failed, retry scheduled"
        );
        e.last_error = Some((code, message));
        st.put_entry(tx, e);
    }

    fn dead_letter(
        &self,
        st: &mut State,
        tx: &mut Txn,
        mut e: OutboxEntry,
        code: ErrorCode,
        message: String,
        now: u64,
    ) {
        let key = e.mutation.key();
        tracing::warn!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %e.mutation.op_id,
            sync_attempt = e.attempts,
            error_code = %code,
            "mutation moved to the dead-letter queue"
        );
        tx.audit(
            Some(&e.mutation.op_id),
            &key,
            AuditEvent::DeadLettered { code },
        );
        tx.alerts.push(Event::Alert {
            code,
            key,
            op_id: Some(e.mutation.op_id.clone()),
            message: message.clone(),
        });
        e.state = OutboxState::DeadLetter {
            code,
            message: message.clone(),
            at_ms: now,
        };
        e.last_error = Some((code, message));
        st.metrics.dead_letters += 1;
        tx.report.dead_lettered += 1;
        st.put_entry(tx, e);
    }

    fn on_push_failure(
        &self,
        st: &mut State,
        tx: &mut Txn,
        batch: &[OutboxEntry],
        err: TransportError,
        now: u64,
    ) {
        let code = err.code();
        let message = err.to_string();
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            batch = batch.len(),
            sync_attempt = batch.iter().map(|e| e.attempts).max().unwrap_or(0) + 1,
            error_code = %code,
            "push failed"
        );
        tx.report.error.get_or_insert(code);
        match err {
            TransportError::Unreachable(_) => {
                st.online = false;
                st.offline_until = now
                    + self
                        .config
                        .retry
                        .backoff_ms(
                            1,
                            self.env.random_u64(),
                            self.config.retry.offline_probe_ms / 2,
                        )
                        .min(self.config.retry.offline_probe_ms);
            }
            TransportError::Timeout | TransportError::Server { .. } => {
                st.online = true;
                st.last_error = Some((code, message.clone()));
                st.throttle.record_failure();
                for e in batch {
                    if let Some(cur) = st.outbox.get(e.seq).cloned() {
                        self.schedule_retry(st, tx, cur, code, message.clone(), 0, true, now);
                    }
                }
            }
            TransportError::RateLimited { retry_after_ms } => {
                st.online = true;
                st.last_error = Some((code, message.clone()));
                st.paused_until = now + retry_after_ms;
                for e in batch {
                    if let Some(cur) = st.outbox.get(e.seq).cloned() {
                        self.schedule_retry(
                            st,
                            tx,
                            cur,
                            code,
                            message.clone(),
                            retry_after_ms,
                            false,
                            now,
                        );
                    }
                }
            }
            TransportError::Unauthorized { .. } => {
                st.online = true;
                st.last_error = Some((code, message));
                st.paused_until = now + self.config.retry.offline_probe_ms;
            }
            TransportError::Refused { code, message } => {
                st.online = true;
                if batch.len() > 1 {
                    // The batch as a whole was refused (too large, say): split it.
                    st.batch_cap = Some((batch.len() / 2).max(1));
                } else if let Some(cur) = batch.first().and_then(|e| st.outbox.get(e.seq).cloned())
                {
                    self.dead_letter(st, tx, cur, code, message.clone(), now);
                }
                st.last_error = Some((code, message));
            }
        }
    }

    async fn on_ack(
        &self,
        st: &mut State,
        tx: &mut Txn,
        entry: OutboxEntry,
        result: AckResult,
        now: u64,
    ) -> Result<(), EngineError> {
        match result {
            AckResult::Applied { version, .. } => {
                self.on_applied(st, tx, entry, version, None, false).await
            }
            AckResult::Duplicate { version, .. } => {
                self.on_applied(st, tx, entry, version, None, true).await
            }
            AckResult::Conflict { server } => {
                tx.report.conflicts += 1;
                self.on_conflict(st, tx, entry, server, now).await
            }
            AckResult::Rejected { code, message } => {
                if code.is_permanent() {
                    self.dead_letter(st, tx, entry, code, message, now);
                } else {
                    self.schedule_retry(st, tx, entry, code, message, 0, true, now);
                }
                Ok(())
            }
        }
    }

    /// The head `entry` took effect on the server at `version` (`state`:
    /// the resulting state if known, e.g. from the change feed).
    async fn on_applied(
        &self,
        st: &mut State,
        tx: &mut Txn,
        entry: OutboxEntry,
        version: u64,
        state: Option<EntityState>,
        duplicate: bool,
    ) -> Result<(), EngineError> {
        let key = entry.mutation.key();
        let mut rec = tx.record(&self.store, &key).await?;
        let new_state = match state {
            Some(s) => Some(s),
            None => {
                let base = rec.chain_base.as_ref().and_then(|b| b.state());
                apply_mutation(base, &entry.mutation, version).ok()
            }
        };
        if let Some(s) = &new_state {
            if rec
                .server
                .as_ref()
                .is_none_or(|cur| cur.version < s.version)
            {
                rec.server = Some(s.clone());
            }
        }
        st.remove_entry(tx, entry.seq);
        let rest: Vec<OutboxEntry> = st.outbox.chain(&key).into_iter().cloned().collect();
        for mut e in rest {
            e.mutation.base_version = version;
            st.put_entry(tx, e);
        }
        rec.chain_base = new_state.map(ChainBase::State).or(rec.chain_base);
        tx.put_record(rec);
        tx.audit(
            Some(&entry.mutation.op_id),
            &key,
            if duplicate {
                AuditEvent::Duplicate { version }
            } else {
                AuditEvent::Applied { version }
            },
        );
        tracing::debug!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %entry.mutation.op_id,
            sync_attempt = entry.attempts + 1,
            version,
            duplicate,
            "mutation acknowledged"
        );
        st.metrics.synced += 1;
        tx.report.acknowledged += 1;
        Ok(())
    }

    async fn on_conflict(
        &self,
        st: &mut State,
        tx: &mut Txn,
        head: OutboxEntry,
        server: Option<EntityState>,
        now: u64,
    ) -> Result<(), EngineError> {
        let key = head.mutation.key();
        let mut rec = tx.record(&self.store, &key).await?;
        if let Some(s) = &server {
            st.clock.observe(s.updated_at, now);
            if rec
                .server
                .as_ref()
                .is_none_or(|cur| cur.version < s.version)
            {
                rec.server = Some(s.clone());
            }
        }
        st.metrics.conflicts += 1;
        let chain: Vec<OutboxEntry> = st.outbox.chain(&key).into_iter().cloned().collect();
        let base = rec.chain_base.as_ref().and_then(|b| b.state()).cloned();
        let muts: Vec<&Mutation> = chain.iter().map(|e| &e.mutation).collect();
        let decision = decide(
            self.policy(&key.collection),
            base.as_ref(),
            &muts,
            server.as_ref(),
        );
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %head.mutation.op_id,
            sync_attempt = head.attempts,
            error_code = %ErrorCode::Conflict,
            policy = ?self.policy(&key.collection),
            decision = decision_name(&decision),
            "conflict"
        );
        let server_version = server.as_ref().map(|s| s.version).unwrap_or(0);
        let rebase = |st: &mut State, tx: &mut Txn, entries: &[OutboxEntry]| {
            for e in entries {
                let mut e = e.clone();
                e.mutation.base_version = server_version;
                e.next_attempt_at = now;
                tx.audit(
                    Some(&e.mutation.op_id),
                    &key,
                    AuditEvent::Rebased {
                        onto: server_version,
                    },
                );
                st.put_entry(tx, e);
            }
        };
        match decision {
            Decision::Rebase => {
                rebase(st, tx, &chain);
                rec.chain_base = Some(server.clone().map_or(ChainBase::Absent, ChainBase::State));
            }
            Decision::SupersedeHead => {
                st.remove_entry(tx, head.seq);
                tx.audit(
                    Some(&head.mutation.op_id),
                    &key,
                    AuditEvent::Superseded {
                        by_version: server_version,
                    },
                );
                rebase(st, tx, &chain[1..]);
                rec.chain_base = Some(server.clone().map_or(ChainBase::Absent, ChainBase::State));
            }
            Decision::SupersedeAll => {
                for e in &chain {
                    st.remove_entry(tx, e.seq);
                    tx.audit(
                        Some(&e.mutation.op_id),
                        &key,
                        AuditEvent::Superseded {
                            by_version: server_version,
                        },
                    );
                }
                rec.chain_base = None;
            }
            Decision::Manual { fields } => {
                let local = compute_view(&key, base.as_ref(), muts.iter().copied(), true);
                let record = ConflictRecord {
                    key: key.clone(),
                    base: base.clone(),
                    local,
                    server: server.clone(),
                    mutations: chain.iter().map(|e| e.mutation.clone()).collect(),
                    fields,
                    detected_at: now,
                };
                for e in &chain {
                    st.remove_entry(tx, e.seq);
                    tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::ConflictOpened);
                }
                tx.alerts.push(Event::Alert {
                    code: ErrorCode::Conflict,
                    key: key.clone(),
                    op_id: Some(head.mutation.op_id.clone()),
                    message: format!("{key} changed on the server and here: choose a version"),
                });
                tx.batch.push(WriteOp::PutConflict(record.clone()));
                st.conflicts.insert(key.clone(), record);
                rec.chain_base = None;
            }
        }
        tx.put_record(rec);
        Ok(())
    }

    /// Stores a server state (from a snapshot, the change feed or a
    /// reconcile plan). Older states than the one held are ignored unless
    /// `force` (reconcile is authoritative). A state produced by the head of
    /// the entity's chain acknowledges that head.
    async fn apply_server_state(
        &self,
        st: &mut State,
        tx: &mut Txn,
        s: EntityState,
        force: bool,
        now: u64,
    ) -> Result<bool, EngineError> {
        let key = s.key();
        let mut rec = tx.record(&self.store, &key).await?;
        let held = rec.server.as_ref().map(|c| c.version);
        let newer = held.is_none_or(|v| v < s.version);
        if !(newer || (force && held != Some(s.version))) {
            return Ok(false);
        }
        st.clock.observe(s.updated_at, now);
        rec.server = Some(s.clone());
        if let Some(c) = st.conflicts.get_mut(&key) {
            c.server = Some(s.clone());
            tx.batch.push(WriteOp::PutConflict(c.clone()));
        }
        tx.put_record(rec);
        let head = st.outbox.chain(&key).first().map(|e| (*e).clone());
        if let Some(head) = head {
            if s.last_op.as_ref() == Some(&head.mutation.op_id) {
                let v = s.version;
                self.on_applied(st, tx, head, v, Some(s), false).await?;
            }
        }
        Ok(true)
    }

    /// Pulls: the snapshot on first run, then the change feed.
    pub async fn pull(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.pull_locked().await
    }

    async fn pull_transport_error(&self, err: TransportError, code: ErrorCode) -> SyncReport {
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            error_code = %err.code(),
            stage = %code,
            "pull failed"
        );
        let mut st = self.state.lock().await;
        let now = self.env.now_ms();
        let mut report = SyncReport::default();
        match &err {
            TransportError::Unreachable(_) => {
                st.online = false;
                st.offline_until = st
                    .offline_until
                    .max(now + self.config.retry.offline_probe_ms / 2);
                report.error = Some(ErrorCode::SyncOffline);
            }
            TransportError::RateLimited { retry_after_ms } => {
                st.paused_until = now + retry_after_ms;
                st.last_error = Some((err.code(), err.to_string()));
                report.error = Some(err.code());
            }
            TransportError::Unauthorized { code, .. } => {
                st.last_error = Some((*code, err.to_string()));
                report.error = Some(*code);
            }
            _ => {
                st.online = true;
                st.last_error = Some((code, err.to_string()));
                report.error = Some(code);
            }
        }
        let ev = self.status_event(&mut st);
        drop(st);
        self.emit(ev.into_iter().collect());
        report
    }

    async fn pull_locked(&self) -> Result<SyncReport, EngineError> {
        self.pull_inner(true).await
    }

    /// Forgets the snapshot and cursor (the server no longer knows the
    /// cursor, e.g. restored from a backup): the next pull takes a new
    /// snapshot and verifies it. Pending mutations are kept.
    async fn reset_to_snapshot(&self) -> Result<(), EngineError> {
        let mut st = self.state.lock().await;
        st.meta.snapshot = SnapshotProgress::NotStarted;
        st.meta.cursor = None;
        self.finish(&mut st, Txn::default()).await.map(|_| ())
    }

    async fn pull_inner(&self, may_reset: bool) -> Result<SyncReport, EngineError> {
        let mut report = SyncReport::default();
        {
            let st = self.state.lock().await;
            let now = self.env.now_ms();
            if now < st.paused_until || (!st.online && now < st.offline_until) {
                return Ok(report);
            }
        }
        // Snapshot, page by page; the progress is stored with each page.
        loop {
            let progress = self.state.lock().await.meta.snapshot.clone();
            let after = match progress {
                SnapshotProgress::Done => break,
                SnapshotProgress::NotStarted => None,
                SnapshotProgress::InProgress { ref after, .. } => after.clone(),
            };
            let page = match self
                .transport
                .snapshot(SnapshotRequest {
                    after,
                    limit: self.config.snapshot_page,
                })
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    return Ok(self
                        .pull_transport_error(e, ErrorCode::SnapshotFailed)
                        .await)
                }
            };
            let mut st = self.lock_fresh().await?;
            let now = self.env.now_ms();
            let mut tx = Txn::default();
            let keys: Vec<EntityKey> = page.entities.iter().map(|s| s.key()).collect();
            tx.prefetch(&self.store, &keys).await?;
            for s in page.entities {
                if self
                    .apply_server_state(&mut st, &mut tx, s, false, now)
                    .await?
                {
                    tx.report.pulled += 1;
                }
            }
            let at = match progress {
                SnapshotProgress::InProgress { at, .. } => at,
                _ => page.at,
            };
            st.meta.snapshot = match page.next {
                Some(next) => SnapshotProgress::InProgress {
                    at,
                    after: Some(next),
                },
                None => {
                    st.meta.cursor = Some(st.meta.cursor.unwrap_or_default().max(at));
                    st.meta.snapshot_at_ms = Some(now);
                    st.meta.verify_pending = true;
                    SnapshotProgress::Done
                }
            };
            st.online = true;
            st.last_error = None;
            st.meta.last_sync_at_ms = Some(now);
            st.metrics.snapshot_pages += 1;
            let r = self.finish(&mut st, tx).await?;
            merge_report(&mut report, r);
        }
        // The change feed from the cursor.
        for _ in 0..self.config.max_pull_pages {
            let since = self.state.lock().await.meta.cursor.unwrap_or_default();
            let page = match self
                .transport
                .changes(ChangesRequest {
                    since,
                    limit: self.config.changes_page,
                })
                .await
            {
                Ok(p) => p,
                Err(TransportError::Refused {
                    code: ErrorCode::CursorUnknown,
                    ..
                }) if may_reset => {
                    self.reset_to_snapshot().await?;
                    let again = Box::pin(self.pull_inner(false)).await?;
                    merge_report(&mut report, again);
                    return Ok(report);
                }
                Err(e) => return Ok(self.pull_transport_error(e, ErrorCode::DeltaFailed).await),
            };
            if page.next < since {
                let e = TransportError::Server {
                    status: 0,
                    message: format!("the change feed went back from {since} to {}", page.next),
                };
                return Ok(self.pull_transport_error(e, ErrorCode::DeltaFailed).await);
            }
            let mut st = self.lock_fresh().await?;
            let now = self.env.now_ms();
            let mut tx = Txn::default();
            let keys: Vec<EntityKey> = page.changes.iter().map(|s| s.key()).collect();
            tx.prefetch(&self.store, &keys).await?;
            for s in page.changes {
                if self
                    .apply_server_state(&mut st, &mut tx, s, false, now)
                    .await?
                {
                    tx.report.pulled += 1;
                }
            }
            st.meta.cursor = Some(page.next);
            st.meta.last_sync_at_ms = Some(now);
            if !page.has_more {
                st.meta.snapshot_at_ms = Some(now);
            }
            st.online = true;
            st.last_error = None;
            st.metrics.delta_runs += 1;
            let r = self.finish(&mut st, tx).await?;
            merge_report(&mut report, r);
            if !page.has_more {
                break;
            }
        }
        if self.state.lock().await.meta.verify_pending {
            let r = self.reconcile_locked(None).await?;
            let ok = r.error.is_none();
            merge_report(&mut report, r);
            if ok {
                let mut st = self.state.lock().await;
                st.meta.verify_pending = false;
                self.finish(&mut st, Txn::default()).await?;
            }
        }
        Ok(report)
    }

    /// Verifies collections against the server with bucketed digests and
    /// applies the server's plan: missing and stale entities are stored,
    /// extra ones removed. Pending mutations and conflicts are left alone.
    /// Collections default to every collection with a declared policy.
    pub async fn reconcile(
        &self,
        collections: Option<Vec<String>>,
    ) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.reconcile_locked(collections).await
    }

    async fn reconcile_locked(
        &self,
        collections: Option<Vec<String>>,
    ) -> Result<SyncReport, EngineError> {
        let collections = match collections {
            Some(c) => c,
            None => {
                let mut all: BTreeSet<String> = self.config.policies.keys().cloned().collect();
                all.extend(self.store.collections().await?);
                all.into_iter().collect()
            }
        };
        let buckets = self.config.reconcile_buckets.max(1);
        let mut report = SyncReport::default();
        for collection in collections {
            let records = self.store.scan(&collection).await?;
            let live: Vec<(String, u64)> = records
                .iter()
                .filter_map(|r| r.server.as_ref())
                .filter(|s| !s.deleted)
                .map(|s| (s.id.clone(), s.version))
                .collect();
            let digests =
                crate::digest::bucket_digests(live.iter().map(|(i, v)| (i.as_str(), *v)), buckets);
            let step1 = ReconcileRequest {
                collection: collection.clone(),
                buckets,
                digests,
                manifest_buckets: vec![],
                manifest: vec![],
            };
            let resp = match self.transport.reconcile(step1).await {
                Ok(r) => r,
                Err(e) => {
                    let r = self
                        .pull_transport_error(e, ErrorCode::ReconcileFailed)
                        .await;
                    merge_report(&mut report, r);
                    return Ok(report);
                }
            };
            self.state.lock().await.metrics.reconcile_runs += 1;
            // Step 2, in chunks of whole buckets within the manifest limit.
            let mut by_bucket: BTreeMap<u32, Vec<ManifestEntry>> = BTreeMap::new();
            for (id, version) in &live {
                let b = crate::digest::bucket_of(id, buckets);
                if resp.mismatched.contains(&b) {
                    by_bucket.entry(b).or_default().push(ManifestEntry {
                        id: id.clone(),
                        version: *version,
                    });
                }
            }
            let mut chunks: Vec<(Vec<u32>, Vec<ManifestEntry>)> = Vec::new();
            for b in &resp.mismatched {
                let entries = by_bucket.remove(b).unwrap_or_default();
                match chunks.last_mut() {
                    Some((bs, es)) if es.len() + entries.len() <= self.config.max_manifest => {
                        bs.push(*b);
                        es.extend(entries);
                    }
                    _ => chunks.push((vec![*b], entries)),
                }
            }
            for (manifest_buckets, manifest) in chunks {
                let req = ReconcileRequest {
                    collection: collection.clone(),
                    buckets,
                    digests: vec![],
                    manifest_buckets,
                    manifest,
                };
                let plan = match self.transport.reconcile(req).await {
                    Ok(ReconcileResponse { plan: Some(p), .. }) => p,
                    Ok(_) => continue,
                    Err(e) => {
                        let r = self
                            .pull_transport_error(e, ErrorCode::ReconcileFailed)
                            .await;
                        merge_report(&mut report, r);
                        return Ok(report);
                    }
                };
                let r = self.apply_plan(&collection, plan).await?;
                merge_report(&mut report, r);
            }
        }
        Ok(report)
    }

    async fn apply_plan(
        &self,
        collection: &str,
        plan: ReconcilePlan,
    ) -> Result<SyncReport, EngineError> {
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let mut tx = Txn::default();
        for (action, states) in [("missing", plan.missing), ("stale", plan.stale)] {
            for s in states {
                let key = s.key();
                if self
                    .apply_server_state(&mut st, &mut tx, s, true, now)
                    .await?
                {
                    tx.report.pulled += 1;
                    tx.audit(
                        None,
                        &key,
                        AuditEvent::Reconciled {
                            action: action.into(),
                        },
                    );
                }
            }
        }
        for id in plan.extra {
            let key = EntityKey::new(collection, id);
            let mut rec = tx.record(&self.store, &key).await?;
            if rec.server.is_none() {
                continue;
            }
            rec.server = None;
            tx.put_record(rec);
            tx.report.pulled += 1;
            tx.audit(
                None,
                &key,
                AuditEvent::Reconciled {
                    action: "extra".into(),
                },
            );
        }
        self.finish(&mut st, tx).await
    }
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Rebase => "rebase",
        Decision::SupersedeHead => "supersede-head",
        Decision::SupersedeAll => "supersede-all",
        Decision::Manual { .. } => "manual",
    }
}

fn merge_report(into: &mut SyncReport, r: SyncReport) {
    into.sent += r.sent;
    into.acknowledged += r.acknowledged;
    into.conflicts += r.conflicts;
    into.dead_lettered += r.dead_lettered;
    into.pulled += r.pulled;
    if into.error.is_none() {
        into.error = r.error;
    }
}
