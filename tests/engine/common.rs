//! The set-up every engine test shares: the real server logic in memory
//! behind a transport whose failures each test scripts.

pub use futures::executor::block_on;
pub use serde_json::{json, Value};
pub use std::collections::VecDeque;
pub use std::sync::{Arc, Mutex};
pub use tidesync::env::SimEnv;
pub use tidesync::retry::RetryPolicy;
pub use tidesync::store::{AuditEvent, FailingStore, MemoryStore, OutboxState, StoreError};
pub use tidesync::throttle::ConnectionHint;
pub use tidesync::*;
pub use tidesync_server::storage::Partition;
pub use tidesync_server::{
    MemoryServerStore as ServerMemory, ServerPolicy, SyncService, TerminalContext,
};

pub type Server = SyncService<ServerMemory>;

/// What the scripted network does with the next request.
#[derive(Clone, Debug)]
pub enum Step {
    Fail(TransportError),
    /// Deliver, then lose the answer.
    LoseAnswer,
}

#[derive(Clone)]
pub struct Net {
    pub server: Arc<Server>,
    pub ctx: TerminalContext,
    pub script: Arc<Mutex<VecDeque<Step>>>,
    pub offline: Arc<Mutex<bool>>,
    pub pushes: Arc<Mutex<Vec<PushRequest>>>,
}

impl Net {
    pub fn then(&self, step: Step) {
        self.script.lock().unwrap().push_back(step);
    }
    pub fn set_offline(&self, off: bool) {
        *self.offline.lock().unwrap() = off;
    }
    pub fn next(&self) -> Option<Step> {
        if *self.offline.lock().unwrap() {
            return Some(Step::Fail(TransportError::Unreachable("cable out".into())));
        }
        self.script.lock().unwrap().pop_front()
    }
}

pub fn svc_err(e: tidesync_server::ServiceError) -> TransportError {
    TransportError::Refused {
        code: e.code,
        message: e.message,
    }
}

#[async_trait::async_trait]
impl Transport for Net {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        self.pushes.lock().unwrap().push(request.clone());
        match self.next() {
            Some(Step::Fail(e)) => Err(e),
            Some(Step::LoseAnswer) => {
                self.server.push(&self.ctx, request).map_err(svc_err)?;
                Err(TransportError::Timeout)
            }
            None => self.server.push(&self.ctx, request).map_err(svc_err),
        }
    }
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        match self.next() {
            Some(Step::Fail(e)) => Err(e),
            _ => self.server.changes(&self.ctx, request).map_err(svc_err),
        }
    }
    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        match self.next() {
            Some(Step::Fail(e)) => Err(e),
            _ => self.server.snapshot(&self.ctx, request).map_err(svc_err),
        }
    }
    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        match self.next() {
            Some(Step::Fail(e)) => Err(e),
            _ => self.server.reconcile(&self.ctx, request).map_err(svc_err),
        }
    }
}

pub const T0: u64 = 1_767_225_600_000;

pub fn f(v: Value) -> Fields {
    v.as_object().cloned().unwrap()
}

pub struct World {
    pub server: Arc<Server>,
    pub env: SimEnv,
}

impl World {
    pub fn new() -> World {
        let env = SimEnv::new(T0, 7);
        let clock = env.clone();
        let server = Arc::new(
            SyncService::new(ServerMemory::new())
                .with_policy("sales", ServerPolicy::AppendOnly)
                .with_clock(move || clock.now_ms()),
        );
        let p = Partition::new("hotel", "b1");
        server
            .seed(
                &p,
                Hlc::default(),
                (1..=3).map(|k| {
                    (
                        EntityKey::new("rooms", format!("room-{k}")),
                        f(json!({"status": "dirty", "notes": "", "floor": k})),
                    )
                }),
            )
            .unwrap();
        World { server, env }
    }

    pub fn net(&self, terminal: &str) -> Net {
        Net {
            server: self.server.clone(),
            ctx: TerminalContext::new("hotel", "b1", terminal),
            script: Default::default(),
            offline: Default::default(),
            pushes: Default::default(),
        }
    }

    pub fn config(&self, terminal: &str) -> EngineConfig {
        EngineConfig {
            retry: RetryPolicy {
                base_ms: 100,
                cap_ms: 1_000,
                max_attempts: 3,
                offline_probe_ms: 1_000,
            },
            ..EngineConfig::new(format!("client-{terminal}"), terminal, "b1")
                .with_policy("rooms", ConflictPolicy::MergeThreeWay)
                .with_policy("tasks", ConflictPolicy::LastWriteWins)
                .with_policy("incidents", ConflictPolicy::ManualResolve)
                .with_policy("catalog", ConflictPolicy::ServerWins)
                .with_policy("sales", ConflictPolicy::AppendOnly)
        }
    }

