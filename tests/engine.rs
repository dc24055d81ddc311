//! Scenario tests of the engine against the real server logic (in memory),
//! through a transport whose failures each test scripts.

use futures::executor::block_on;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tidesync::env::SimEnv;
use tidesync::retry::RetryPolicy;
use tidesync::store::{AuditEvent, FailingStore, MemoryStore, OutboxState};
use tidesync::throttle::ConnectionHint;
use tidesync::*;
use tidesync_server::storage::Partition;
use tidesync_server::{
    MemoryServerStore as ServerMemory, ServerPolicy, SyncService, TerminalContext,
};

type Server = SyncService<ServerMemory>;

/// What the scripted network does with the next request.
#[derive(Clone, Debug)]
enum Step {
    Fail(TransportError),
    /// Deliver, then lose the answer.
    LoseAnswer,
}

#[derive(Clone)]
struct Net {
    server: Arc<Server>,
    ctx: TerminalContext,
    script: Arc<Mutex<VecDeque<Step>>>,
    offline: Arc<Mutex<bool>>,
    pushes: Arc<Mutex<Vec<PushRequest>>>,
}

impl Net {
    fn then(&self, step: Step) {
        self.script.lock().unwrap().push_back(step);
    }
    fn set_offline(&self, off: bool) {
        *self.offline.lock().unwrap() = off;
    }
    fn next(&self) -> Option<Step> {
        if *self.offline.lock().unwrap() {
            return Some(Step::Fail(TransportError::Unreachable("cable out".into())));
        }
        self.script.lock().unwrap().pop_front()
    }
}

fn svc_err(e: tidesync_server::ServiceError) -> TransportError {
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

const T0: u64 = 1_767_225_600_000;

fn f(v: Value) -> Fields {
    v.as_object().cloned().unwrap()
}

struct World {
    server: Arc<Server>,
    env: SimEnv,
}

impl World {
    fn new() -> World {
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

    fn net(&self, terminal: &str) -> Net {
        Net {
            server: self.server.clone(),
            ctx: TerminalContext::new("hotel", "b1", terminal),
            script: Default::default(),
            offline: Default::default(),
            pushes: Default::default(),
        }
    }

    fn config(&self, terminal: &str) -> EngineConfig {
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

    fn open<S: Store>(&self, store: S, net: Net, terminal: &str) -> Engine<S, Net, SimEnv> {
        block_on(Engine::open(
            store,
            net,
            self.env.clone(),
            self.config(terminal),
        ))
        .unwrap()
    }

    fn admin(&self, key: EntityKey, fields: Fields) -> EntityState {
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

    fn server_state(&self, key: &EntityKey) -> Option<EntityState> {
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

    fn applied_ops(&self) -> Vec<OpId> {
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

fn room(id: u32) -> EntityKey {
    EntityKey::new("rooms", format!("room-{id}"))
}

#[test]
fn offline_writes_queue_then_flush_exactly_once() {
    let w = World::new();
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    assert_eq!(block_on(engine.query("rooms")).unwrap().len(), 3);

    net.set_offline(true);
    // The host's offline event (the browser adapter forwards window 'offline').
    block_on(engine.set_online(false));
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"notes": "towels"})))).unwrap();
    let sale = block_on(engine.append("sales", None, f(json!({"total": 1250})))).unwrap();
    let r = block_on(engine.sync_now()).unwrap();
    assert_eq!(r.error, Some(ErrorCode::SyncOffline));
    let status = block_on(engine.status());
    assert_eq!(status.phase, Phase::Offline);
    assert_eq!(status.pending, 3);
    // Time offline never counts toward the attempt cap.
    for _ in 0..20 {
        w.env.advance(60_000);
        block_on(engine.sync_now()).unwrap();
    }
    assert!(block_on(engine.dead_letters()).is_empty());
    assert!(block_on(engine.outbox()).iter().all(|e| e.attempts == 0));
    let view = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert_eq!(view.fields["status"], "clean");
    assert_eq!(view.pending, 2);
    // The offline flag travels with the mutation.
    assert!(block_on(engine.outbox()).iter().all(|e| e.mutation.offline));

    // Restart while offline: the queue is durable.
    drop(engine);
    let engine = w.open(store, net.clone(), "t1");
    assert_eq!(block_on(engine.status()).pending, 3);

    net.set_offline(false);
    block_on(engine.set_online(true));
    let r = block_on(engine.sync_now()).unwrap();
    assert_eq!(r.acknowledged, 3, "{r:?}");
    assert_eq!(block_on(engine.status()).pending, 0);
    let server = w.server_state(&room(1)).unwrap();
    assert_eq!(server.fields["status"], "clean");
    assert_eq!(server.fields["notes"], "towels");
    assert_eq!(server.version, 3);
    assert!(w.server_state(&EntityKey::new("sales", &sale.id)).is_some());
    assert_eq!(w.applied_ops().len(), 3);
}

#[test]
fn lost_answer_is_resent_and_deduplicated() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "inspected"})))).unwrap();
    net.then(Step::LoseAnswer);
    let r = block_on(engine.push()).unwrap();
    assert_eq!(r.acknowledged, 0);
    assert_eq!(w.applied_ops().len(), 1, "the server applied it once");
    w.env.advance(10_000);
    let r = block_on(engine.push()).unwrap();
    assert_eq!(r.acknowledged, 1);
    assert_eq!(w.applied_ops().len(), 1, "the resend was not applied again");
    // The same op id was reused on the retry.
    let pushes = net.pushes.lock().unwrap();
    assert_eq!(pushes[0].mutations[0].op_id, pushes[1].mutations[0].op_id);
    assert_eq!(pushes[1].attempt, 2);
    let audit = block_on(engine.audit(0, 100)).unwrap();
    assert!(audit
        .iter()
        .any(|a| matches!(a.event, AuditEvent::Duplicate { version: 2 })));
}

