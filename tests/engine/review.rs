//! On-device scoring of local writes and holding flagged ones for review
//! (issue 18): the score travels with the mutation to the server's audit, a
//! `hold_flagged` collection keeps a flagged write until a person releases
//! or discards it, and scoring never breaks a write's atomicity.

use crate::common::*;
use tidesync::scoring::{ReviewPolicy, Score, ScoreError, ScoreInput, Scorer, WriteOptions};
use tidesync::store::HoldReason;

/// Scores a change of a room's `rate`: a new rate at or above 1,000 is
/// flagged. Other
/// collections are not scored. `fail` makes every call fail.
struct RateScorer {
    fail: bool,
    seen: Mutex<Vec<Seen>>,
}

/// One scored write: the entity and its rate before and after.
type Seen = (String, Option<Value>, Option<Value>);

impl RateScorer {
    fn new(fail: bool) -> Arc<RateScorer> {
        Arc::new(RateScorer {
            fail,
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl Scorer for RateScorer {
    fn model(&self) -> &str {
        "5eed"
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError> {
        if self.fail {
            return Err(ScoreError {
                code: "MODEL_CORRUPT".into(),
            });
        }
        if input.collection != "rooms" {
            return Ok(None);
        }
        self.seen.lock().unwrap().push((
            input.entity_id.to_string(),
            input.before.and_then(|f| f.get("rate").cloned()),
            input.after.and_then(|f| f.get("rate").cloned()),
        ));
        // The change is scored, not the entity: a write that leaves the
        // rate alone scores 0 even on a room whose rate is odd.
        let before = input.before.and_then(|f| f.get("rate"));
        let after = input.after.and_then(|f| f.get("rate"));
        let rate = if before == after {
            0.0
        } else {
            after.and_then(Value::as_f64).unwrap_or(0.0)
        };
        Ok(Some(Score {
            score: rate / 1_000.0,
            flagged: rate >= 1_000.0,
        }))
    }
}

fn hold_rooms(c: EngineConfig) -> EngineConfig {
    let mut c = c;
    c.review.insert("rooms".into(), ReviewPolicy::HoldFlagged);
    c
}

fn open_holding(w: &World, net: Net) -> Engine<MemoryStore, Net, SimEnv> {
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        net,
        w.env.clone(),
        hold_rooms(w.config("t1")),
    ))
    .unwrap();
    engine.set_scorer(Some(RateScorer::new(false)));
    engine
}

fn server_audit(w: &World) -> Vec<tidesync_server::storage::AuditRow> {
    use tidesync_server::ServerStore;
    w.server
        .store()
        .audit(&Partition::new("hotel", "b1"))
        .unwrap()
}

fn events_of(engine: &Engine<MemoryStore, Net, SimEnv>, op: &OpId) -> Vec<AuditEvent> {
    block_on(engine.audit(0, usize::MAX))
        .unwrap()
        .into_iter()
        .filter(|a| a.op_id.as_ref() == Some(op))
        .map(|a| a.event)
        .collect()
}

#[test]
fn a_flagged_write_is_held_until_released_and_then_sent_once_with_its_score() {
    let w = World::new();
    let engine = open_holding(&w, w.net("t1"));
    block_on(engine.sync_now()).unwrap();
    // Normal: scored, sent, and the server keeps the score.
    block_on(engine.patch("rooms", "room-1", f(json!({"rate": 120})))).unwrap();
    // A typo (an extra zero… or three): flagged and held.
    let v = block_on(engine.patch("rooms", "room-2", f(json!({"rate": 12_000})))).unwrap();
    assert_eq!(v.fields["rate"], 12_000, "the local view shows the change");
    assert_eq!(v.pending, 0, "a held write is not pending");
    // A later change of the same room waits behind it; another room goes.
    block_on(engine.patch("rooms", "room-2", f(json!({"notes": "vip"})))).unwrap();
    block_on(engine.patch("rooms", "room-3", f(json!({"status": "clean"})))).unwrap();
    let st = block_on(engine.status());
    assert_eq!((st.held, st.pending, st.dead_letters), (1, 3, 0));
    let held = block_on(engine.held());
    assert_eq!(held.len(), 1);
    assert!(matches!(
        held[0].state,
        OutboxState::Held {
            reason: HoldReason::Flagged,
            ..
        }
    ));
    let a = held[0].mutation.anomaly.clone().expect("scored");
    assert_eq!((a.score, a.flagged, a.model.as_str()), (12.0, true, "5eed"));

    block_on(engine.sync_now()).unwrap();
    assert_eq!(w.server_state(&room(1)).unwrap().fields["rate"], 120);
    assert_eq!(w.server_state(&room(3)).unwrap().fields["status"], "clean");
    let room2 = w.server_state(&room(2)).unwrap();
    assert!(room2.fields.get("rate").is_none(), "held: never sent");
    assert_eq!(room2.fields["notes"], "", "queued behind the held one");
    let st = block_on(engine.status());
    assert_eq!((st.held, st.pending), (1, 1));
    let audit = server_audit(&w);
    let sent = audit
        .iter()
        .find(|r| r.key == room(1) && r.op_id.is_some())
        .and_then(|r| r.anomaly.clone())
        .expect("the server keeps the score");
    assert_eq!((sent.score, sent.flagged), (0.12, false));
    // Rooms without a rate change are scored too (0): the scorer saw the
    // entity before and after each write.
    assert!(audit.iter().any(|r| r.key == room(3)
        && r.op_id.is_some()
        && r.anomaly.as_ref().is_some_and(|a| a.score == 0.0)));

    // A person releases it: both room-2 changes land, in order, once.
    let op = held[0].mutation.op_id.clone();
    block_on(engine.release(held[0].seq)).unwrap();
    assert_eq!(block_on(engine.status()).held, 0);
    block_on(engine.sync_now()).unwrap();
    let room2 = w.server_state(&room(2)).unwrap();
    assert_eq!(
        (room2.fields["rate"].clone(), room2.fields["notes"].clone()),
        (json!(12_000), json!("vip"))
    );
    assert!(block_on(engine.outbox()).is_empty());
    let flagged = server_audit(&w)
        .into_iter()
        .filter(|r| r.op_id.as_ref() == Some(&op))
        .collect::<Vec<_>>();
    assert_eq!(flagged.len(), 1, "applied once");
    assert!(flagged[0].anomaly.as_ref().is_some_and(|a| a.flagged));
    let events = events_of(&engine, &op);
    assert!(matches!(events[0], AuditEvent::Queued));
    assert!(matches!(&events[1], AuditEvent::Scored { anomaly } if anomaly.flagged));
    assert!(matches!(
        events[2],
        AuditEvent::Held {
            reason: HoldReason::Flagged
        }
    ));
    assert!(events.contains(&AuditEvent::Released));
    assert!(matches!(events.last(), Some(AuditEvent::Applied { .. })));
    // Releasing what is not held is NOT_FOUND.
    let err = block_on(engine.release(held[0].seq)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[test]
fn a_discarded_held_write_is_never_sent_and_the_view_drops_it() {
    let w = World::new();
    let engine = open_holding(&w, w.net("t1"));
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"rate": 99_999})))).unwrap();
    let held = block_on(engine.held());
    assert_eq!(held.len(), 1);
    block_on(engine.discard(held[0].seq)).unwrap();
    let v = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert!(
        v.fields.get("rate").is_none(),
        "the view is replayed without it"
    );
    block_on(engine.sync_now()).unwrap();
    assert!(w
        .server_state(&room(1))
        .unwrap()
        .fields
        .get("rate")
        .is_none());
    assert!(
        server_audit(&w).iter().all(|r| r.op_id.is_none()),
        "nothing was sent"
    );
    assert!(events_of(&engine, &held[0].mutation.op_id).contains(&AuditEvent::Discarded));
    assert_eq!(block_on(engine.status()).held, 0);
    // discard_all is for dead letters: a held write stays until a person
    // looks at it.
    block_on(engine.patch("rooms", "room-2", f(json!({"rate": 5_000})))).unwrap();
    assert_eq!(block_on(engine.discard_all()).unwrap(), 0);
    assert_eq!(block_on(engine.held()).len(), 1);
}