    pub fn open<S: Store>(&self, store: S, net: Net, terminal: &str) -> Engine<S, Net, SimEnv> {
        block_on(Engine::open(
            store,
            net,
            self.env.clone(),
            self.config(terminal),
        ))
        .unwrap()
    }

    pub fn admin(&self, key: EntityKey, fields: Fields) -> EntityState {
        let now = self.env.now_ms();
        self.server
            .admin_put(
                &Partition::new("hotel", "b1"),
                &key,
                fields,
                Hlc {
                    wall_ms: now,
                    counter: 0,
                    node: 1,
                },
            )
            .unwrap()
    }

    pub fn server_state(&self, key: &EntityKey) -> Option<EntityState> {
        let ctx = TerminalContext::new("hotel", "b1", "admin");
        self.server
            .snapshot(
                &ctx,
                SnapshotRequest {
                    after: None,
                    limit: 10_000,
                },
            )
            .unwrap()
            .entities
            .into_iter()
            .find(|s| &s.key() == key)
    }

    pub fn applied_ops(&self) -> Vec<OpId> {
        use tidesync_server::ServerStore;
        self.server
            .store()
            .audit(&Partition::new("hotel", "b1"))
            .unwrap()
            .into_iter()
            .filter_map(|a| a.op_id)
            .collect()
    }
}

pub fn room(id: u32) -> EntityKey {
    EntityKey::new("rooms", format!("room-{id}"))
}

/// An engine over a store whose commits fail on demand.
pub type FailingEngine = Engine<FailingStore<MemoryStore>, Net, SimEnv>;

/// One run of a scenario in [`every_commit`]: a terminal `t1` whose store
/// fails the N-th commit after [`Rig::arm`] (none in the counting run).
pub struct Rig {
    pub w: World,
    pub net: Net,
    pub store: FailingStore<MemoryStore>,
    pub engine: FailingEngine,
    fail_nth: Option<u64>,
    armed_at: std::cell::Cell<Option<u64>>,
    window: std::cell::Cell<u64>,
}

impl Rig {
    fn new(fail_nth: Option<u64>, tweak: fn(EngineConfig) -> EngineConfig) -> Rig {
        let w = World::new();
        let net = w.net("t1");
        let store = FailingStore::new(MemoryStore::new());
        let engine = block_on(Engine::open(
            store.clone(),
            net.clone(),
            w.env.clone(),
            tweak(w.config("t1")),
        ))
        .unwrap();
        Rig {
            w,
            net,
            store,
            engine,
            fail_nth,
            armed_at: Default::default(),
            window: Default::default(),
        }
    }

    /// The run without an injected failure (the one that counts commits).
    pub fn is_clean(&self) -> bool {
        self.fail_nth.is_none()
    }

    /// From here until [`disarm`](Self::disarm), the N-th commit fails.
    pub fn arm(&self) {
        self.armed_at.set(Some(self.store.commits()));
        if let Some(n) = self.fail_nth {
            self.store.fail_nth_commit(n);
        }
    }

    /// Ends the window: later commits succeed (the recovery).
    pub fn disarm(&self) {
        let from = self.armed_at.get().expect("armed");
        self.window.set(self.store.commits() - from);
        self.store.clear_failures();
    }

