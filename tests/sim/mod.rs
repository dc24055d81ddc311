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

mod checks;
mod oracle;
mod workload;

use oracle::*;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tidesync::env::{splitmix64, Environment};
use tidesync::retry::RetryPolicy;
use tidesync::store::{
    AuditEvent, ChainBase, FailingStore, LocalEntity, MemoryStore, OutboxEntry, OutboxState,
};
use tidesync::Store;
use tidesync::{
    AckResult, ChangesPage, ChangesRequest, ConflictPolicy, Cursor, Engine, EngineConfig,
    EntityKey, EntityState, ErrorCode, Fields, Hlc, Mutation, MutationKind, OpId, PushRequest,
    PushResponse, ReconcileRequest, ReconcileResponse, Resolution, SnapshotPage, SnapshotRequest,
    Transport, TransportError,
};
use tidesync_server::rules::{CollectionRules, FieldRule, FieldType};
use tidesync_server::storage::Partition;
use tidesync_server::{
    MemoryServerStore as ServerMemory, ServerPolicy, ServerStore, ServiceConfig, ServiceError,
    SyncService, TerminalContext,
};

/// The server's configuration in every run: `sales` append-only, with a
/// payload rule (a sale's `total` is at most 9,899: larger ones are refused
/// with `EVENT_INVALID`), and `rates` read-only for terminals (the app
/// writes it anyway: `POLICY_VIOLATION`).
pub fn server_config() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    config
        .policies
        .insert("sales".into(), ServerPolicy::AppendOnly);
    config
        .policies
        .insert("rates".into(), ServerPolicy::ReadOnly);
    let total = FieldRule {
        kind: Some(FieldType::Integer),
        max: Some(MAX_SALE_TOTAL as i64),
        ..FieldRule::default()
    };
    config.rules.insert(
        "sales".into(),
        CollectionRules {
            fields: [("total".to_string(), total)].into_iter().collect(),
            ..CollectionRules::default()
        },
    );
    config
}

/// The largest sale the server's rules accept.
pub const MAX_SALE_TOTAL: u64 = 9_899;

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
    /// Entities whose server state reached this terminal since the last
    /// check (changes, snapshot and reconcile pages, conflict answers).
    pub seen_keys: BTreeSet<EntityKey>,
    /// Conflict answers this terminal received since the last check, with
    /// what its store held when the answer arrived.
    pub conflicts_seen: Vec<ConflictSeen>,
}

/// A conflict answer and what the decision needs, as the store held it
/// when the answer arrived (the engine decides on exactly this).
#[derive(Debug, Clone)]
pub struct ConflictSeen {
    /// The entity's chain, head (the mutation the server answered) first.
    pub chain: Vec<Mutation>,
    /// The server state the chain was built on.
    pub base: Option<EntityState>,
    /// The server's state in the answer.
    pub server: Option<EntityState>,
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
    /// The terminal's store, read (never through injected faults) to note
    /// what a conflict answer meets.
    store: FailingStore<MemoryStore>,
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
    /// Notes the entities of received server states.
    fn note_states<'a>(&self, states: impl Iterator<Item = &'a EntityState>) {
        let mut net = self.net.lock().unwrap();
        for s in states {
            net.seen_keys.insert(s.key());
        }
    }

    /// Notes each conflict answer with the chain and base it meets.
    async fn note_conflicts(&self, resp: &PushResponse) {
        let answers: Vec<(&OpId, &Option<EntityState>)> = resp
            .acks
            .iter()
            .filter_map(|a| match &a.result {
                AckResult::Conflict { server } => Some((&a.op_id, server)),
                _ => None,
            })
            .collect();
        if answers.is_empty() {
            return;
        }
        let inner = self.store.inner();
        let mut outbox = inner.outbox().await.expect("outbox");
        outbox.sort_by_key(|e| e.seq);
        let mut notes = Vec::new();
        for (op, server) in answers {
            let Some(head) = outbox.iter().find(|e| &e.mutation.op_id == op) else {
                continue;
            };
            let key = head.mutation.key();
            let chain: Vec<Mutation> = outbox
                .iter()
                .filter(|e| e.mutation.key() == key)
                .map(|e| e.mutation.clone())
                .collect();
            let rec = inner.get(&key).await.expect("get");
            let base = rec.and_then(|r| r.chain_base).and_then(|b| match b {
                ChainBase::State(s) => Some(s),
                ChainBase::Absent => None,
            });
            notes.push(ConflictSeen {
                chain,
                base,
                server: server.clone(),
            });
        }
        let mut net = self.net.lock().unwrap();
        for n in &notes {
            if let Some(s) = &n.server {
                net.seen_keys.insert(s.key());
            }
        }
        net.conflicts_seen.extend(notes);
    }

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
        self.note_conflicts(&resp).await;
        Ok(resp)
    }

    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        let page = match &self.http {
            Some(h) => h.changes(request).await,
            None => self
                .server
                .service()
                .changes(&self.ctx, request)
                .map_err(service_error),
        }?;
        self.note_states(page.changes.iter());
        Ok(page)
    }

    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        let page = match &self.http {
            Some(h) => h.snapshot(request).await,
            None => self
                .server
                .service()
                .snapshot(&self.ctx, request)
                .map_err(service_error),
        }?;
        self.note_states(page.entities.iter());
        Ok(page)
    }

    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        if let Some(e) = self.fail_before_delivery() {
            return Err(e);
        }
        let r = match &self.http {
            Some(h) => h.reconcile(request).await,
            None => self
                .server
                .service()
                .reconcile(&self.ctx, request)
                .map_err(service_error),
        }?;
        if let Some(plan) = &r.plan {
            self.note_states(plan.missing.iter().chain(plan.stale.iter()));
        }
        Ok(r)
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