#[test]
fn write_options_hold_or_send_whatever_the_score() {
    let w = World::new();
    let engine = open_holding(&w, w.net("t1"));
    block_on(engine.sync_now()).unwrap();
    let hold = WriteOptions { hold: Some(true) };
    let send = WriteOptions { hold: Some(false) };
    // Held on request, even unscored (tasks are not scored).
    block_on(engine.create_with("tasks", Some("t-1"), f(json!({"title": "x"})), &hold)).unwrap();
    // Flagged but sent: the flag still travels.
    block_on(engine.patch_with("rooms", "room-1", f(json!({"rate": 50_000})), &send)).unwrap();
    let held = block_on(engine.held());
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].mutation.entity_id, "t-1");
    assert!(held[0].mutation.anomaly.is_none());
    assert!(matches!(
        held[0].state,
        OutboxState::Held {
            reason: HoldReason::Requested,
            ..
        }
    ));
    block_on(engine.sync_now()).unwrap();
    assert_eq!(w.server_state(&room(1)).unwrap().fields["rate"], 50_000);
    assert!(server_audit(&w)
        .iter()
        .any(|r| r.key == room(1) && r.anomaly.as_ref().is_some_and(|a| a.flagged)));
    assert!(w.server_state(&EntityKey::new("tasks", "t-1")).is_none());
    // Unknown options are refused by the bindings' decoder.
    let bad: Result<WriteOptions, _> = serde_json::from_value(json!({"hodl": true}));
    assert!(bad.is_err());
    // Without a scorer nothing is scored or held, under any policy.
    engine.set_scorer(None);
    block_on(engine.patch("rooms", "room-2", f(json!({"rate": 70_000})))).unwrap();
    assert_eq!(block_on(engine.held()).len(), 1);
    let last = block_on(engine.outbox()).into_iter().last().unwrap();
    assert!(last.mutation.anomaly.is_none());
}

