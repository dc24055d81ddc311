//! Changes and snapshot: paging, cursors, branch scoping.

use std::collections::BTreeMap;

use crate::common::*;
use serde_json::json;
use tidesync::{
    ChangesRequest, Cursor, EntityKey, EntityState, ErrorCode, MutationKind::*, SnapshotRequest,
};

#[test]
fn empty_log_pages_are_empty() {
    let s = service();
    let c = ctx("b1", "t1");
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 10,
            },
        )
        .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!((page.next, page.has_more), (Cursor(0), false));
    let snap = s
        .snapshot(
            &c,
            SnapshotRequest {
                after: None,
                limit: 10,
            },
        )
        .unwrap();
    assert!(snap.entities.is_empty());
    assert_eq!((snap.at, snap.next), (Cursor(0), None));
}

#[test]
fn changes_carry_full_states_in_cursor_order() {
    let s = service();
    let c = ctx("b1", "t1");
    push1(
        &s,
        &c,
        mutation(
            &c,
            op_id(1),
            Create,
            "rooms",
            "a",
            Some(json!({"x": 1, "y": 1})),
            0,
        ),
    );
    push1(
        &s,
        &c,
        mutation(
            &c,
            op_id(2),
            Patch,
            "rooms",
            "a",
            Some(json!({"y": null, "z": 2})),
            1,
        ),
    );
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(page.changes.len(), 2);
    assert_eq!(page.changes[1].fields, fields(json!({"x": 1, "z": 2})));
    assert_eq!(page.changes[1].version, 2);
    assert_eq!(page.changes[1].last_op, Some(op_id(2)));
    assert_eq!((page.next, page.has_more), (Cursor(2), false));
    let rest = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(1),
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(rest.changes, page.changes[1..]);
}

#[test]
fn paging_with_interleaved_pushes_never_skips_or_repeats() {
    let s = service();
    let c = ctx("b1", "t1");
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut since = Cursor(0);
    let mut n = 0u64;
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut pushed = 0;
    for round in 0..40u64 {
        // Push 0..=3 changes, then read one small page.
        for _ in 0..(round % 4) {
            n += 1;
            let id = format!("e{}", n % 5);
            let base = versions.get(&id).copied().unwrap_or(0);
            let (kind, payload) = if base == 0 {
                (Create, json!({"n": n}))
            } else {
                (Patch, json!({"n": n}))
            };
            let ack = push1(
                &s,
                &c,
                mutation(&c, op_id(n), kind, "rooms", &id, Some(payload), base),
            );
            assert!(
                matches!(ack, tidesync::AckResult::Applied { .. }),
                "{ack:?}"
            );
            versions.insert(id, base + 1);
            pushed += 1;
        }
        let page = s.changes(&c, ChangesRequest { since, limit: 2 }).unwrap();
        assert!(page.changes.len() <= 2);
        assert!(page.next >= since, "cursor went backwards");
        assert_eq!(page.next.0, since.0 + page.changes.len() as u64);
        seen.extend(page.changes.iter().map(|e| (e.id.clone(), e.version)));
        since = page.next;
    }
    // Drain.
    loop {
        let page = s.changes(&c, ChangesRequest { since, limit: 3 }).unwrap();
        seen.extend(page.changes.iter().map(|e| (e.id.clone(), e.version)));
        since = page.next;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen.len(), pushed, "every change exactly once");
    assert_eq!(since, s.head(&c).unwrap());
    // Per entity, versions arrive 1, 2, 3, ... with no gap or repeat.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (id, v) in seen {
        let prev = last.insert(id.clone(), v).unwrap_or(0);
        assert_eq!(v, prev + 1, "{id}");
    }
    assert_eq!(last, versions);
}

#[test]
fn cursors_are_strictly_increasing_and_has_more_is_exact() {
    let s = service();
    let c = ctx("b1", "t1");
    let mut last = Cursor(0);
    for i in 1..=6 {
        let ack = push1(
            &s,
            &c,
            mutation(
                &c,
                op_id(i),
                Create,
                "rooms",
                &format!("e{i}"),
                Some(json!({})),
                0,
            ),
        );
        let tidesync::AckResult::Applied { cursor, .. } = ack else {
            panic!("{ack:?}")
        };
        assert!(cursor > last);
        last = cursor;
    }
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 6,
            },
        )
        .unwrap();
    assert_eq!((page.changes.len(), page.has_more), (6, false));
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 5,
            },
        )
        .unwrap();
    assert_eq!(
        (page.changes.len(), page.has_more, page.next),
        (5, true, Cursor(5))
    );
}

#[test]
fn limits_are_clamped() {
    let config = tidesync_server::ServiceConfig {
        max_changes_page: 3,
        max_snapshot_page: 2,
        ..Default::default()
    };
    let s = service_with(config);
    let c = ctx("b1", "t1");
    for i in 1..=5 {
        push1(
            &s,
            &c,
            mutation(
                &c,
                op_id(i),
                Create,
                "rooms",
                &format!("e{i}"),
                Some(json!({})),
                0,
            ),
        );
    }
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 1000,
            },
        )
        .unwrap();
    assert_eq!((page.changes.len(), page.has_more), (3, true));
    // A zero limit still makes progress.
    let page = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(0),
                limit: 0,
            },
        )
        .unwrap();
    assert_eq!((page.changes.len(), page.next), (1, Cursor(1)));
    let snap = s
        .snapshot(
            &c,
            SnapshotRequest {
                after: None,
                limit: 1000,
            },
        )
        .unwrap();
    assert_eq!(snap.entities.len(), 2);
    assert!(snap.next.is_some());
    let snap = s
        .snapshot(
            &c,
            SnapshotRequest {
                after: None,
                limit: 0,
            },
        )
        .unwrap();
    assert_eq!(snap.entities.len(), 1);
}

