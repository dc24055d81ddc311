//! Failures a person sees: dead letters, rejections, failed commits, an unreadable store.

use crate::common::*;

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
fn a_failed_commit_leaves_nothing_behind_and_the_engine_recovers() {
    let w = World::new();
    let net = w.net("t1");
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    store.fail_nth_commit(1);
    let err = block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StorageFailed);
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
        block_on(engine.push()).unwrap_err().code(),
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
fn a_store_that_cannot_be_read_shows_as_an_error_status() {
    let w = World::new();
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), w.net("t1"), "t1");
    block_on(engine.sync_now()).unwrap();
    store.fail_reads(true);
    let err = block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap_err();
    // The store's own kind survives: the host can tell a vanished database.
    assert_eq!(err.code(), ErrorCode::StoreGone);
    assert!(
        matches!(err, EngineError::Store(StoreError::Gone(_))),
        "{err:?}"
    );
    let status = block_on(engine.status());
    assert_eq!(status.phase, Phase::Error);
    assert_eq!(status.code(), Some(ErrorCode::StoreGone));
    store.fail_reads(false);
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    assert_eq!(block_on(engine.status()).phase, Phase::Idle);
}

#[test]
fn no_server_while_online_is_an_error_not_offline_and_keeps_the_queue() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    // More failures than max_attempts: none of them counts.
    for _ in 0..8 {
        net.then(Step::Fail(TransportError::NoServer(
            "the server refused the cross-origin request or could not be reached".into(),
        )));
        let report = block_on(engine.push()).unwrap();
        assert_eq!(report.error, Some(ErrorCode::SyncUnreachable));
        w.env.advance(60_000);
    }
    let status = block_on(engine.status());
    assert_eq!(status.phase, Phase::Error, "{status:?}");
    let (code, message) = status.last_error.clone().unwrap();
    assert_eq!(code, ErrorCode::SyncUnreachable);
    assert!(message.starts_with("the server refused"), "{message}");
    let outbox = block_on(engine.outbox());
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].attempts, 0, "no attempt counted");
    assert!(block_on(engine.dead_letters()).is_empty());
    // The server is reachable again: the queued write lands once.
    block_on(engine.sync_now()).unwrap();
    assert_eq!(w.server_state(&room(1)).unwrap().fields["status"], "clean");
    assert!(block_on(engine.outbox()).is_empty());
    assert_ne!(block_on(engine.status()).phase, Phase::Error);
}

#[test]
fn new_credentials_clear_the_old_error_in_the_status_at_once() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    net.then(Step::Fail(TransportError::Unauthorized {
        code: ErrorCode::SyncUnauthorized,
        message: "revoked".into(),
    }));
    let report = block_on(engine.sync_now()).unwrap();
    assert_eq!(report.error, Some(ErrorCode::SyncUnauthorized));
    let mut statuses = engine.subscribe(tidesync::status::Filter::All);
    block_on(engine.credentials_changed());
    // The pill hears it without waiting for the next commit or sync.
    let mut heard = None;
    while let Ok(ev) = statuses.try_recv() {
        if let tidesync::Event::Status { status } = ev {
            heard = Some(status);
        }
    }
    let status = heard.expect("a status event at once");
    assert_eq!(status.last_error, None, "{status:?}");
    assert_ne!(status.phase, Phase::Error);
}

/// The last view of `key` a subscriber was sent, if any.
fn last_view(
    sub: &mut Subscription,
    key: &EntityKey,
) -> Option<Option<tidesync::store::LocalEntity>> {
    let mut last = None;
    while let Ok(ev) = sub.try_recv() {
        if let Event::Changed { key: k, entity } = ev {
            if &k == key {
                last = Some(entity);
            }
        }
    }
    last
}

#[test]
fn pending_means_the_same_in_the_view_and_the_status() {
    // One definition: the mutations waiting to be sent. A dead letter and an
    // open conflict's mutations wait for a person instead, and each move
    // between those states rewrites the view and tells subscribers.
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    let key = room(1);
    let mut sub = engine.subscribe(Filter::All);
    let pending = |e: &Engine<MemoryStore, Net, SimEnv>| {
        let view = block_on(e.get("rooms", "room-1")).unwrap().unwrap();
        (view.pending, block_on(e.status()).pending)
    };
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"notes": "towels"})))).unwrap();
    assert_eq!(pending(&engine), (2, 2));
    // The server refuses the head: the whole chain waits behind it, and
    // only the second mutation is still pending.
    net.then(Step::Fail(TransportError::Refused {
        code: ErrorCode::EventInvalid,
        message: "payload.status: not allowed".into(),
    }));
    last_view(&mut sub, &key);
    block_on(engine.push()).unwrap();
    let dead = block_on(engine.dead_letters());
    assert_eq!(dead.len(), 1);
    assert_eq!(pending(&engine), (1, 1));
    let sent = last_view(&mut sub, &key).expect("dead-lettering announces the view");
    assert_eq!(sent.map(|v| v.pending), Some(1));
    // Retry puts it back.
    block_on(engine.retry(dead[0].seq)).unwrap();
    assert_eq!(pending(&engine), (2, 2));
    assert_eq!(
        last_view(&mut sub, &key).flatten().map(|v| v.pending),
        Some(2)
    );
    // retry_all and discard_all after another refusal.
    net.then(Step::Fail(TransportError::Refused {
        code: ErrorCode::EventInvalid,
        message: "payload.status: not allowed".into(),
    }));
    block_on(engine.push()).unwrap();
    assert_eq!(pending(&engine), (1, 1));
    assert_eq!(block_on(engine.retry_all()).unwrap(), 1);
    assert_eq!(pending(&engine), (2, 2));
    assert_eq!(
        last_view(&mut sub, &key).flatten().map(|v| v.pending),
        Some(2)
    );
    net.then(Step::Fail(TransportError::Refused {
        code: ErrorCode::EventInvalid,
        message: "payload.status: not allowed".into(),
    }));
    block_on(engine.push()).unwrap();
    assert_eq!(block_on(engine.discard_all()).unwrap(), 1);
    let view = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert_eq!(
        (view.pending, view.fields.get("status")),
        (1, Some(&json!("dirty")))
    );
    assert_eq!(block_on(engine.status()).pending, 1);
    block_on(engine.sync_now()).unwrap();
    assert_eq!(pending(&engine), (0, 0));
}