#[test]
fn a_failing_scorer_leaves_the_write_unscored_and_audited() {
    let w = World::new();
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        w.net("t1"),
        w.env.clone(),
        hold_rooms(w.config("t1")),
    ))
    .unwrap();
    engine.set_scorer(Some(RateScorer::new(true)));
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"rate": 90_000})))).unwrap();
    let out = block_on(engine.outbox());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, OutboxState::Pending, "no score, no hold");
    assert!(out[0].mutation.anomaly.is_none());
    assert!(
        events_of(&engine, &out[0].mutation.op_id).contains(&AuditEvent::ScoreFailed {
            code: "MODEL_CORRUPT".into()
        })
    );
    block_on(engine.sync_now()).unwrap();
    assert_eq!(w.server_state(&room(1)).unwrap().fields["rate"], 90_000);
}

/// Answers what it is given: a score and a model id, valid or not.
struct Fixed(f64, &'static str);
impl Scorer for Fixed {
    fn model(&self) -> &str {
        self.1
    }
    fn score(&self, _: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError> {
        Ok(Some(Score {
            score: self.0,
            flagged: true,
        }))
    }
}

#[test]
fn an_invalid_score_or_model_id_leaves_the_write_unscored_and_sent() {
    let w = World::new();
    let engine = open_holding(&w, w.net("t1"));
    block_on(engine.sync_now()).unwrap();
    for (i, (score, model)) in [
        (f64::NAN, "ab"),
        (-1.0, "ab"),
        (f64::INFINITY, "ab"),
        (1.0, "AB"),
        (1.0, ""),
        (1.0, "model-v2"),
    ]
    .into_iter()
    .enumerate()
    {
        engine.set_scorer(Some(Arc::new(Fixed(score, model))));
        let id = format!("room-{}", i % 3 + 1);
        block_on(engine.patch("rooms", &id, f(json!({"notes": format!("n{i}")})))).unwrap();
        let last = block_on(engine.outbox()).pop().unwrap();
        assert_eq!(
            last.state,
            OutboxState::Pending,
            "{score} {model:?}: not held"
        );
        assert!(last.mutation.anomaly.is_none());
        assert!(
            events_of(&engine, &last.mutation.op_id).contains(&AuditEvent::ScoreFailed {
                code: "SCORE_INVALID".into()
            })
        );
    }
    block_on(engine.sync_now()).unwrap();
    let st = block_on(engine.status());
    assert_eq!(
        (st.pending, st.dead_letters, st.held),
        (0, 0, 0),
        "the server took them all"
    );
}

#[test]
fn a_scored_and_held_write_commits_whole_whichever_commit_fails() {
    every_commit(hold_rooms, |rig| {
        rig.engine.set_scorer(Some(RateScorer::new(false)));
        block_on(rig.engine.sync_now()).unwrap();
        rig.arm();
        let a = rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-1",
            f(json!({"rate": 40_000})),
        )));
        let b = rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-2",
            f(json!({"rate": 80})),
        )));
        rig.assert_accounted();
        // Held with its score and audit, or not there at all.
        let held = block_on(rig.engine.held());
        assert_eq!(held.len(), usize::from(a.is_some()));
        let audit = block_on(rig.engine.audit(0, usize::MAX)).unwrap();
        for e in &held {
            let evs: Vec<&AuditEvent> = audit
                .iter()
                .filter(|x| x.op_id.as_ref() == Some(&e.mutation.op_id))
                .map(|x| &x.event)
                .collect();
            assert_eq!(evs.len(), 3, "queued, scored, held: {evs:?}");
            assert!(e.mutation.anomaly.as_ref().is_some_and(|s| s.flagged));
        }
        let pending = block_on(rig.engine.status()).pending;
        assert_eq!(pending, usize::from(b.is_some()));
        rig.tolerate(block_on(rig.engine.sync_now()));
        for e in &held {
            rig.tolerate(block_on(rig.engine.release(e.seq)));
        }
        rig.disarm();
        rig.recover();
        rig.assert_accounted();
        rig.assert_converged("rooms");
    });
}

