//! Engines that share a store (tabs), and Send futures for native hosts.

use crate::common::*;

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