#[test]
fn lost_answer_is_acknowledged_by_the_change_feed() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "ooo"})))).unwrap();
    net.then(Step::LoseAnswer);
    block_on(engine.push()).unwrap();
    block_on(engine.pull()).unwrap();
    assert!(
        block_on(engine.outbox()).is_empty(),
        "the echo in the feed acknowledges the op"
    );
    let pushes_before = net.pushes.lock().unwrap().len();
    w.env.advance(10_000);
    block_on(engine.sync_now()).unwrap();
    assert_eq!(
        net.pushes.lock().unwrap().len(),
        pushes_before,
        "nothing left to resend"
    );
}

#[test]
fn dead_letter_blocks_only_its_own_entity_until_retried_or_discarded() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    // Server errors three times on room-1's patch: attempts run out.
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    let mut alerts = engine.subscribe(Filter::All);
    for _ in 0..3 {
        net.then(Step::Fail(TransportError::Server {
            status: 503,
            message: "down".into(),
        }));
        block_on(engine.push()).unwrap();
        w.env.advance(5_000);
    }
    let dead = block_on(engine.dead_letters());
    assert_eq!(dead.len(), 1);
    assert!(matches!(
        dead[0].state,
        OutboxState::DeadLetter {
            code: ErrorCode::RetriesExhausted,
            ..
        }
    ));
    let mut saw_alert = false;
    while let Ok(ev) = alerts.try_recv() {
        if let Event::Alert {
            code: ErrorCode::RetriesExhausted,
            ..
        } = ev
        {
            saw_alert = true;
        }
    }
    assert!(saw_alert, "a dead letter raises an alert");
    // A later change of the same room waits; another room goes through.
    block_on(engine.patch("rooms", "room-1", f(json!({"notes": "later"})))).unwrap();
    block_on(engine.patch("rooms", "room-3", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    assert_eq!(w.server_state(&room(3)).unwrap().fields["status"], "clean");
    assert_eq!(w.server_state(&room(1)).unwrap().fields["status"], "dirty");
    assert_eq!(block_on(engine.status()).dead_letters, 1);
    assert_eq!(block_on(engine.status()).pending, 1);
    // Retry: both room-1 changes land, in order.
    block_on(engine.retry(dead[0].seq)).unwrap();
    block_on(engine.sync_now()).unwrap();
    let s = w.server_state(&room(1)).unwrap();
    assert_eq!(
        (s.fields["status"].clone(), s.fields["notes"].clone()),
        (json!("clean"), json!("later"))
    );
    assert!(block_on(engine.outbox()).is_empty());
}

#[test]
fn validation_rejection_dead_letters_at_once_and_discard_restores_the_view() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    net.then(Step::Fail(TransportError::Refused {
        code: ErrorCode::EventInvalid,
        message: "payload.status: not allowed".into(),
    }));
    block_on(engine.push()).unwrap();
    let dead = block_on(engine.dead_letters());
    assert_eq!(dead.len(), 1, "no retries for a validation error");
    assert_eq!(dead[0].attempts, 0);
    block_on(engine.discard(dead[0].seq)).unwrap();
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "dirty"
    );
    let audit = block_on(engine.audit(0, 100)).unwrap();
    assert!(audit.iter().any(|a| a.event == AuditEvent::Discarded));
}