/// How often each lane of the engine was taken; the 10k-seed run fails if
/// one of them never is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lanes {
    /// Dead letters after `max_attempts` failed deliveries.
    pub dead_retries_exhausted: u64,
    /// Dead letters refused by the server's payload rules (`EVENT_INVALID`).
    pub dead_validation: u64,
    /// Dead letters refused by a server policy (`POLICY_VIOLATION`).
    pub dead_policy: u64,
    /// Other permanent refusals (`NOT_FOUND`, `ALREADY_EXISTS`, ...).
    pub dead_other: u64,
    /// Calls refused because the device was full.
    pub quota: u64,
    /// Calls refused because the database was gone.
    pub store_gone: u64,
    /// merge-three-way: disjoint fields, merged (rebased).
    pub merge_disjoint: u64,
    /// merge-three-way: overlapping fields, a conflict opened.
    pub merge_overlap: u64,
    /// last-write-wins: the local write was later and was kept.
    pub lww_local_wins: u64,
    /// last-write-wins: the server's write was later and won.
    pub lww_server_wins: u64,
    /// server-wins: the local chain was superseded.
    pub server_wins: u64,
    /// manual-resolve: a conflict opened.
    pub manual: u64,
    /// Dead letters a person discarded.
    pub discarded: u64,
    /// Dead letters a person retried.
    pub retried: u64,
    /// Writes held for review that a person released / discarded.
    pub held_released: u64,
    pub held_discarded: u64,
}

impl Lanes {
    /// Each lane that must be reached, by name.
    pub fn required(&self) -> [(&'static str, u64); 14] {
        [
            (
                "dead letter: retries exhausted",
                self.dead_retries_exhausted,
            ),
            ("dead letter: validation", self.dead_validation),
            ("dead letter: policy", self.dead_policy),
            ("store full (quota)", self.quota),
            ("store gone", self.store_gone),
            (
                "merge-three-way: disjoint fields merged",
                self.merge_disjoint,
            ),
            (
                "merge-three-way: overlapping fields, conflict",
                self.merge_overlap,
            ),
            ("last-write-wins: local later, kept", self.lww_local_wins),
            ("last-write-wins: server later, won", self.lww_server_wins),
            ("server-wins: superseded", self.server_wins),
            ("manual-resolve: conflict", self.manual),
            ("dead letter discarded by a person", self.discarded),
            ("held for review, released", self.held_released),
            ("held for review, discarded", self.held_discarded),
        ]
    }

    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &Lanes) {
        self.dead_retries_exhausted += o.dead_retries_exhausted;
        self.dead_validation += o.dead_validation;
        self.dead_policy += o.dead_policy;
        self.dead_other += o.dead_other;
        self.quota += o.quota;
        self.store_gone += o.store_gone;
        self.merge_disjoint += o.merge_disjoint;
        self.merge_overlap += o.merge_overlap;
        self.lww_local_wins += o.lww_local_wins;
        self.lww_server_wins += o.lww_server_wins;
        self.server_wins += o.server_wins;
        self.manual += o.manual;
        self.discarded += o.discarded;
        self.retried += o.retried;
        self.held_released += o.held_released;
        self.held_discarded += o.held_discarded;
    }
}

/// What the checks know of one store (a terminal; its tabs share it).
#[derive(Debug, Default)]
struct StoreTrack {
    /// `FailingStore::commits` at the last check: nothing changed if equal.
    commits: u64,
    /// The last audit entry checked.
    audit_seq: u64,
    /// The outbox at the last check: op -> is a dead letter.
    outbox: BTreeMap<OpId, bool>,
    /// The latest stamp this terminal has seen: its own mutations and
    /// every server state it stored.
    floor: Hlc,
    /// Dead letters a person discarded / retried.
    discarded: BTreeSet<OpId>,
    retried: BTreeSet<OpId>,
    /// The device is full until this step (0: not full).
    full_until: u64,
    /// The database is gone until this step (0: not gone).
    gone_until: u64,
}

