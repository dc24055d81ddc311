//! The idempotency ledger is keyed by branch too.

use super::*;

/// One terminal name issued on two branches of one tenant, both sending
/// the same op id: each branch applies its own write (the ledger and the
/// in-flight set are keyed by branch too). Before, the second branch's
/// write was answered `duplicate` with the first branch's cursor and
/// silently dropped.
pub async fn the_same_terminal_and_op_id_on_two_branches_are_both_applied(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let k1 = s.key("b1", "till");
    let k2 = s.key("b2", "till");
    let push = |key: &str, m: tidesync::Mutation| {
        let req = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(key)
            .json(&push_request(vec![m]));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let r: PushResponse = resp.json().await.unwrap();
            r.acks[0].result.clone()
        }
    };
    let applied = |version, cursor| AckResult::Applied {
        version,
        cursor: Cursor(cursor),
    };
    // b1 gets a change first, so that its cursors and b2's differ.
    let first = create_room("b1", "till", 100, "r0", room(0));
    assert_eq!(push(&k1, first).await, applied(1, 1));
    let on_b1 = create_room("b1", "till", 1, "r1", room(1));
    let on_b2 = create_room("b2", "till", 1, "r1", room(1));
    assert_eq!(on_b1.op_id, on_b2.op_id);
    assert_eq!(on_b1.checksum, on_b2.checksum);
    assert_eq!(push(&k1, on_b1.clone()).await, applied(1, 2));
    assert_eq!(push(&k2, on_b2.clone()).await, applied(1, 1));

    let page = changes(&s, &k2).await;
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].id, "r1");
    // Retries are duplicates, each with its own branch's result.
    assert_eq!(
        push(&k1, on_b1).await,
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(2)
        }
    );
    assert_eq!(
        push(&k2, on_b2).await,
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(1)
        }
    );
    assert_eq!(s.app.service.metrics().applied, 3);

    // An op in flight on b1 does not hold up the same op id on b2.
    let busy = create_room("b1", "till", 7, "r7", room(7));
    let guard = s
        .app
        .in_flight
        .claim(&TerminalContext::new("acme", "b1", "till"), [&busy.op_id])
        .unwrap();
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k1)
        .json(&push_request(vec![busy]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let free = create_room("b2", "till", 7, "r7", room(7));
    assert_eq!(push(&k2, free).await, applied(1, 2));
    drop(guard);
    s.shutdown().await;
}