#[test]
fn rate_limit_honours_retry_after_without_spending_attempts() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    net.then(Step::Fail(TransportError::RateLimited {
        retry_after_ms: 30_000,
    }));
    block_on(engine.push()).unwrap();
    let sent = net.pushes.lock().unwrap().len();
    w.env.advance(29_000);
    block_on(engine.sync_now()).unwrap();
    assert_eq!(
        net.pushes.lock().unwrap().len(),
        sent,
        "nothing sent before Retry-After"
    );
    assert!(block_on(engine.next_wakeup()).unwrap() >= T0 + 30_000);
    w.env.advance(1_001);
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.outbox()).is_empty());
    assert_eq!(block_on(engine.status()).last_error, None);
}

#[test]
fn backoff_spaces_retries_with_jitter() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    net.then(Step::Fail(TransportError::Timeout));
    block_on(engine.push()).unwrap();
    let e = &block_on(engine.outbox())[0];
    assert_eq!(e.attempts, 1);
    assert!(e.next_attempt_at <= w.env.now_ms() + 100);
    assert_eq!(e.last_error.as_ref().unwrap().0, ErrorCode::SyncServerError);
}

#[test]
fn merge_three_way_merges_disjoint_fields_and_opens_a_conflict_on_overlap() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    // Disjoint: local status, server notes.
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    w.admin(
        room(1),
        f(json!({"status": "dirty", "notes": "VIP", "floor": 1})),
    );
    block_on(engine.sync_now()).unwrap();
    let s = w.server_state(&room(1)).unwrap();
    assert_eq!(
        s.fields,
        f(json!({"status": "clean", "notes": "VIP", "floor": 1}))
    );
    assert!(block_on(engine.conflicts()).is_empty());
    // Overlap: both change status.
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "inspected"})))).unwrap();
    w.admin(
        room(1),
        f(json!({"status": "ooo", "notes": "VIP", "floor": 1})),
    );
    block_on(engine.sync_now()).unwrap();
    let conflicts = block_on(engine.conflicts());
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].fields, vec!["status".to_string()]);
    let view = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert!(view.conflicted);
    // Writes wait for the resolution.
    let err = block_on(engine.patch("rooms", "room-1", f(json!({"notes": "x"})))).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidState);
}

#[test]
fn manual_conflict_resolved_with_local_edited_and_server() {
    for (resolution, expect) in [
        (Resolution::Local, json!("ack")),
        (Resolution::Server, json!("escalated")),
        (
            Resolution::Edited(f(json!({"state": "closed", "owner": "desk"}))),
            json!("closed"),
        ),
    ] {
        let w = World::new();
        w.admin(
            EntityKey::new("incidents", "inc-1"),
            f(json!({"state": "open", "owner": ""})),
        );
        let net = w.net("t1");
        let engine = w.open(MemoryStore::new(), net.clone(), "t1");
        block_on(engine.sync_now()).unwrap();
        block_on(engine.patch("incidents", "inc-1", f(json!({"state": "ack"})))).unwrap();
        w.admin(
            EntityKey::new("incidents", "inc-1"),
            f(json!({"state": "escalated", "owner": "cloud"})),
        );
        block_on(engine.sync_now()).unwrap();
        let c = block_on(engine.conflicts())
            .pop()
            .expect("manual policy opens a conflict");
        assert_eq!(c.local.as_ref().unwrap().fields["state"], "ack");
        assert_eq!(c.server.as_ref().unwrap().fields["state"], "escalated");
        assert_eq!(c.base.as_ref().unwrap().fields["state"], "open");
        block_on(engine.resolve(&c.key, resolution.clone())).unwrap();
        block_on(engine.sync_now()).unwrap();
        assert!(block_on(engine.conflicts()).is_empty());
        assert!(block_on(engine.outbox()).is_empty(), "{resolution:?}");
        let s = w.server_state(&c.key).unwrap();
        assert_eq!(s.fields["state"], expect, "{resolution:?}");
        let local = block_on(engine.get("incidents", "inc-1")).unwrap().unwrap();
        assert_eq!(local.fields, s.fields);
    }
}