    /// A call's result inside the window: its value, or `None` if it
    /// failed, which only the injected commit failure may cause.
    pub fn tolerate<T: std::fmt::Debug>(&self, r: Result<T, EngineError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::StorageFailed, "unexpected error {e}");
                assert!(
                    self.fail_nth.is_some(),
                    "a call failed in the clean run: {e}"
                );
                None
            }
        }
    }

    /// Syncs until nothing is left: the person discards dead letters and
    /// keeps the local side of conflicts.
    pub fn recover(&self) {
        self.net.script.lock().unwrap().clear();
        for _ in 0..10 {
            self.w.env.advance(60_000);
            block_on(self.engine.sync_now()).unwrap();
            block_on(self.engine.discard_all()).unwrap();
            for e in block_on(self.engine.held()) {
                block_on(self.engine.release(e.seq)).unwrap();
            }
            for c in block_on(self.engine.conflicts()) {
                block_on(self.engine.resolve(&c.key, Resolution::Local)).unwrap();
            }
            if block_on(self.engine.outbox()).is_empty()
                && block_on(self.engine.conflicts()).is_empty()
            {
                block_on(self.engine.sync_now()).unwrap();
                return;
            }
        }
        panic!("the engine did not settle");
    }

    /// Holds at any time, a failed commit or not: every op queued here is
    /// still pending (in the outbox or an open conflict) or settled with an
    /// audit trace; the server applied each op at most once, and only ops
    /// queued here; a dead letter left only by a person's discard.
    pub fn assert_accounted(&self) {
        let audit = block_on(self.engine.audit(0, usize::MAX)).unwrap();
        let mut pending: std::collections::BTreeSet<OpId> = block_on(self.engine.outbox())
            .into_iter()
            .map(|e| e.mutation.op_id)
            .collect();
        for c in block_on(self.engine.conflicts()) {
            pending.extend(c.mutations.into_iter().map(|m| m.op_id));
        }
        let mut events: std::collections::BTreeMap<OpId, Vec<AuditEvent>> = Default::default();
        for a in audit {
            if let Some(op) = a.op_id {
                events.entry(op).or_default().push(a.event);
            }
        }
        for (op, evs) in &events {
            if evs.first() != Some(&AuditEvent::Queued) || pending.contains(op) {
                continue;
            }
            assert!(
                evs.iter().any(|e| matches!(
                    e,
                    AuditEvent::Applied { .. }
                        | AuditEvent::Duplicate { .. }
                        | AuditEvent::Superseded { .. }
                        | AuditEvent::ConflictResolved { .. }
                        | AuditEvent::Discarded
                        | AuditEvent::ReplacedBy { .. }
                )),
                "op {op} vanished: {evs:?}"
            );
            if let Some(i) = evs
                .iter()
                .rposition(|e| matches!(e, AuditEvent::DeadLettered { .. }))
            {
                assert!(
                    evs[i..].iter().any(|e| matches!(
                        e,
                        AuditEvent::Discarded | AuditEvent::Retried | AuditEvent::Applied { .. }
                    )),
                    "dead letter {op} dropped without a person: {evs:?}"
                );
            }
        }
        let applied = self.w.applied_ops();
        let unique: std::collections::BTreeSet<&OpId> = applied.iter().collect();
        assert_eq!(
            unique.len(),
            applied.len(),
            "an op applied twice: {applied:?}"
        );
        for op in unique {
            assert!(
                events.contains_key(op),
                "the server applied {op}, never queued here"
            );
        }
    }

    /// Holds at any time: every change up to the stored cursor is stored.
    pub fn assert_cursor_covers(&self) {
        let Some(cursor) = block_on(self.store.inner().load_meta())
            .unwrap()
            .and_then(|m| m.cursor)
        else {
            return;
        };
        let ctx = TerminalContext::new("hotel", "b1", "admin");
        let mut since = Cursor(0);
        loop {
            let page = self
                .w
                .server
                .changes(&ctx, ChangesRequest { since, limit: 1 })
                .unwrap();
            let Some(change) = page.changes.first() else {
                break;
            };
            if page.next > cursor {
                break;
            }
            let held = block_on(self.store.inner().get(&change.key()))
                .unwrap()
                .and_then(|r| r.server);
            assert!(
                held.as_ref().is_some_and(|h| h.version >= change.version),
                "cursor {cursor} stored without the change at {} ({} v{}): holds {held:?}",
                page.next,
                change.key(),
                change.version
            );
            since = page.next;
        }
    }

    /// The local view of `collection` equals the server's.
    pub fn assert_converged(&self, collection: &str) {
        for e in block_on(self.engine.query(collection)).unwrap() {
            let key = EntityKey::new(collection, &e.id);
            let s = self.w.server_state(&key).expect("on the server");
            assert_eq!(e.fields, s.fields, "{key}");
        }
    }
}

/// Runs `scenario` once without failures, counting the commits between its
/// [`Rig::arm`] and [`Rig::disarm`] (at least two: the scenario writes more
/// than once), then once for every N of them with the N-th commit failing.
/// The scenario asserts its invariants whichever commit failed. Returns the
/// number of commits.
pub fn every_commit(tweak: fn(EngineConfig) -> EngineConfig, scenario: impl Fn(&Rig)) -> u64 {
    let clean = Rig::new(None, tweak);
    scenario(&clean);
    let n = clean.window.get();
    assert!(
        n >= 2,
        "the scenario commits {n} times: not a scenario for every commit"
    );
    for k in 1..=n {
        let rig = Rig::new(Some(k), tweak);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&rig)));
        if let Err(e) = run {
            eprintln!("with commit {k} of {n} failing:");
            std::panic::resume_unwind(e);
        }
        assert!(rig.window.get() >= k, "commit {k} was never reached");
    }
    n
}

/// No change to the configuration.
pub fn as_is(c: EngineConfig) -> EngineConfig {
    c
}
