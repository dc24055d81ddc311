//! The scorer in a tidesync engine: a room typo is flagged and held for
//! review, a normal write is scored and queued, and every score carries the
//! model's id. The engine runs offline (nothing is sent): what is checked
//! is what the engine queues and audits.

mod common;

use common::*;
use futures::executor::block_on;
use serde_json::{json, Value};
use std::sync::Arc;
use tidesync::env::SimEnv;
use tidesync::scoring::ReviewPolicy;
use tidesync::store::{AuditEvent, HoldReason, OutboxState};
use tidesync::*;

/// A network that is never there.
struct Offline;

fn cable_out<T>() -> Result<T, TransportError> {
    Err(TransportError::Unreachable("cable out".into()))
}

#[async_trait::async_trait]
impl Transport for Offline {
    async fn push(&self, _: PushRequest) -> Result<PushResponse, TransportError> {
        cable_out()
    }
    async fn changes(&self, _: ChangesRequest) -> Result<ChangesPage, TransportError> {
        cable_out()
    }
    async fn snapshot(&self, _: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        cable_out()
    }
    async fn reconcile(&self, _: ReconcileRequest) -> Result<ReconcileResponse, TransportError> {
        cable_out()
    }
}

/// 2026-01-01 10:00 UTC.
const T10: u64 = 1_767_225_600_000 + 10 * 3_600_000;

fn f(v: Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn open() -> Engine<MemoryStore, Offline, SimEnv> {
    let mut config = EngineConfig::new("client-t1", "t1", "b1")
        .with_policy("rooms", ConflictPolicy::MergeThreeWay)
        .with_policy("sales", ConflictPolicy::AppendOnly);
    config
        .review
        .insert("rooms".into(), ReviewPolicy::HoldFlagged);
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        Offline,
        SimEnv::new(T10, 7),
        config,
    ))
    .unwrap();
    engine.set_scorer(Some(Arc::new(scorer())));
    engine
}

#[test]
fn in_the_engine_a_rate_typo_is_held_and_normal_writes_are_queued_with_their_scores() {
    let engine = open();
    // New rooms are created clean (a room created occupied is itself unusual).
    let room = json!({"status": "clean", "rate": 120, "floor": 2, "notes": ""});
    block_on(engine.create("rooms", Some("room-1"), f(room.clone()))).unwrap();
    block_on(engine.create("rooms", Some("room-2"), f(room))).unwrap();
    // Normal: a check-in, a small rate change, a checkout, a lunch sale.
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "occupied"})))).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"rate": 125})))).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "dirty"})))).unwrap();
    block_on(engine.append(
        "sales",
        Some("sale-1"),
        f(json!({"total": 42.5, "items": 3, "discount": 0})),
    ))
    .unwrap();
    // A typo: 12,000 for 120.
    block_on(engine.patch("rooms", "room-2", f(json!({"rate": 12000})))).unwrap();

    let held = block_on(engine.held());
    assert_eq!(held.len(), 1, "only the typo is held");
    assert_eq!(held[0].mutation.entity_id, "room-2");
    assert!(matches!(
        held[0].state,
        OutboxState::Held {
            reason: HoldReason::Flagged,
            ..
        }
    ));
    let a = held[0].mutation.anomaly.clone().expect("scored");
    assert!(a.flagged && a.score > 100.0, "{a:?}");
    assert_eq!(a.model, &sha()[..16]);

    let outbox = block_on(engine.outbox());
    let scored: Vec<_> = outbox
        .iter()
        .filter_map(|e| e.mutation.anomaly.as_ref())
        .collect();
    assert_eq!(scored.len(), outbox.len(), "rooms and sales are all scored");
    assert_eq!(scored.iter().filter(|a| a.flagged).count(), 1);
    let audit = block_on(engine.audit(0, usize::MAX)).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| matches!(e.event, AuditEvent::Scored { .. }))
            .count(),
        outbox.len()
    );
    assert!(!audit
        .iter()
        .any(|e| matches!(e.event, AuditEvent::ScoreFailed { .. })));
}

#[test]
fn in_the_engine_other_collections_are_not_scored() {
    let engine = open();
    block_on(engine.create("tasks", Some("t-1"), f(json!({"title": "fix the tap"})))).unwrap();
    let outbox = block_on(engine.outbox());
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].mutation.anomaly.is_none());
}