#[test]
fn last_write_wins_by_hlc_and_server_wins_drop_local_changes_with_an_audit_trail() {
    let w = World::new();
    w.admin(EntityKey::new("tasks", "task-1"), f(json!({"done": false})));
    w.admin(
        EntityKey::new("catalog", "item-1"),
        f(json!({"price": 100})),
    );
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    // Local change first, server change later: the server's (later HLC) wins.
    block_on(engine.patch("tasks", "task-1", f(json!({"done": true})))).unwrap();
    w.env.advance(1_000);
    w.admin(
        EntityKey::new("tasks", "task-1"),
        f(json!({"done": false, "note": "cloud"})),
    );
    // Catalog is server-owned.
    block_on(engine.patch("catalog", "item-1", f(json!({"price": 90})))).unwrap();
    w.admin(
        EntityKey::new("catalog", "item-1"),
        f(json!({"price": 120})),
    );
    block_on(engine.sync_now()).unwrap();
    assert_eq!(
        w.server_state(&EntityKey::new("tasks", "task-1"))
            .unwrap()
            .fields["done"],
        false
    );
    assert_eq!(
        w.server_state(&EntityKey::new("catalog", "item-1"))
            .unwrap()
            .fields["price"],
        120
    );
    assert_eq!(
        block_on(engine.get("catalog", "item-1"))
            .unwrap()
            .unwrap()
            .fields["price"],
        120
    );
    let superseded = block_on(engine.audit(0, 100))
        .unwrap()
        .into_iter()
        .filter(|a| matches!(a.event, AuditEvent::Superseded { .. }))
        .count();
    assert_eq!(superseded, 2);
    // A newer local change wins over an older server one.
    w.admin(
        EntityKey::new("tasks", "task-1"),
        f(json!({"done": false, "note": "old"})),
    );
    w.env.advance(1_000);
    block_on(engine.patch("tasks", "task-1", f(json!({"done": true})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    let s = w.server_state(&EntityKey::new("tasks", "task-1")).unwrap();
    assert_eq!(
        (s.fields["done"].clone(), s.fields["note"].clone()),
        (json!(true), json!("old"))
    );
}

#[test]
fn append_only_collections_refuse_updates_and_dedupe_by_id() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    let e = block_on(engine.patch("sales", "s1", f(json!({"total": 1})))).unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
    let e = block_on(engine.append("rooms", None, f(json!({})))).unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
    block_on(engine.append("sales", Some("sale-1"), f(json!({"total": 10})))).unwrap();
    // A second terminal rings up the same sale id (a re-enqueued receipt).
    let net2 = w.net("t2");
    let other = w.open(MemoryStore::new(), net2, "t2");
    block_on(other.append("sales", Some("sale-1"), f(json!({"total": 10})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    block_on(other.sync_now()).unwrap();
    assert!(block_on(other.outbox()).is_empty());
    assert_eq!(w.applied_ops().len(), 1, "one sale, recorded once");
}

#[test]
fn a_failed_commit_leaves_nothing_behind_and_the_engine_recovers() {
    let w = World::new();
    let net = w.net("t1");
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    store.fail_nth_commit(1);
    let err = block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap_err();
    assert_eq!(err.code, ErrorCode::StorageFailed);
    assert!(block_on(engine.outbox()).is_empty());
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "dirty"
    );
    // The push result fails to commit: the server applied, the client did not record it.
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    store.fail_nth_commit(1);
    assert_eq!(
        block_on(engine.push()).unwrap_err().code,
        ErrorCode::StorageFailed
    );
    assert_eq!(
        block_on(engine.outbox()).len(),
        1,
        "still queued after the failed commit"
    );
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.outbox()).is_empty());
    assert_eq!(w.applied_ops().len(), 1);
}

#[test]
fn subscribers_see_every_change_to_the_local_view() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    let mut rooms = engine.subscribe(Filter::Collection {
        collection: "rooms".into(),
    });
    let mut one = engine.subscribe(Filter::Entity { key: room(2) });
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "clean"})))).unwrap();
    w.admin(room(3), f(json!({"status": "ooo"})));
    block_on(engine.sync_now()).unwrap();
    let mut changed = Vec::new();
    while let Ok(ev) = rooms.try_recv() {
        if let Event::Changed { key, entity } = ev {
            changed.push((key.id, entity.map(|e| e.fields["status"].clone())));
        }
    }
    assert!(changed.contains(&("room-2".into(), Some(json!("clean")))));
    assert!(changed.contains(&("room-3".into(), Some(json!("ooo")))));
    let mut only_two = true;
    while let Ok(ev) = one.try_recv() {
        if let Event::Changed { key, .. } = ev {
            only_two &= key == room(2);
        }
    }
    assert!(only_two);
}

