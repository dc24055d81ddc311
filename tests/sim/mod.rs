//! A deterministic simulation of terminals, a flaky network and the server.
//!
//! One seed drives everything: which terminal does what, the clock, every
//! network fault and every storage fault, so a seed replays a whole run.
//! Terminals of two branches make random local changes under every conflict
//! policy while the network drops requests, drops answers after the server
//! committed, duplicates, delays and reorders requests, answers 5xx and 429,
//! and partitions terminals for long spells; terminals restart and their
//! stores fail commits. Invariants are checked after every step, and after a
//! final healing phase every terminal must agree with the server and every
//! local mutation must be accounted for.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tidesync::env::{splitmix64, Environment};
use tidesync::retry::RetryPolicy;
use tidesync::store::{AuditEvent, FailingStore, LocalEntity, MemoryStore, OutboxState};
use tidesync::Store;
use tidesync::{
    ChangesPage, ChangesRequest, ConflictPolicy, Cursor, Engine, EngineConfig, EntityKey,
    ErrorCode, Fields, Hlc, OpId, PushRequest, PushResponse, ReconcileRequest, ReconcileResponse,
    Resolution, SnapshotPage, SnapshotRequest, Transport, TransportError,
};
use tidesync_server::storage::Partition;
use tidesync_server::{
    MemoryServerStore as ServerMemory, ServerPolicy, ServerStore, ServiceError, SyncService,
    TerminalContext,
};

/// Runs a future to completion: on the tokio runtime set with
/// [`set_runtime`] (the HTTP transport needs one), else on the calling thread.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| match &*rt.borrow() {
        Some(handle) => handle.block_on(f),
        None => futures::executor::block_on(f),
    })
}

thread_local! {
    static RUNTIME: std::cell::RefCell<Option<tokio::runtime::Handle>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes [`block_on`] on this thread run futures on `handle`.
pub fn set_runtime(handle: Option<tokio::runtime::Handle>) {
    RUNTIME.with(|rt| *rt.borrow_mut() = handle);
}

/// The server under test: its service, reached in memory or over HTTP.
pub trait SimServer: Send + Sync + 'static {
    /// Its storage.
    type Store: ServerStore + 'static;
    /// The protocol logic (admin writes and audit reads go straight to it).
    fn service(&self) -> &SyncService<Self::Store>;
}

impl<B: ServerStore + 'static> SimServer for SyncService<B> {
    type Store = B;
    fn service(&self) -> &SyncService<B> {
        self
    }
}

/// How terminals reach the server.
#[derive(Clone)]
pub enum Link {
    /// Calls into the service in memory.
    Direct,
    /// Real HTTP on loopback, each terminal with its own API key.
    Http {
        /// e.g. `http://127.0.0.1:39211`
        base: String,
        /// Issues a key for a terminal.
        issue: Arc<dyn Fn(&TerminalContext) -> String + Send + Sync>,
    },
}

/// Deterministic random numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }
    pub fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Network faults, shared by the transports of one terminal.
#[derive(Debug)]
pub struct Net {
    rng: Rng,
    /// No route until this step.
    pub partitioned_until: u64,
    pub step: u64,
    /// Faults on (off during healing).
    pub faults: bool,
    /// Requests held back, delivered later (delay and reordering).
    pub delayed: Vec<PushRequest>,
    pub stats: NetStats,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetStats {
    pub delivered: u64,
    pub dropped_requests: u64,
    pub dropped_responses: u64,
    pub duplicated: u64,
    pub delayed: u64,
    pub server_errors: u64,
    pub rate_limited: u64,
    pub unreachable: u64,
}

/// A transport that reaches the server (in memory or over HTTP) through a
/// faulty network.
pub struct SimTransport<S: SimServer> {
    server: Arc<S>,
    ctx: TerminalContext,
    net: Arc<Mutex<Net>>,
    http: Option<tidesync_server::client::HttpTransport>,
}

fn service_error(e: ServiceError) -> TransportError {
    e.into()
}

enum Fate {
    Unreachable,
    DropRequest,
    ServerError,
    RateLimited(u64),
    Deliver,
}

impl<S: SimServer> SimTransport<S> {
    async fn deliver(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        match &self.http {
            Some(h) => h.push(request).await,
            None => self
                .server
                .service()
                .push(&self.ctx, request)
                .map_err(service_error),
        }
    }

    /// The error the network answers with instead of delivering, if any.
    fn fail_before_delivery(&self) -> Option<TransportError> {
        match self.fate() {
            Fate::Unreachable => Some(TransportError::Unreachable("partitioned".into())),
            Fate::DropRequest => Some(TransportError::Timeout),
            Fate::ServerError => Some(TransportError::Server {
                status: 503,
                message: "unavailable".into(),
            }),
            Fate::RateLimited(ms) => Some(TransportError::RateLimited { retry_after_ms: ms }),
            Fate::Deliver => None,
        }
    }

