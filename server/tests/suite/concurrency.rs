//! Several threads pushing into one partition through one shared service.

use std::sync::Arc;
use std::thread;

use crate::common::*;
use serde_json::json;
use tidesync::{AckResult, Cursor, EntityKey, MutationKind};
use tidesync_server::ServerStore;

#[test]
fn service_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Service>();
}

#[test]
fn concurrent_writers_keep_cursors_dense_and_apply_each_op_once() {
    let s = Arc::new(service());
    let p = ctx("b1", "x").partition();
    // Shared entities, created up front.
    let setup = ctx("b1", "setup");
    for e in 0..3 {
        let m = mutation(
            &setup,
            op_id(10_000 + e),
            MutationKind::Create,
            "rooms",
            &format!("e{e}"),
            Some(json!({"n": 0})),
            0,
        );
        assert!(matches!(push1(&s, &setup, m), AckResult::Applied { .. }));
    }
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let c = ctx("b1", &format!("t{t}"));
                let mut applied = 0;
                for i in 0..50u64 {
                    let id = format!("e{}", (t + i) % 3);
                    let op_id = op_id(t * 1000 + i + 1);
                    let mut base = 1;
                    // Rebase and resend the same op id until it applies; replay it once more.
                    loop {
                        let m = mutation(
                            &c,
                            op_id.clone(),
                            MutationKind::Patch,
                            "rooms",
                            &id,
                            Some(json!({ "by": t, "i": i })),
                            base,
                        );
                        match push1(&s, &c, m.clone()) {
                            AckResult::Applied { version, cursor } => {
                                let again = push1(&s, &c, m);
                                assert_eq!(again, AckResult::Duplicate { version, cursor });
                                applied += 1;
                                break;
                            }
                            AckResult::Conflict { server } => base = server.unwrap().version,
                            other => panic!("{other:?}"),
                        }
                    }
                }
                applied
            })
        })
        .collect();
    let applied: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(applied, 200);
    let head = s.store().head(&p).unwrap();
    assert_eq!(head, Cursor(203));
    let log = s.store().changes(&p, Cursor(0), usize::MAX).unwrap();
    assert!(log
        .iter()
        .enumerate()
        .all(|(i, c)| c.cursor == Cursor(i as u64 + 1)));
    let total: u64 = (0..3)
        .map(|e| {
            s.store()
                .transaction(&p, |tx| {
                    tx.entity(&EntityKey::new("rooms", format!("e{e}")))
                })
                .unwrap()
                .unwrap()
                .state
                .version
        })
        .sum();
    assert_eq!(total, 203, "versions count every applied mutation");
    assert_eq!(s.store().audit(&p).unwrap().len(), 203);
    assert_eq!(s.metrics().applied, 203);
}