#[test]
fn status_goes_stale_after_a_day_without_a_complete_pull() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    assert!(block_on(engine.status()).stale, "no snapshot yet");
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
    net.set_offline(true);
    w.env.advance(23 * 3_600_000);
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
    w.env.advance(2 * 3_600_000);
    let s = block_on(engine.status());
    assert!(s.stale);
    assert_eq!(s.code(), Some(ErrorCode::OfflinePrimerStale));
    assert!(s.drift_age_ms.unwrap() >= 25 * 3_600_000);
    net.set_offline(false);
    block_on(engine.set_online(true));
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
}

#[test]
fn reconcile_repairs_drift_without_touching_pending_mutations() {
    let w = World::new();
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    // Drift: the local copy of room-2 is corrupted to an old version and
    // room-3 vanished locally (say, a restored backup).
    let mut rec = block_on(store.get(&room(2))).unwrap().unwrap();
    rec.server.as_mut().unwrap().version = 0;
    let mut gone = block_on(store.get(&room(3))).unwrap().unwrap();
    gone.server = None;
    gone.view = None;
    block_on(store.commit(tidesync::store::WriteBatch {
        ops: vec![
            tidesync::store::WriteOp::PutEntity(rec),
            tidesync::store::WriteOp::DeleteEntity(gone.key.clone()),
        ],
    }))
    .unwrap();
    let runs = block_on(engine.metrics()).reconcile_runs;
    let r = block_on(engine.reconcile(Some(vec!["rooms".into()]))).unwrap();
    assert_eq!(r.pulled, 2, "{r:?}");
    assert_eq!(
        block_on(engine.outbox()).len(),
        1,
        "the pending patch is untouched"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-3"))
            .unwrap()
            .unwrap()
            .fields["floor"],
        3
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "clean"
    );
    assert_eq!(block_on(engine.metrics()).reconcile_runs, runs + 1);
    let again = block_on(engine.reconcile(Some(vec!["rooms".into()]))).unwrap();
    assert_eq!(again.pulled, 0);
}

#[test]
fn connection_hint_shrinks_batches() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    for i in 0..60 {
        block_on(engine.append("sales", Some(&format!("s{i}")), f(json!({"total": i})))).unwrap();
    }
    block_on(engine.set_connection_hint(ConnectionHint {
        save_data: false,
        effective_type: Some("slow-2g".into()),
    }));
    block_on(engine.push()).unwrap();
    let pushes = net.pushes.lock().unwrap();
    assert_eq!(pushes.last().unwrap().mutations.len(), 10);
}

#[test]
fn cursor_commits_with_the_changes_it_covers() {
    let w = World::new();
    let net = w.net("t1");
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    let before = block_on(engine.meta()).cursor;
    w.admin(room(1), f(json!({"status": "ooo"})));
    store.fail_nth_commit(1);
    assert!(block_on(engine.pull()).is_err());
    assert_eq!(
        block_on(engine.meta()).cursor,
        before,
        "no cursor without its changes"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "dirty"
    );
    block_on(engine.pull()).unwrap();
    assert!(block_on(engine.meta()).cursor > before);
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "ooo"
    );
}

struct RenameStatusToState;

