//! What a person does with dead letters beyond one retry: edit and retry
//! under a new op id, retry or discard them all.

use crate::common::*;

/// Dead-letters room `id`'s next push (three server errors).
fn dead_letter(w: &World, net: &Net, engine: &Engine<MemoryStore, Net, SimEnv>) {
    for _ in 0..3 {
        net.then(Step::Fail(TransportError::Server {
            status: 503,
            message: "down".into(),
        }));
        block_on(engine.push()).unwrap();
        w.env.advance(5_000);
    }
}

#[test]
fn an_edited_dead_letter_goes_out_under_a_new_op_id_and_the_old_one_is_audited() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    dead_letter(&w, &net, &engine);
    let dead = block_on(engine.dead_letters());
    assert_eq!(dead.len(), 1);
    let old = dead[0].mutation.op_id.clone();
    // A delete carries no payload; a patch needs one.
    let err = block_on(engine.retry_edited(dead[0].seq, None)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadArgument);
    block_on(engine.retry_edited(
        dead[0].seq,
        Some(f(json!({"status": "inspected", "notes": "fixed by hand"}))),
    ))
    .unwrap();
    let view = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert_eq!(
        view.fields["status"], "inspected",
        "the view shows the edit at once"
    );
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.outbox()).is_empty());
    let applied = w.applied_ops();
    assert_eq!(applied.len(), 1, "one mutation reached the server");
    assert_ne!(applied[0], old, "under a new op id");
    assert_eq!(
        w.server_state(&room(1)).unwrap().fields["status"],
        "inspected"
    );
    let audit = block_on(engine.audit(0, 1000)).unwrap();
    assert!(audit.iter().any(|a| a.op_id.as_ref() == Some(&old)
        && a.event
            == AuditEvent::ReplacedBy {
                op_id: applied[0].clone()
            }));
    assert!(audit
        .iter()
        .any(|a| a.op_id.as_ref() == Some(&applied[0]) && a.event == AuditEvent::Queued));
}

#[test]
fn retry_all_and_discard_all_settle_every_dead_letter_in_one_go() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "clean"})))).unwrap();
    dead_letter(&w, &net, &engine);
    assert_eq!(block_on(engine.dead_letters()).len(), 2);
    assert_eq!(block_on(engine.retry_all()).unwrap(), 2);
    assert_eq!(block_on(engine.status()).dead_letters, 0);
    dead_letter(&w, &net, &engine);
    assert_eq!(block_on(engine.dead_letters()).len(), 2);
    assert_eq!(block_on(engine.discard_all()).unwrap(), 2);
    assert!(block_on(engine.outbox()).is_empty());
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "dirty",
        "the views are replayed without the discarded changes"
    );
    let discarded = block_on(engine.audit(0, 1000))
        .unwrap()
        .into_iter()
        .filter(|a| a.event == AuditEvent::Discarded)
        .count();
    assert_eq!(discarded, 2);
    block_on(engine.sync_now()).unwrap();
    assert!(
        w.applied_ops().is_empty(),
        "nothing discarded reached the server"
    );
}