#[test]
fn a_cursor_ahead_of_the_log_is_refused() {
    let s = service();
    let c = ctx("b1", "t1");
    push1(
        &s,
        &c,
        mutation(&c, op_id(1), Create, "rooms", "a", Some(json!({})), 0),
    );
    assert!(s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(1),
                limit: 10
            }
        )
        .is_ok());
    let err = s
        .changes(
            &c,
            ChangesRequest {
                since: Cursor(2),
                limit: 10,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CursorUnknown);
    assert!(err.message.starts_with("since:"));
}

#[test]
fn a_branch_never_sees_another_branch() {
    let s = service();
    let b1 = ctx("b1", "t1");
    let b2 = ctx("b2", "t2");
    push1(
        &s,
        &b1,
        mutation(
            &b1,
            op_id(1),
            Create,
            "rooms",
            "secret",
            Some(json!({"n": 1})),
            0,
        ),
    );
    let page = s
        .changes(
            &b2,
            ChangesRequest {
                since: Cursor(0),
                limit: 10,
            },
        )
        .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.next, Cursor(0));
    let snap = s
        .snapshot(
            &b2,
            SnapshotRequest {
                after: None,
                limit: 10,
            },
        )
        .unwrap();
    assert!(snap.entities.is_empty());
    assert_eq!(snap.at, Cursor(0));
    // b2's own log starts at 1, independent of b1's.
    let ack = push1(
        &s,
        &b2,
        mutation(
            &b2,
            op_id(2),
            Create,
            "rooms",
            "secret",
            Some(json!({"n": 2})),
            0,
        ),
    );
    assert_eq!(ack, applied(1, 1));
    let mine = all_changes(&s, &b2);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].fields, fields(json!({"n": 2})));
    assert_eq!(all_changes(&s, &b1)[0].fields, fields(json!({"n": 1})));
    // Another tenant with the same branch name is another partition too.
    let other = tidesync_server::TerminalContext::new("globex", "b1", "t1");
    assert!(all_changes(&s, &other).is_empty());
}

#[test]
fn snapshot_pages_then_changes_give_the_full_state() {
    let s = service();
    let c = ctx("b1", "t1");
    let mut n = 0;
    let mut next_op = || {
        n += 1;
        op_id(n)
    };
    // Two collections, some tombstones.
    for i in 0..7 {
        push1(
            &s,
            &c,
            mutation(
                &c,
                next_op(),
                Create,
                "rooms",
                &format!("r{i}"),
                Some(json!({"i": i})),
                0,
            ),
        );
        push1(
            &s,
            &c,
            mutation(
                &c,
                next_op(),
                Create,
                "guests",
                &format!("g{i}"),
                Some(json!({"i": i})),
                0,
            ),
        );
    }
    push1(
        &s,
        &c,
        mutation(&c, next_op(), Delete, "rooms", "r3", None, 1),
    );

    let mut local: BTreeMap<EntityKey, EntityState> = BTreeMap::new();
    let mut after = None;
    let mut first_at = None;
    let mut pages = 0;
    loop {
        let page = s
            .snapshot(
                &c,
                SnapshotRequest {
                    after: after.clone(),
                    limit: 3,
                },
            )
            .unwrap();
        pages += 1;
        assert!(
            page.entities.iter().all(|e| !e.deleted),
            "no tombstones in a snapshot"
        );
        let keys: Vec<_> = page.entities.iter().map(EntityState::key).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "ordered by (collection, id)"
        );
        if let Some(a) = &after {
            assert!(keys.iter().all(|k| k > a));
        }
        first_at.get_or_insert(page.at);
        for e in page.entities {
            local.insert(e.key(), e);
        }
        // Writes land between pages: a new entity, an update, a delete.
        if pages == 2 {
            push1(
                &s,
                &c,
                mutation(
                    &c,
                    next_op(),
                    Create,
                    "guests",
                    "g0a",
                    Some(json!({"late": true})),
                    0,
                ),
            );
            push1(
                &s,
                &c,
                mutation(
                    &c,
                    next_op(),
                    Patch,
                    "rooms",
                    "r6",
                    Some(json!({"i": 60})),
                    1,
                ),
            );
            push1(
                &s,
                &c,
                mutation(&c, next_op(), Delete, "guests", "g1", None, 1),
            );
        }
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert!(pages >= 4);
    let first_at = first_at.unwrap();
    assert_eq!(first_at, Cursor(15));
    // Catch up from the first page's cursor, applying newer versions.
    let mut since = first_at;
    loop {
        let page = s.changes(&c, ChangesRequest { since, limit: 2 }).unwrap();
        for e in page.changes {
            let newer = local.get(&e.key()).is_none_or(|l| l.version < e.version);
            if newer {
                local.insert(e.key(), e);
            }
        }
        since = page.next;
        if !page.has_more {
            break;
        }
    }
    local.retain(|_, e| !e.deleted);
    // The result equals a fresh full snapshot.
    let fresh = s
        .snapshot(
            &c,
            SnapshotRequest {
                after: None,
                limit: 1000,
            },
        )
        .unwrap();
    let fresh: BTreeMap<_, _> = fresh.entities.into_iter().map(|e| (e.key(), e)).collect();
    assert_eq!(local, fresh);
    assert!(fresh.contains_key(&EntityKey::new("guests", "g0a")));
    assert!(!fresh.contains_key(&EntityKey::new("guests", "g1")));
    assert!(!fresh.contains_key(&EntityKey::new("rooms", "r3")));
    assert_eq!(fresh[&EntityKey::new("rooms", "r6")].version, 2);
    let m = s.metrics();
    assert!(m.snapshot_pages >= 5 && m.delta_runs >= 1);
}