/// Renames `status` to `state` in rooms (schema 1 to 2).
struct RenameStatus;
impl tidesync::migrate::QueuedMigration for RenameStatus {
    fn upgrades_from(&self) -> u32 {
        1
    }
    fn migrate(&self, m: &Mutation) -> tidesync::migrate::MigrationOutcome {
        let mut p = m.payload.clone().unwrap_or_default();
        if let Some(v) = p.remove("status") {
            p.insert("state".into(), v);
        }
        tidesync::migrate::MigrationOutcome::Rewrite(Some(p))
    }
}

#[test]
fn a_schema_migration_carries_a_held_write_forward_and_keeps_it_held() {
    let w = World::new();
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    let hold = WriteOptions { hold: Some(true) };
    block_on(engine.patch_with("rooms", "room-1", f(json!({"status": "clean"})), &hold)).unwrap();
    drop(engine);

    let mut config = w.config("t1");
    config.schema_version = 2;
    config.limits.schema_versions = (1, 2);
    let engine = block_on(Engine::open_with_migrations(
        store,
        net,
        w.env.clone(),
        config,
        vec![Box::new(RenameStatus)],
    ))
    .unwrap();
    let held = block_on(engine.held());
    assert_eq!(held.len(), 1, "still held after the upgrade");
    assert!(matches!(
        held[0].state,
        OutboxState::Held {
            reason: HoldReason::Requested,
            ..
        }
    ));
    assert_eq!(held[0].mutation.schema_version, 2);
    assert_eq!(held[0].mutation.payload.as_ref().unwrap()["state"], "clean");
    let limits = Limits {
        schema_versions: (1, 2),
        ..Limits::default()
    };
    validate_mutation(&held[0].mutation, &limits).expect("checksum follows the new payload");
}