    fn fate(&self) -> Fate {
        let mut net = self.net.lock().unwrap();
        if net.step < net.partitioned_until {
            net.stats.unreachable += 1;
            return Fate::Unreachable;
        }
        if !net.faults {
            return Fate::Deliver;
        }
        let roll = net.rng.below(1000);
        let fate = match roll {
            0..=39 => Fate::DropRequest,
            40..=69 => Fate::ServerError,
            70..=94 => Fate::RateLimited(net.rng.below(20) * 500),
            _ => Fate::Deliver,
        };
        match fate {
            Fate::DropRequest => net.stats.dropped_requests += 1,
            Fate::ServerError => net.stats.server_errors += 1,
            Fate::RateLimited(_) => net.stats.rate_limited += 1,
            _ => {}
        }
        fate
    }
}

#[async_trait::async_trait]
impl<S: SimServer> Transport for SimTransport<S> {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        let (delay, duplicate, drop_response) = {
            let mut net = self.net.lock().unwrap();
            if !net.faults {
                (false, false, false)
            } else {
                let d = net.rng.chance(50);
                let dup = net.rng.chance(60);
                let drop = net.rng.chance(60);
                (d, dup, drop)
            }
        };
        if delay {
            let mut net = self.net.lock().unwrap();
            net.stats.delayed += 1;
            net.delayed.push(request);
            return Err(TransportError::Timeout);
        }
        let mut resp = self.deliver(request.clone()).await?;
        self.net.lock().unwrap().stats.delivered += 1;
        if duplicate {
            self.net.lock().unwrap().stats.duplicated += 1;
            resp = self.deliver(request).await?;
        }
        if drop_response {
            self.net.lock().unwrap().stats.dropped_responses += 1;
            return Err(TransportError::Timeout);
        }
        Ok(resp)
    }

    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        match &self.http {
            Some(h) => h.changes(request).await,
            None => self
                .server
                .service()
                .changes(&self.ctx, request)
                .map_err(service_error),
        }
    }

    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        match &self.http {
            Some(h) => h.snapshot(request).await,
            None => self
                .server
                .service()
                .snapshot(&self.ctx, request)
                .map_err(service_error),
        }
    }

    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        match &self.http {
            Some(h) => h.reconcile(request).await,
            None => self
                .server
                .service()
                .reconcile(&self.ctx, request)
                .map_err(service_error),
        }
    }
}

/// A terminal's clock (the shared simulated time plus its own skew) and its
/// own random stream.
#[derive(Debug)]
pub struct ClientEnv {
    now: Arc<AtomicU64>,
    skew_ms: i64,
    rng: AtomicU64,
}

impl Environment for ClientEnv {
    fn now_ms(&self) -> u64 {
        (self.now.load(Ordering::SeqCst) as i64 + self.skew_ms) as u64
    }
    fn random_u64(&self) -> u64 {
        let mut s = self.rng.load(Ordering::SeqCst);
        let v = splitmix64(&mut s);
        self.rng.store(s, Ordering::SeqCst);
        v
    }
}

type ClientEngine<S> = Engine<FailingStore<MemoryStore>, SimTransport<S>, ClientEnv>;

pub struct Client<S: SimServer> {
    pub name: String,
    pub ctx: TerminalContext,
    pub store: FailingStore<MemoryStore>,
    pub engine: Option<ClientEngine<S>>,
    pub net: Arc<Mutex<Net>>,
    skew_ms: i64,
    rng_seed: u64,
    last_cursor: Option<Cursor>,
    created: u64,
    /// Events since the engine was opened.
    events: Option<tidesync::Subscription>,
    /// The local view as a subscriber knows it: the store's at open, then
    /// every change event applied.
    seen: BTreeMap<EntityKey, Option<LocalEntity>>,
    /// Names this engine in logs and in the ids it creates.
    label: String,
    /// Another engine opens the same store (a second browser tab): change
    /// events of one do not reach the other (the browser adapter relays them
    /// over BroadcastChannel), so the subscriber check is skipped.
    shared_store: bool,
}

/// Counts of what a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub steps: u64,
    pub checks: u64,
    pub local_writes: u64,
    pub applied: u64,
    pub conflicts_resolved: u64,
    pub dead_letters_handled: u64,
    pub restarts: u64,
    pub commit_failures: u64,
    pub net: NetStats,
}

pub struct Sim<S: SimServer> {
    pub seed: u64,
    rng: Rng,
    now: Arc<AtomicU64>,
    server: Arc<S>,
    tenant: String,
    link: Link,
    pub clients: Vec<Client<S>>,
    pub stats: RunStats,
    /// (terminal, op) pairs the server applied, from its audit.
    applied: BTreeSet<(String, OpId)>,
    /// Last applied HLC per (entity, branch, terminal), for FIFO.
    last_hlc: BTreeMap<(EntityKey, String, String), Hlc>,
    audit_seen: BTreeMap<String, usize>,
    trace: Vec<String>,
}

