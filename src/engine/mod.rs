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
//!
//! ## Where things are
//! - `config`: [`EngineConfig`];
//! - `error`: [`EngineError`];
//! - `state`: the cached state, a call's transaction, commit and reload;
//! - `view`: [`compute_view`] and the reads;
//! - `write`: local writes and a person's actions (retry, discard, resolve);
//! - `push`, `pull`, `reconcile`, `migrate`: the sync steps.

mod config;
mod error;
mod migrate;
mod pull;
mod push;
mod reconcile;
mod state;
mod view;
mod write;

pub use config::EngineConfig;
pub use error::EngineError;
pub use view::{compute_view, QueryPage};
pub use write::Resolution;

use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::hlc::{node_id, HlcClock};
use crate::migrate::QueuedMigration;
use crate::outbox::Outbox;
use crate::policy::ConflictPolicy;
use crate::protocol::*;
use crate::status::{Event, Filter, Metrics, Status};
use crate::store::*;
use crate::throttle::{ConnectionHint, Throttle};
use crate::transport::Transport;
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use state::State;

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

impl SyncReport {
    /// Adds `other`'s counts to this report; the first error is kept.
    pub fn absorb(&mut self, other: SyncReport) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.conflicts += other.conflicts;
        self.dead_lettered += other.dead_lettered;
        self.pulled += other.pulled;
        if self.error.is_none() {
            self.error = other.error;
        }
    }
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
    /// The anomaly model called on local writes ([`Engine::set_scorer`]).
    scorer: std::sync::RwLock<Option<std::sync::Arc<dyn crate::scoring::Scorer>>>,
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
                    return Err(EngineError::rejected(
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
                    owner: Some(config.owner()),
                };
                store
                    .commit(WriteBatch {
                        ops: vec![WriteOp::PutMeta(m.clone())],
                    })
                    .await?;
                m
            }
        };
        let meta = match &meta.owner {
            Some(owner) => {
                check_owner(owner, &config.terminal_id, &config.branch_id)?;
                meta
            }
            // A store from a build that did not record its owner: it is
            // this terminal's from now on.
            None => {
                let mut m = meta;
                m.owner = Some(config.owner());
                m.generation += 1;
                store
                    .commit(WriteBatch {
                        ops: vec![WriteOp::PutMeta(m.clone())],
                    })
                    .await?;
                m
            }
        };
        let outbox = Outbox::from_entries(store.outbox().await?);
        let mut meta = meta;
        // A sync state older than the queue (restored, or written by a
        // buggy build) must not hand out a seq that is still queued: the
        // next write would replace a pending mutation.
        if let Some(last) = outbox.last_seq() {
            meta.next_seq = meta.next_seq.max(last + 1);
        }
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
            acked: Default::default(),
        };
        let engine = Engine {
            store,
            transport,
            env,
            config,
            state: Mutex::new(state),
            sync_lock: Mutex::new(()),
            subscribers: std::sync::Mutex::new(Vec::new()),
            scorer: std::sync::RwLock::new(None),
        };
        engine.migrate_queued(&migrations).await?;
        Ok(engine)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The environment (clock and randomness).
    pub fn env(&self) -> &E {
        &self.env
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
        if let Some(p) = self.config.policies.get(collection) {
            return *p;
        }
        match self.config.rules.get(collection).map(|r| r.access) {
            Some(crate::rules::CollectionAccess::AppendOnly) => ConflictPolicy::AppendOnly,
            _ => self.config.default_policy,
        }
    }

    fn new_ulid(&self, now: u64) -> OpId {
        let r = (u128::from(self.env.random_u64()) << 64) | u128::from(self.env.random_u64());
        OpId::from_parts(now, r)
    }

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
        let status = st.status(
            self.env.now_ms(),
            self.config.stale_after_ms,
            self.store.health(),
        );
        let mut cmp = status.clone();
        cmp.drift_age_ms = None;
        let changed = st.last_status.as_ref() != Some(&cmp);
        st.last_status = Some(cmp);
        changed.then_some(Event::Status { status })
    }

    /// The current status for the sync pill.
    pub async fn status(&self) -> Status {
        let st = self.lock_read().await;
        st.status(
            self.env.now_ms(),
            self.config.stale_after_ms,
            self.store.health(),
        )
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
        // The pill stops showing the old key's error at once.
        let ev = self.status_event(&mut st);
        drop(st);
        self.emit(ev.into_iter().collect());
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

    /// Pushes what is due, pulls, and pushes what the pull made due again.
    /// Transport failures are absorbed into the status; only a store failure
    /// is an `Err`.
    pub async fn sync_now(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.set_syncing(true).await;
        let result = async {
            let mut report = self.push_rounds().await?;
            let pulled = self.pull_locked().await?;
            report.absorb(pulled);
            let again = self.push_rounds().await?;
            report.absorb(again);
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
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod seq_tests {
    use crate::env::SimEnv;
    use crate::store::{MemoryStore, Store, WriteBatch, WriteOp};
    use crate::*;
    use futures::executor::block_on;

    struct Unplugged;
    #[async_trait::async_trait]
    impl Transport for Unplugged {
        async fn push(&self, _: PushRequest) -> Result<PushResponse, TransportError> {
            Err(TransportError::Unreachable("no route".into()))
        }
        async fn changes(&self, _: ChangesRequest) -> Result<ChangesPage, TransportError> {
            Err(TransportError::Unreachable("no route".into()))
        }
        async fn snapshot(&self, _: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
            Err(TransportError::Unreachable("no route".into()))
        }
        async fn reconcile(
            &self,
            _: ReconcileRequest,
        ) -> Result<ReconcileResponse, TransportError> {
            Err(TransportError::Unreachable("no route".into()))
        }
    }

    #[test]
    fn next_seq_never_goes_below_the_highest_queued_seq() {
        block_on(async {
            let config = EngineConfig::new("t1", "b1", "lobby");
            let store = MemoryStore::new();
            let fields = |s: &str| {
                let mut f = Fields::new();
                f.insert("status".into(), s.into());
                f
            };
            let e = Engine::open(store.clone(), Unplugged, SimEnv::new(0, 1), config.clone())
                .await
                .unwrap();
            for id in ["101", "102", "103"] {
                e.create("rooms", Some(id), fields("dirty")).await.unwrap();
            }
            drop(e);
            // The sync state goes back to before the three writes.
            let mut meta = store.load_meta().await.unwrap().unwrap();
            meta.next_seq = 1;
            store
                .commit(WriteBatch {
                    ops: vec![WriteOp::PutMeta(meta)],
                })
                .await
                .unwrap();
            let e = Engine::open(store.clone(), Unplugged, SimEnv::new(5, 2), config)
                .await
                .unwrap();
            e.create("rooms", Some("104"), fields("dirty"))
                .await
                .unwrap();
            let ids: Vec<String> = store
                .outbox()
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.mutation.entity_id)
                .collect();
            assert_eq!(ids, ["101", "102", "103", "104"], "nothing replaced");
        })
    }

    #[test]
    fn a_store_opens_only_as_the_terminal_it_belongs_to() {
        block_on(async {
            let store = MemoryStore::new();
            let config = EngineConfig::new("c1", "desk-1", "hotel-1");
            let e = Engine::open(store.clone(), Unplugged, SimEnv::new(0, 1), config.clone())
                .await
                .unwrap();
            drop(e);
            let owner = store.load_meta().await.unwrap().unwrap().owner;
            assert_eq!(owner, Some(config.owner()));
            for (terminal, branch) in [("desk-2", "hotel-1"), ("desk-1", "hotel-2")] {
                let other = EngineConfig::new("c1", terminal, branch);
                let before = store.load_meta().await.unwrap();
                let Err(err) =
                    Engine::open(store.clone(), Unplugged, SimEnv::new(0, 1), other).await
                else {
                    panic!("another terminal's store is refused");
                };
                assert_eq!(err.code(), ErrorCode::TerminalMismatch, "{err}");
                assert!(err.message().contains("desk-1"), "{err}");
                assert_eq!(store.load_meta().await.unwrap(), before, "nothing changed");
            }
            // A store written before owners were recorded is adopted.
            let mut meta = store.load_meta().await.unwrap().unwrap();
            meta.owner = None;
            store
                .commit(WriteBatch {
                    ops: vec![WriteOp::PutMeta(meta)],
                })
                .await
                .unwrap();
            let adopter = EngineConfig::new("c1", "desk-3", "hotel-1");
            Engine::open(store.clone(), Unplugged, SimEnv::new(0, 1), adopter.clone())
                .await
                .unwrap();
            let owner = store.load_meta().await.unwrap().unwrap().owner;
            assert_eq!(owner, Some(adopter.owner()));
        })
    }
}

/// `TERMINAL_MISMATCH` unless the store belongs to `terminal_id` of
/// `branch_id` (its cursor and records are its branch's, its queue its
/// terminal's: opened as another, it would sync them as that one).
pub(crate) fn check_owner(
    owner: &crate::store::StoreOwner,
    terminal_id: &str,
    branch_id: &str,
) -> Result<(), EngineError> {
    if owner.terminal_id == terminal_id && owner.branch_id == branch_id {
        return Ok(());
    }
    Err(EngineError::rejected(
        ErrorCode::TerminalMismatch,
        format!(
            "this database belongs to terminal {:?} of branch {:?}, not terminal {:?} of branch {:?}; \
             open another database for another terminal",
            owner.terminal_id, owner.branch_id, terminal_id, branch_id
        ),
    ))
}
