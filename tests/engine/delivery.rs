//! Delivery: offline queues, lost answers, retries, rate limits, batch sizing.

use crate::common::*;

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