/// The store a client uses: its own, or the first tab's for the second tab.
fn store_index(i: usize) -> usize {
    if i == 4 {
        0
    } else {
        i
    }
}

fn is_dead(e: &OutboxEntry) -> bool {
    matches!(e.state, OutboxState::DeadLetter { .. })
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
    pub lanes: Lanes,
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
    /// Per store (index of its first client).
    tracks: Vec<StoreTrack>,
    trace: Vec<String>,
}

fn fields(v: Value) -> Fields {
    v.as_object().cloned().unwrap_or_default()
}

/// Every collection with the policy the terminals declare for it.
fn policies(config: EngineConfig) -> EngineConfig {
    COLLECTIONS
        .iter()
        .fold(config, |c, col| c.with_policy(*col, policy_of(col)))
}

/// The collections the terminals see.
const COLLECTIONS: [&str; 6] = ["rooms", "tasks", "incidents", "catalog", "sales", "rates"];

const BRANCHES: [&str; 2] = ["b1", "b2"];

/// The simulated clock's start.
pub const SIM_START_MS: u64 = 1_767_225_600_000;

impl Sim<SyncService<ServerMemory>> {
    /// A run against the server logic in memory.
    pub fn new(seed: u64) -> Self {
        let now = Arc::new(AtomicU64::new(SIM_START_MS));
        let clock = now.clone();
        let server = Arc::new(
            SyncService::with_config(ServerMemory::new(), server_config())
                .with_clock(move || clock.load(Ordering::SeqCst)),
        );
        Sim::with_server(seed, server, "hotel".into(), Link::Direct, now)
    }
}

impl<S: SimServer> Sim<S> {
    /// A run against `server` (configured with [`server_config`], its clock
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
            seed_rows.push((
                EntityKey::new("rates", "rate-1"),
                fields(json!({"amount": 100})),
            ));
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
                seen_keys: BTreeSet::new(),
                conflicts_seen: Vec::new(),
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
        let tracks = (0..terminals.len())
            .map(|_| StoreTrack::default())
            .collect();
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
            tracks,
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
                // Low enough that the network's faults exhaust it now and
                // then: the dead-letter lane by retries is reached.
                max_attempts: 3,
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
            store: c.store.clone(),
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
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::StorageFailed | ErrorCode::QuotaExceeded | ErrorCode::StoreGone
                    ),
                    "open failed: {e}"
                );
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
            self.end_spells();
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
                    Err(e) => self.store_refusal(i, "sync_now", e.code()),
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
                match self.rng.below(10) {
                    0..=5 => {
                        let n = 1 + self.rng.below(3);
                        self.clients[i].store.fail_nth_commit(n);
                        self.stats.commit_failures += 1;
                    }
                    6..=7 => {
                        // The device fills up for a while.
                        let len = 1 + self.rng.below(8);
                        self.log(format!(
                            "{} store full for {len} steps",
                            self.clients[i].label
                        ));
                        self.clients[i].store.set_full(true);
                        let t = &mut self.tracks[store_index(i)];
                        t.full_until = t.full_until.max(self.stats.steps + len);
                    }
                    _ => {
                        // The database is closed underneath the engine (a
                        // browser closing IndexedDB) for a while.
                        let len = 1 + self.rng.below(5);
                        self.log(format!(
                            "{} store gone for {len} steps",
                            self.clients[i].label
                        ));
                        self.clients[i].store.fail_reads(true);
                        let t = &mut self.tracks[store_index(i)];
                        t.gone_until = t.gone_until.max(self.stats.steps + len);
                    }
                }
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
                    Err(e) => self.store_refusal(i, "reconcile", e.code()),
                }
            }
            _ => {
                let online = self.rng.chance(500);
                block_on(self.clients[i].engine.as_ref().unwrap().set_online(online));
                Ok(())
            }
        }
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
            if i < self.tracks.len() {
                self.tracks[i].full_until = 0;
                self.tracks[i].gone_until = 0;
            }
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
                // Per terminal: a stamp is judged against what its own
                // store had seen when it was made.
                self.check_server()?;
                self.check_store(store_index(i))?;
            }
            self.check_step()?;
            if !busy {
                self.log(format!("quiet after {round} healing rounds"));
                return Ok(());
            }
        }
        Err(self.fail("terminals did not settle after 60 healing rounds".into()))
    }
}