fn fields(v: Value) -> Fields {
    v.as_object().cloned().unwrap_or_default()
}

fn policies(config: EngineConfig) -> EngineConfig {
    config
        .with_policy("rooms", ConflictPolicy::MergeThreeWay)
        .with_policy("tasks", ConflictPolicy::LastWriteWins)
        .with_policy("incidents", ConflictPolicy::ManualResolve)
        .with_policy("catalog", ConflictPolicy::ServerWins)
        .with_policy("sales", ConflictPolicy::AppendOnly)
}

const BRANCHES: [&str; 2] = ["b1", "b2"];

/// The simulated clock's start.
pub const SIM_START_MS: u64 = 1_767_225_600_000;

impl Sim<SyncService<ServerMemory>> {
    /// A run against the server logic in memory.
    pub fn new(seed: u64) -> Self {
        let now = Arc::new(AtomicU64::new(SIM_START_MS));
        let clock = now.clone();
        let server = Arc::new(
            SyncService::new(ServerMemory::new())
                .with_policy("sales", ServerPolicy::AppendOnly)
                .with_clock(move || clock.load(Ordering::SeqCst)),
        );
        Sim::with_server(seed, server, "hotel".into(), Link::Direct, now)
    }
}

impl<S: SimServer> Sim<S> {
    /// A run against `server` (its `sales` collection append-only, its clock
    /// `now`), reached over `link`, in partitions of `tenant`.
    pub fn with_server(
        seed: u64,
        server: Arc<S>,
        tenant: String,
        link: Link,
        now: Arc<AtomicU64>,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let hlc0 = Hlc {
            wall_ms: 1_767_225_000_000,
            counter: 0,
            node: 0,
        };
        for branch in BRANCHES {
            let p = Partition::new(&tenant, branch);
            let mut seed_rows = Vec::new();
            for k in 1..=4 {
                seed_rows.push((
                    EntityKey::new("rooms", format!("room-{k}")),
                    fields(json!({"status": "dirty", "notes": "", "floor": k})),
                ));
            }
            for k in 1..=3 {
                seed_rows.push((
                    EntityKey::new("tasks", format!("task-{k}")),
                    fields(json!({"done": false, "assignee": ""})),
                ));
                seed_rows.push((
                    EntityKey::new("catalog", format!("item-{k}")),
                    fields(json!({"price": 100 * k})),
                ));
            }
            for k in 1..=2 {
                seed_rows.push((
                    EntityKey::new("incidents", format!("inc-{k}")),
                    fields(json!({"state": "open", "owner": ""})),
                ));
            }
            server.service().seed(&p, hlc0, seed_rows).expect("seed");
        }
        let terminals = [("t1", "b1"), ("t2", "b1"), ("t3", "b1"), ("t4", "b2")];
        let mut clients = Vec::new();
        for (name, branch) in terminals {
            let net = Arc::new(Mutex::new(Net {
                rng: Rng::new(rng.next()),
                partitioned_until: 0,
                step: 0,
                faults: true,
                delayed: Vec::new(),
                stats: NetStats::default(),
            }));
            let skew_ms = rng.below(120_000) as i64 - 60_000;
            clients.push(Client {
                name: name.to_string(),
                ctx: TerminalContext::new(&tenant, branch, name),
                store: FailingStore::new(MemoryStore::new()),
                engine: None,
                net,
                skew_ms,
                rng_seed: rng.next(),
                last_cursor: None,
                created: 0,
                events: None,
                seen: BTreeMap::new(),
                label: name.to_string(),
                shared_store: false,
            });
        }
        // A second tab of t1: its own engine on t1's store and network.
        clients[0].shared_store = true;
        let tab = Client {
            name: clients[0].name.clone(),
            ctx: clients[0].ctx.clone(),
            store: clients[0].store.clone(),
            engine: None,
            net: clients[0].net.clone(),
            skew_ms: clients[0].skew_ms,
            rng_seed: rng.next(),
            last_cursor: None,
            created: 0,
            events: None,
            seen: BTreeMap::new(),
            label: "t1-tab2".to_string(),
            shared_store: true,
        };
        clients.push(tab);
        let mut sim = Sim {
            seed,
            rng,
            now,
            server,
            tenant,
            link,
            clients,
            stats: RunStats::default(),
            applied: BTreeSet::new(),
            last_hlc: BTreeMap::new(),
            audit_seen: BTreeMap::new(),
            trace: Vec::new(),
        };
        for i in 0..sim.clients.len() {
            sim.open(i);
        }
        sim
    }

    fn log(&mut self, s: String) {
        if self.trace.len() > 400 {
            self.trace.remove(0);
        }
        self.trace.push(format!("[{}] {s}", self.stats.steps));
    }

