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
