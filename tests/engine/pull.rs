//! Pull, cursor, staleness and reconcile.

use crate::common::*;

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