impl tidesync::migrate::QueuedMigration for RenameStatusToState {
    fn upgrades_from(&self) -> u32 {
        1
    }
    fn migrate(&self, m: &Mutation) -> tidesync::migrate::MigrationOutcome {
        use tidesync::migrate::MigrationOutcome;
        match m.collection.as_str() {
            "rooms" => {
                let mut p = m.payload.clone().unwrap_or_default();
                if let Some(v) = p.remove("status") {
                    p.insert("state".into(), v);
                }
                MigrationOutcome::Rewrite(Some(p))
            }
            "incidents" => MigrationOutcome::Hold {
                code: ErrorCode::SchemaUnsupported,
                message: "incidents changed shape in schema 2: re-enter by hand".into(),
            },
            _ => MigrationOutcome::Keep,
        }
    }
}

#[test]
fn schema_migration_carries_queued_mutations_forward_and_never_drops_them() {
    let w = World::new();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "open"})),
    );
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    net.set_offline(true);
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.patch("incidents", "inc-1", f(json!({"state": "ack"})))).unwrap();
    block_on(engine.append("sales", Some("s1"), f(json!({"total": 5})))).unwrap();
    drop(engine);

    let mut config = w.config("t1");
    config.schema_version = 2;
    config.limits.schema_versions = (1, 2);
    let engine = block_on(Engine::open_with_migrations(
        store.clone(),
        net.clone(),
        w.env.clone(),
        config,
        vec![Box::new(RenameStatusToState)],
    ))
    .unwrap();
    assert_eq!(block_on(engine.meta()).schema_version, 2);
    let outbox = block_on(engine.outbox());
    assert_eq!(outbox.len(), 3, "nothing dropped");
    let room = outbox
        .iter()
        .find(|e| e.mutation.collection == "rooms")
        .unwrap();
    assert_eq!(room.mutation.payload.as_ref().unwrap()["state"], "clean");
    assert_eq!(room.mutation.schema_version, 2);
    let limits = Limits {
        schema_versions: (1, 2),
        ..Limits::default()
    };
    validate_mutation(&room.mutation, &limits).expect("checksum follows the new payload");
    let inc = outbox
        .iter()
        .find(|e| e.mutation.collection == "incidents")
        .unwrap();
    assert!(matches!(
        inc.state,
        OutboxState::DeadLetter {
            code: ErrorCode::SchemaUnsupported,
            ..
        }
    ));
    let sale = outbox
        .iter()
        .find(|e| e.mutation.collection == "sales")
        .unwrap();
    assert_eq!(sale.mutation.schema_version, 2);
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["state"],
        "clean",
        "the view follows the migrated payload"
    );
    drop(engine);
    // An older build refuses a newer store instead of misreading it.
    let err = block_on(Engine::open(store, net, w.env.clone(), w.config("t1"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::SchemaUnsupported);
}

#[test]
fn a_server_that_forgot_the_cursor_triggers_a_new_snapshot_and_keeps_pending_work() {
    let w = World::new();
    for k in 0..5 {
        w.admin(room(1), f(json!({"status": "dirty", "floor": 1, "n": k})));
    }
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.meta()).cursor.unwrap().0 > 4);
    drop(engine);
    // The server is restored from an older backup: same ids, a shorter log.
    let restored = World::new();
    let net = Net {
        server: restored.server.clone(),
        ..net
    };
    let engine = w.open(store, net, "t1");
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    let meta = block_on(engine.meta());
    assert_eq!(meta.snapshot, tidesync::store::SnapshotProgress::Done);
    assert!(
        meta.cursor.unwrap().0 <= 4,
        "cursor restarted from the restored log: {meta:?}"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields,
        f(json!({"status": "dirty", "notes": "", "floor": 1})),
        "state follows the restored server"
    );
    assert!(
        block_on(engine.outbox()).is_empty(),
        "the pending patch was pushed, not dropped"
    );
    assert_eq!(
        restored.server_state(&room(2)).unwrap().fields["status"],
        "clean"
    );
}

/// Native hosts run the engine on multi-threaded runtimes: its futures must be `Send`.
#[test]
fn engine_futures_are_send_on_native_targets() {
    fn assert_send<F: std::future::Future + Send>(_: F) {}
    let w = World::new();
    let engine = w.open(MemoryStore::new(), w.net("t1"), "t1");
    assert_send(engine.sync_now());
    assert_send(engine.patch("rooms", "room-1", Fields::new()));
    assert_send(engine.reconcile(None));
    assert_send(engine.resolve(&room(1), Resolution::Server));
}

