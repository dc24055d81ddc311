//! What each conflict policy does when a change meets a newer server state.

use crate::common::*;

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
    assert_eq!(err.code(), ErrorCode::InvalidState);
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
    assert_eq!(e.code(), ErrorCode::PolicyViolation);
    let e = block_on(engine.append("rooms", None, f(json!({})))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PolicyViolation);
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