    fn open(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let config = EngineConfig {
            retry: RetryPolicy {
                base_ms: 200,
                cap_ms: 30_000,
                max_attempts: 6,
                offline_probe_ms: 5_000,
            },
            snapshot_page: 5,
            changes_page: 7,
            reconcile_buckets: 8,
            max_manifest: 6,
            ..policies(EngineConfig::new(
                format!("client-{}", c.name),
                c.name.clone(),
                c.ctx.branch.clone(),
            ))
        };
        c.rng_seed = c.rng_seed.wrapping_add(1);
        let env = ClientEnv {
            now: self.now.clone(),
            skew_ms: c.skew_ms,
            rng: AtomicU64::new(c.rng_seed),
        };
        let http = match &self.link {
            Link::Direct => None,
            Link::Http { base, issue } => {
                let key = issue(&c.ctx);
                Some(tidesync_server::client::HttpTransport::new(
                    base.clone(),
                    key,
                    c.ctx.branch.clone(),
                ))
            }
        };
        let transport = SimTransport {
            server: self.server.clone(),
            ctx: c.ctx.clone(),
            net: c.net.clone(),
            http,
        };
        // Opening can hit an injected commit failure on a brand-new store.
        match block_on(Engine::open(c.store.clone(), transport, env, config)) {
            Ok(e) => {
                c.events = Some(e.subscribe(tidesync::Filter::All));
                c.seen.clear();
                for col in block_on(c.store.collections()).expect("collections") {
                    for r in block_on(c.store.scan(&col)).expect("scan") {
                        c.seen.insert(r.key.clone(), r.view);
                    }
                }
                c.engine = Some(e);
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::StorageFailed, "open failed: {e}");
                c.engine = None;
            }
        }
    }

    fn fail(&self, what: String) -> String {
        format!(
            "seed {} failed at step {}: {what}\nreplay: TIDESYNC_SEED={} cargo test --test simulation replay_one -- --nocapture\nlast events:\n{}",
            self.seed,
            self.stats.steps,
            self.seed,
            self.trace.join("\n")
        )
    }

    pub fn run(&mut self, steps: u64) -> Result<RunStats, String> {
        for _ in 0..steps {
            self.stats.steps += 1;
            for c in &self.clients {
                c.net.lock().unwrap().step = self.stats.steps;
            }
            self.step()?;
            self.check_step()?;
        }
        self.heal()?;
        self.check_final()?;
        for c in &self.clients {
            let s = c.net.lock().unwrap().stats;
            self.stats.net.delivered += s.delivered;
            self.stats.net.dropped_requests += s.dropped_requests;
            self.stats.net.dropped_responses += s.dropped_responses;
            self.stats.net.duplicated += s.duplicated;
            self.stats.net.delayed += s.delayed;
            self.stats.net.server_errors += s.server_errors;
            self.stats.net.rate_limited += s.rate_limited;
            self.stats.net.unreachable += s.unreachable;
        }
        Ok(self.stats)
    }

    fn step(&mut self) -> Result<(), String> {
        let i = self.rng.below(self.clients.len() as u64) as usize;
        if self.clients[i].engine.is_none() {
            self.open(i);
            return Ok(());
        }
        match self.rng.below(100) {
            0..=39 => self.local_write(i),
            40..=62 => {
                let r = block_on(self.clients[i].engine.as_ref().unwrap().sync_now());
                self.log(format!("{} sync: {r:?}", self.clients[i].label));
                match r {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == ErrorCode::StorageFailed => Ok(()),
                    Err(e) => Err(self.fail(format!("sync_now failed: {e}"))),
                }
            }
            63..=67 => self.cloud_write(),
            68..=71 => {
                let len = if self.rng.chance(300) {
                    40 + self.rng.below(80)
                } else {
                    1 + self.rng.below(15)
                };
                let mut net = self.clients[i].net.lock().unwrap();
                net.partitioned_until = self.stats.steps + len;
                drop(net);
                self.log(format!(
                    "{} partitioned for {len} steps",
                    self.clients[i].label
                ));
                Ok(())
            }
            72..=81 => {
                let ms = match self.rng.below(100) {
                    0..=79 => self.rng.below(5_000),
                    80..=97 => self.rng.below(3_600_000),
                    _ => 13 * 3_600_000,
                };
                self.now.fetch_add(ms, Ordering::SeqCst);
                Ok(())
            }
            82..=84 => {
                self.log(format!("{} restarts", self.clients[i].label));
                self.clients[i].engine = None;
                self.stats.restarts += 1;
                self.open(i);
                Ok(())
            }
            85..=87 => {
                let n = 1 + self.rng.below(3);
                self.clients[i].store.fail_nth_commit(n);
                self.stats.commit_failures += 1;
                Ok(())
            }
            88..=91 => {
                self.deliver_delayed(i, false);
                Ok(())
            }
            92..=95 => self.user_acts(i, false),
            96..=97 => {
                let r = block_on(self.clients[i].engine.as_ref().unwrap().reconcile(None));
                self.log(format!("{} reconcile: {r:?}", self.clients[i].label));
                match r {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == ErrorCode::StorageFailed => Ok(()),
                    Err(e) => Err(self.fail(format!("reconcile failed: {e}"))),
                }
            }
            _ => {
                let online = self.rng.chance(500);
                block_on(self.clients[i].engine.as_ref().unwrap().set_online(online));
                Ok(())
            }
        }
    }

    fn deliver_delayed(&mut self, i: usize, all: bool) {
        let reqs: Vec<PushRequest> = {
            let mut net = self.clients[i].net.lock().unwrap();
            if all {
                std::mem::take(&mut net.delayed)
            } else if !net.delayed.is_empty() {
                let k = self.rng.below(net.delayed.len() as u64) as usize;
                vec![net.delayed.remove(k)]
            } else {
                vec![]
            }
        };
        for r in reqs {
            let n = r.mutations.len();
            let res = self.server.service().push(&self.clients[i].ctx, r);
            self.log(format!(
                "{} late delivery of {n} mutations: {:?}",
                self.clients[i].label,
                res.map(|r| r.acks.into_iter().map(|a| a.result).collect::<Vec<_>>())
            ));
        }
    }

    fn local_write(&mut self, i: usize) -> Result<(), String> {
        let branch_rooms = 4;
        let name = self.clients[i].label.clone();
        let roll = self.rng.below(100);
        let k = 1 + self.rng.below(3);
        let value = self.rng.below(5);
        let r = self.rng.below(10);
        self.clients[i].created += 1;
        let serial = self.clients[i].created;
        let (desc, result) = {
            let engine = self.clients[i].engine.as_ref().unwrap();
            let outbox_before = block_on(engine.outbox()).len();
            let audit_before = block_on(engine.audit(0, usize::MAX))
                .map(|a| a.len())
                .unwrap_or(0);
            let (desc, result) = match roll {
                0..=29 => {
                    let room = 1 + self.rng.below(branch_rooms);
                    let field = *self.rng.pick(&["status", "notes", "floor"]);
                    let v = match field {
                        "status" => {
                            json!(["dirty", "clean", "inspected", "ooo", "dnd"][value as usize])
                        }
                        "notes" => json!(format!("{name}-{value}")),
                        _ => json!(value),
                    };
                    let mut f = Fields::new();
                    f.insert(field.to_string(), v);
                    (
                        format!("patch rooms/room-{room} {field}"),
                        block_on(engine.patch("rooms", &format!("room-{room}"), f)),
                    )
                }
                30..=44 => {
                    if r == 0 {
                        let id = format!("task-{name}-{serial}");
                        (
                            format!("create tasks/{id}"),
                            block_on(engine.create(
                                "tasks",
                                Some(&id),
                                fields(json!({"done": false, "assignee": name})),
                            )),
                        )
                    } else if r == 1 {
                        (
                            format!("delete tasks/task-{k}"),
                            block_on(engine.delete("tasks", &format!("task-{k}"))),
                        )
                    } else if r == 2 {
                        (
                            format!("recreate tasks/task-{k}"),
                            block_on(engine.create(
                                "tasks",
                                Some(&format!("task-{k}")),
                                fields(json!({"done": false, "assignee": ""})),
                            )),
                        )
                    } else {
                        (
                            format!("patch tasks/task-{k}"),
                            block_on(engine.patch(
                                "tasks",
                                &format!("task-{k}"),
                                fields(json!({"done": value % 2 == 0, "assignee": name})),
                            )),
                        )
                    }
                }
                45..=59 => {
                    let inc = 1 + self.rng.below(2);
                    (
                        format!("patch incidents/inc-{inc}"),
                        block_on(engine.patch(
                            "incidents",
                            &format!("inc-{inc}"),
                            fields(json!({"state": (["open", "ack", "closed"][(value % 3) as usize]), "owner": name})),
                        )),
                    )
                }
                60..=69 => (
                    format!("patch catalog/item-{k}"),
                    block_on(engine.patch(
                        "catalog",
                        &format!("item-{k}"),
                        fields(json!({"price": 50 + value})),
                    )),
                ),
                _ => {
                    let total = self.rng.below(10_000);
                    (
                        "append sales".to_string(),
                        block_on(engine.append(
                            "sales",
                            None,
                            fields(json!({"total": total, "terminal": name})),
                        )),
                    )
                }
            };
            if let Err(e) = &result {
                // A refused write leaves nothing behind.
                let outbox_after = block_on(engine.outbox()).len();
                let audit_after = block_on(engine.audit(0, usize::MAX))
                    .map(|a| a.len())
                    .unwrap_or(0);
                if outbox_after != outbox_before || audit_after != audit_before {
                    return Err(self.fail(format!("failed write ({e}) left outbox {outbox_before}->{outbox_after}, audit {audit_before}->{audit_after}")));
                }
            }
            (desc, result.map(|_| ()))
        };
        match result {
            Ok(()) => {
                self.stats.local_writes += 1;
                self.log(format!("{name} {desc}"));
                Ok(())
            }
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::NotFound
                        | ErrorCode::AlreadyExists
                        | ErrorCode::InvalidState
                        | ErrorCode::StorageFailed
                ) =>
            {
                self.log(format!("{name} {desc} refused: {}", e.code()));
                Ok(())
            }
            Err(e) => Err(self.fail(format!("{name} {desc}: unexpected error {e}"))),
        }
    }

    fn cloud_write(&mut self) -> Result<(), String> {
        let branch = *self.rng.pick(&BRANCHES);
        let p = Partition::new(&self.tenant, branch);
        let now = self.now.load(Ordering::SeqCst);
        let hlc = Hlc {
            wall_ms: now,
            counter: 0,
            node: 0xC10D,
        };
        let (key, f) = match self.rng.below(4) {
            0 => (
                EntityKey::new("catalog", format!("item-{}", 1 + self.rng.below(3))),
                fields(json!({"price": 200 + self.rng.below(50)})),
            ),
            1 => (
                EntityKey::new("rooms", format!("room-{}", 1 + self.rng.below(4))),
                fields(json!({"status": "ooo", "notes": "maintenance", "floor": 9})),
            ),
            2 => (
                EntityKey::new("incidents", format!("inc-{}", 1 + self.rng.below(2))),
                fields(json!({"state": "escalated", "owner": "cloud"})),
            ),
            _ => (
                EntityKey::new("tasks", format!("task-{}", 1 + self.rng.below(3))),
                fields(json!({"done": true, "assignee": "cloud"})),
            ),
        };
        if key.collection == "tasks" && self.rng.chance(300) {
            // The cloud deletes a shared task: pending local edits of it
            // must surface (conflict or dead letter), never vanish.
            self.log(format!("cloud deletes {branch}:{key}"));
            return self
                .server
                .service()
                .admin_delete(&p, &key, hlc)
                .map(|_| ())
                .map_err(|e| self.fail(format!("admin_delete failed: {e:?}")));
        }
        self.log(format!("cloud writes {branch}:{key}"));
        self.server
            .service()
            .admin_put(&p, &key, f, hlc)
            .map(|_| ())
            .map_err(|e| self.fail(format!("admin_put failed: {e:?}")))
    }

    /// A person works the sync center: retries or discards dead letters and
    /// resolves conflicts. When `all`, every item is handled.
    fn user_acts(&mut self, i: usize, all: bool) -> Result<(), String> {
        let Some(engine) = self.clients[i].engine.as_ref() else {
            return Ok(());
        };
        let name = self.clients[i].label.clone();
        let mut notes = Vec::new();
        let mut handled = (0, 0);
        let dead = block_on(engine.dead_letters());
        for d in dead.iter().take(if all { usize::MAX } else { 1 }) {
            let OutboxState::DeadLetter { code, .. } = &d.state else {
                continue;
            };
            // Permanent refusals are discarded; anything else is retried.
            let r = if code.is_permanent() {
                notes.push(format!("discard {} ({code})", d.mutation.op_id));
                block_on(engine.discard(d.seq))
            } else {
                notes.push(format!("retry {} ({code})", d.mutation.op_id));
                block_on(engine.retry(d.seq))
            };
            match r {
                Ok(()) => handled.0 += 1,
                Err(e) if e.code() == ErrorCode::StorageFailed => {}
                Err(e) => return Err(self.fail(format!("{name} dead letter action: {e}"))),
            }
        }
        let conflicts = block_on(engine.conflicts());
        for c in conflicts.iter().take(if all { usize::MAX } else { 1 }) {
            let choice = match self.rng.below(3) {
                0 => Resolution::Local,
                1 => Resolution::Server,
                _ => Resolution::Edited(fields(json!({"state": "merged", "owner": name}))),
            };
            notes.push(format!("resolve {} with {choice:?}", c.key));
            match block_on(engine.resolve(&c.key, choice)) {
                Ok(()) => handled.1 += 1,
                Err(e) if matches!(e.code(), ErrorCode::StorageFailed) => {}
                Err(e) => return Err(self.fail(format!("{name} resolve {}: {e}", c.key))),
            }
        }
        self.stats.dead_letters_handled += handled.0;
        self.stats.conflicts_resolved += handled.1;
        for n in notes {
            self.log(format!("{name} {n}"));
        }
        Ok(())
    }

    fn partition_audit(&self, branch: &str) -> Vec<tidesync_server::storage::AuditRow> {
        self.server
            .service()
            .store()
            .audit(&Partition::new(&self.tenant, branch))
            .expect("server audit")
    }

    fn drain_events(&mut self) {
        for c in &mut self.clients {
            if let Some(rx) = c.events.as_mut() {
                while let Ok(ev) = rx.try_recv() {
                    if let tidesync::Event::Changed { key, entity } = ev {
                        c.seen.insert(key, entity);
                    }
                }
            }
        }
    }

    /// Checked after every step.
    fn check_step(&mut self) -> Result<(), String> {
        self.drain_events();
        // Every op applied at most once, and in FIFO order per entity and terminal.
        for branch in BRANCHES {
            let audit = self.partition_audit(branch);
            let seen = self.audit_seen.get(branch).copied().unwrap_or(0);
            for a in &audit[seen..] {
                if let (Some(op), Some(t)) = (&a.op_id, &a.terminal) {
                    self.stats.checks += 1;
                    if !self.applied.insert((t.clone(), op.clone())) {
                        return Err(
                            self.fail(format!("op {op} of {t} applied twice on the server"))
                        );
                    }
                    let k = (a.key.clone(), branch.to_string(), t.clone());
                    if let Some(prev) = self.last_hlc.get(&k) {
                        if *prev >= a.hlc {
                            return Err(self.fail(format!(
                                "FIFO broken on {}: {t} applied {} after {}",
                                a.key, a.hlc, prev
                            )));
                        }
                    }
                    self.last_hlc.insert(k, a.hlc);
                    self.stats.applied += 1;
                }
            }
            self.audit_seen.insert(branch.to_string(), audit.len());
        }
        // Cursors never go back, across restarts too.
        for i in 0..self.clients.len() {
            let Some(engine) = self.clients[i].engine.as_ref() else {
                continue;
            };
            let cursor = block_on(engine.meta()).cursor;
            if cursor < self.clients[i].last_cursor {
                return Err(self.fail(format!(
                    "{} cursor went back: {:?} -> {:?}",
                    self.clients[i].label, self.clients[i].last_cursor, cursor
                )));
            }
            // The pill's counts match the queues.
            let status = block_on(engine.status());
            let outbox = block_on(engine.outbox());
            let dead = outbox
                .iter()
                .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
                .count();
            if status.pending != outbox.len() - dead || status.dead_letters != dead {
                return Err(self.fail(format!("status {status:?} disagrees with the outbox")));
            }
            self.stats.checks += 2;
            self.clients[i].last_cursor = cursor;
        }
        Ok(())
    }

    /// Heals everything and lets the terminals and their users finish.
    fn heal(&mut self) -> Result<(), String> {
        self.log("healing".into());
        for i in 0..self.clients.len() {
            {
                let mut net = self.clients[i].net.lock().unwrap();
                net.faults = false;
                net.partitioned_until = 0;
            }
            self.clients[i].store.clear_failures();
            self.deliver_delayed(i, true);
            if self.clients[i].engine.is_none() {
                self.open(i);
            }
        }
        for round in 0..60 {
            self.now.fetch_add(10 * 60_000, Ordering::SeqCst);
            let mut busy = false;
            for i in 0..self.clients.len() {
                let engine = self.clients[i].engine.as_ref().unwrap();
                block_on(engine.set_online(true));
                block_on(engine.credentials_changed());
                let r = block_on(engine.sync_now())
                    .map_err(|e| self.fail(format!("heal sync: {e}")))?;
                let engine = self.clients[i].engine.as_ref().unwrap();
                let outbox = block_on(engine.outbox());
                let conflicts = block_on(engine.conflicts());
                if !outbox.is_empty() || !conflicts.is_empty() || r.sent > 0 || r.pulled > 0 {
                    busy = true;
                }
                if !outbox.is_empty() || !conflicts.is_empty() {
                    self.user_acts(i, true)?;
                }
            }
            self.check_step()?;
            if !busy {
                self.log(format!("quiet after {round} healing rounds"));
                return Ok(());
            }
        }
        Err(self.fail("terminals did not settle after 60 healing rounds".into()))
    }

    /// After healing: convergence and accountability.
    fn check_final(&mut self) -> Result<(), String> {
        // A subscriber saw every change to the local view.
        self.drain_events();
        for c in self.clients.iter().filter(|c| !c.shared_store) {
            let mut stored: BTreeMap<EntityKey, Option<LocalEntity>> = BTreeMap::new();
            for col in block_on(c.store.collections()).expect("collections") {
                for r in block_on(c.store.scan(&col)).expect("scan") {
                    stored.insert(r.key.clone(), r.view);
                }
            }
            for key in stored.keys().chain(c.seen.keys()).collect::<BTreeSet<_>>() {
                let a = stored.get(key).cloned().flatten();
                let b = c.seen.get(key).cloned().flatten();
                self.stats.checks += 1;
                if a != b {
                    return Err(self.fail(format!(
                        "{}: subscriber missed a change of {key}: store {a:?}, events {b:?}",
                        c.name
                    )));
                }
            }
        }
        // Reconcile finds nothing to repair once converged.
        for i in 0..self.clients.len() {
            let engine = self.clients[i].engine.as_ref().unwrap();
            let r = block_on(engine.reconcile(None))
                .map_err(|e| self.fail(format!("reconcile: {e}")))?;
            self.stats.checks += 1;
            if r.pulled != 0 {
                let audit = block_on(engine.audit(0, usize::MAX)).unwrap_or_default();
                let repairs: Vec<String> = audit
                    .iter()
                    .filter(|a| matches!(a.event, AuditEvent::Reconciled { .. }))
                    .map(|a| format!("{} {:?}", a.key, a.event))
                    .collect();
                return Err(self.fail(format!(
                    "{} needed reconcile repairs after healing: {r:?}: {repairs:?}",
                    self.clients[i].label
                )));
            }
        }
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            let engine = c.engine.as_ref().unwrap();
            // Converged with the server, collection by collection.
            let mut server_view: BTreeMap<EntityKey, Fields> = BTreeMap::new();
            let mut after = None;
            loop {
                let page = self
                    .server
                    .service()
                    .snapshot(&c.ctx, SnapshotRequest { after, limit: 1000 })
                    .map_err(|e| self.fail(format!("snapshot: {e:?}")))?;
                for s in page.entities {
                    server_view.insert(s.key(), s.fields);
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let mut local_view: BTreeMap<EntityKey, Fields> = BTreeMap::new();
            for col in ["rooms", "tasks", "incidents", "catalog", "sales"] {
                for e in
                    block_on(engine.query(col)).map_err(|e| self.fail(format!("query: {e}")))?
                {
                    if e.pending != 0 || e.conflicted {
                        return Err(self.fail(format!(
                            "{}: {}/{} still pending after healing",
                            c.name, col, e.id
                        )));
                    }
                    local_view.insert(EntityKey::new(col, e.id), e.fields);
                }
            }
            self.stats.checks += 1;
            if server_view != local_view {
                let diff: Vec<String> = server_view
                    .keys()
                    .chain(local_view.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| server_view.get(*k) != local_view.get(*k))
                    .map(|k| {
                        format!(
                            "{k}: server {:?} local {:?}",
                            server_view.get(k),
                            local_view.get(k)
                        )
                    })
                    .collect();
                return Err(self.fail(format!(
                    "{} did not converge:\n{}",
                    c.name,
                    diff.join("\n")
                )));
            }
            // Every local mutation is accounted for.
            let audit = block_on(engine.audit(0, usize::MAX))
                .map_err(|e| self.fail(format!("audit: {e}")))?;
            let mut fate: BTreeMap<OpId, Vec<&AuditEvent>> = BTreeMap::new();
            for a in &audit {
                if let Some(op) = &a.op_id {
                    fate.entry(op.clone()).or_default().push(&a.event);
                }
            }
            for (op, events) in &fate {
                if !matches!(events.first(), Some(AuditEvent::Queued)) {
                    continue;
                }
                let applied_here = events.iter().any(|e| {
                    matches!(e, AuditEvent::Applied { .. } | AuditEvent::Duplicate { .. })
                });
                let on_server = self.applied.contains(&(c.name.clone(), op.clone()));
                let settled_otherwise = events.iter().any(|e| {
                    matches!(
                        e,
                        AuditEvent::Superseded { .. }
                            | AuditEvent::ConflictResolved { .. }
                            | AuditEvent::Discarded
                    )
                });
                self.stats.checks += 1;
                if on_server != applied_here {
                    return Err(self.fail(format!(
                        "{}: op {op} on server: {on_server}, acknowledged locally: {applied_here} ({events:?})",
                        c.name
                    )));
                }
                if !on_server && !settled_otherwise {
                    return Err(self.fail(format!("{}: op {op} was lost: {events:?}", c.name)));
                }
            }
            // And the server applied nothing this terminal does not know it queued.
            for (t, op) in &self.applied {
                if t == &c.name && !fate.contains_key(op) {
                    return Err(self.fail(format!("server applied {op} that {t} never queued")));
                }
            }
        }
        // Each entity's version counts its applied writes.
        for branch in BRANCHES {
            let audit = self.partition_audit(branch);
            let mut counts: BTreeMap<EntityKey, u64> = BTreeMap::new();
            for a in &audit {
                *counts.entry(a.key.clone()).or_default() += 1;
                self.stats.checks += 1;
                if counts[&a.key] != a.version {
                    return Err(self.fail(format!(
                        "{branch}:{} version {} after {} writes",
                        a.key, a.version, counts[&a.key]
                    )));
                }
            }
        }
        Ok(())
    }
}