/// Two tabs open engines on the same store (the browser adapter serialises
/// their calls with a Web Lock): neither overwrites the other's queue.
#[test]
fn two_engines_on_one_store_share_the_queue_without_losing_writes() {
    let w = World::new();
    let store = MemoryStore::new();
    let tab_a = w.open(store.clone(), w.net("t1"), "t1");
    block_on(tab_a.sync_now()).unwrap();
    let net_b = w.net("t1");
    net_b.set_offline(true);
    let tab_b = w.open(store.clone(), net_b, "t1");
    for i in 0..5 {
        block_on(tab_a.append("sales", Some(&format!("a{i}")), f(json!({"total": i})))).unwrap();
        block_on(tab_b.append("sales", Some(&format!("b{i}")), f(json!({"total": i})))).unwrap();
        block_on(tab_b.patch("rooms", "room-1", f(json!({"notes": format!("b{i}")})))).unwrap();
        block_on(tab_a.patch("rooms", "room-1", f(json!({"status": format!("a{i}")})))).unwrap();
    }
    assert_eq!(block_on(tab_a.outbox()).len(), 20);
    assert_eq!(block_on(tab_b.status()).pending, 20);
    // The leader tab syncs everything, the other sees the queue drain.
    block_on(tab_a.sync_now()).unwrap();
    assert!(block_on(tab_b.outbox()).is_empty());
    assert_eq!(w.applied_ops().len(), 20);
    let room = w.server_state(&room(1)).unwrap();
    assert_eq!(
        (room.fields["status"].clone(), room.fields["notes"].clone()),
        (json!("a4"), json!("b4"))
    );
    assert_eq!(
        block_on(tab_b.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields,
        room.fields
    );
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One global subscriber for this test binary (a scoped one races with the
/// callsite cache of tests running on other threads); each test reads the
/// lines of its own terminal.
fn captured_logs() -> LogBuffer {
    static BUFFER: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(buffer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            buffer
        })
        .clone()
}

#[test]
fn logs_carry_terminal_branch_event_attempt_and_code_but_no_payload() {
    let buffer = captured_logs();
    let w = World::new();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "open"})),
    );
    let net = w.net("tlog");
    let engine = w.open(MemoryStore::new(), net.clone(), "tlog");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch(
        "rooms",
        "room-1",
        f(json!({"guest": "Zoë Guestname", "status": "clean"})),
    ))
    .unwrap();
    for _ in 0..3 {
        net.then(Step::Fail(TransportError::Server {
            status: 503,
            message: "down".into(),
        }));
        block_on(engine.push()).unwrap();
        w.env.advance(5_000);
    }
    block_on(engine.patch(
        "incidents",
        "inc-1",
        f(json!({"state": "Zoë called twice"})),
    ))
    .unwrap();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "escalated"})),
    );
    block_on(engine.sync_now()).unwrap();
    let dead_op = block_on(engine.dead_letters())[0].mutation.op_id.clone();

    let all = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let logs: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("\"terminal_id\":\"tlog\""))
        .collect();
    let dead_line = logs
        .iter()
        .find(|l| l.contains("dead-letter"))
        .expect("a dead letter is logged");
    for needle in [
        "\"branch_id\":\"b1\"",
        &format!("\"event_id\":\"{dead_op}\""),
        "\"sync_attempt\":3",
        "\"error_code\":\"RETRIES_EXHAUSTED\"",
    ] {
        assert!(
            dead_line.contains(needle),
            "{needle} missing from {dead_line}"
        );
    }
    assert!(
        logs.iter()
            .any(|l| l.contains("\"error_code\":\"CONFLICT\"")),
        "conflicts are logged"
    );
    assert!(
        !all.contains("Zoë") && !all.contains("Guestname"),
        "payload data leaked into logs"
    );
}

#[test]
fn a_store_that_cannot_be_read_shows_as_an_error_status() {
    let w = World::new();
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), w.net("t1"), "t1");
    block_on(engine.sync_now()).unwrap();
    store.fail_reads(true);
    let err = block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap_err();
    assert_eq!(err.code, ErrorCode::StorageFailed);
    let status = block_on(engine.status());
    assert_eq!(status.phase, Phase::Error);
    assert_eq!(status.code(), Some(ErrorCode::StorageFailed));
    store.fail_reads(false);
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    assert_eq!(block_on(engine.status()).phase, Phase::Idle);
}
