//! Push: idempotency ledger, conflicts, policies, scoping, validation, batches, audit.

use crate::common::*;
use serde_json::json;
use tidesync::{AckResult, Cursor, ErrorCode, MutationKind::*, PROTOCOL_VERSION};
use tidesync_server::{ServerPolicy, ServerStore};

#[test]
fn applied_then_duplicate_with_the_original_result() {
    let s = service();
    let c = ctx("b1", "t1");
    let create = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 1})),
        0,
    );
    let patch = mutation(&c, op_id(2), Patch, "rooms", "r1", Some(json!({"n": 2})), 1);
    assert_eq!(push1(&s, &c, create.clone()), applied(1, 1));
    assert_eq!(push1(&s, &c, patch.clone()), applied(2, 2));
    // Replays (even after later changes) return each op's own original result.
    let again = s.push(&c, push_request(vec![create, patch])).unwrap();
    let results: Vec<_> = again.acks.into_iter().map(|a| a.result).collect();
    assert_eq!(
        results,
        vec![
            AckResult::Duplicate {
                version: 1,
                cursor: Cursor(1)
            },
            AckResult::Duplicate {
                version: 2,
                cursor: Cursor(2)
            },
        ]
    );
    // Never applied twice.
    let e = stored(&s, &c.partition(), "rooms", "r1").unwrap();
    assert_eq!(e.state.version, 2);
    assert_eq!(e.state.fields, fields(json!({"n": 2})));
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(2));
    let m = s.metrics();
    assert_eq!((m.applied, m.duplicates), (2, 2));
}

#[test]
fn replay_with_a_different_base_version_is_still_a_duplicate() {
    let s = service();
    let c = ctx("b1", "t1");
    let create = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 1})),
        0,
    );
    assert_eq!(push1(&s, &c, create.clone()), applied(1, 1));
    let mut rebased = create;
    rebased.base_version = 7; // not part of the fingerprint
    assert_eq!(
        push1(&s, &c, rebased),
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(1)
        }
    );
}

#[test]
fn same_op_id_with_a_different_payload_is_event_duplicate_and_changes_nothing() {
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
            "r1",
            Some(json!({"n": 1})),
            0,
        ),
    );
    let other = mutation(
        &c,
        op_id(1),
        Patch,
        "rooms",
        "r1",
        Some(json!({"n": 99})),
        1,
    );
    let ack = push1(&s, &c, other);
    assert_eq!(rejected_code(&ack), Some(ErrorCode::EventDuplicate));
    assert!(rejected_message(&ack).starts_with("op_id:"));
    let e = stored(&s, &c.partition(), "rooms", "r1").unwrap();
    assert_eq!(
        (e.state.version, e.state.fields),
        (1, fields(json!({"n": 1})))
    );
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(1));
}

#[test]
fn ledger_is_keyed_by_tenant_and_terminal() {
    let s = service();
    let t1 = ctx("b1", "t1");
    let t2 = ctx("b1", "t2");
    push1(
        &s,
        &t1,
        mutation(&t1, op_id(1), Create, "rooms", "a", Some(json!({})), 0),
    );
    // Same op id from another terminal is another op.
    assert_eq!(
        push1(
            &s,
            &t2,
            mutation(&t2, op_id(1), Create, "rooms", "b", Some(json!({})), 0)
        ),
        applied(1, 2)
    );
    // Same terminal id and op id in another tenant is another op too.
    let other = tidesync_server::TerminalContext::new("globex", "b1", "t1");
    assert_eq!(
        push1(
            &s,
            &other,
            mutation(&other, op_id(1), Create, "rooms", "a", Some(json!({})), 0)
        ),
        applied(1, 1)
    );
}

#[test]
fn conflict_returns_current_state_and_is_not_recorded() {
    let s = service();
    let a = ctx("b1", "ta");
    let b = ctx("b1", "tb");
    push1(
        &s,
        &a,
        mutation(
            &a,
            op_id(1),
            Create,
            "rooms",
            "r1",
            Some(json!({"n": 1})),
            0,
        ),
    );
    push1(
        &s,
        &a,
        mutation(&a, op_id(2), Patch, "rooms", "r1", Some(json!({"n": 2})), 1),
    );
    let stale = mutation(
        &b,
        op_id(3),
        Patch,
        "rooms",
        "r1",
        Some(json!({"x": true})),
        1,
    );
    let AckResult::Conflict {
        server: Some(server),
    } = push1(&s, &b, stale.clone())
    else {
        panic!("expected a conflict with the server state");
    };
    assert_eq!(server.version, 2);
    assert_eq!(server.fields, fields(json!({"n": 2})));
    assert_eq!(server.last_op, Some(op_id(2)));
    assert_eq!(s.store().head(&b.partition()).unwrap(), Cursor(2));
    // The same op id again, still stale: still a conflict (not a duplicate).
    assert!(matches!(
        push1(&s, &b, stale.clone()),
        AckResult::Conflict { .. }
    ));
    // Rebased on version 2, the same op id applies.
    let mut rebased = stale;
    rebased.base_version = 2;
    assert_eq!(push1(&s, &b, rebased.clone()), applied(3, 3));
    assert_eq!(
        push1(&s, &b, rebased),
        AckResult::Duplicate {
            version: 3,
            cursor: Cursor(3)
        }
    );
    assert_eq!(s.metrics().conflicts, 2);
}

#[test]
fn conflict_on_an_entity_that_never_existed_has_no_server_state() {
    let s = service();
    let c = ctx("b1", "t1");
    let ack = push1(
        &s,
        &c,
        mutation(&c, op_id(1), Patch, "rooms", "ghost", Some(json!({})), 3),
    );
    assert_eq!(ack, AckResult::Conflict { server: None });
}

#[test]
fn rejections_are_not_recorded_either() {
    let s = service();
    let c = ctx("b1", "t1");
    // Patch of a missing entity at the right base (0): NOT_FOUND, not recorded.
    let patch = mutation(&c, op_id(1), Patch, "rooms", "r1", Some(json!({"n": 1})), 0);
    assert_eq!(
        rejected_code(&push1(&s, &c, patch)),
        Some(ErrorCode::NotFound)
    );
    // A create with the same op id... is another payload but nothing was recorded, so it applies.
    let create = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 1})),
        0,
    );
    assert_eq!(push1(&s, &c, create), applied(1, 1));
}

#[test]
fn tombstones_keep_their_version() {
    let s = service();
    let c = ctx("b1", "t1");
    let p = c.partition();
    push1(
        &s,
        &c,
        mutation(
            &c,
            op_id(1),
            Create,
            "rooms",
            "r1",
            Some(json!({"n": 1})),
            0,
        ),
    );
    assert_eq!(
        push1(
            &s,
            &c,
            mutation(&c, op_id(2), Delete, "rooms", "r1", None, 1)
        ),
        applied(2, 2)
    );
    let tomb = stored(&s, &p, "rooms", "r1").unwrap();
    assert!(tomb.state.deleted);
    assert_eq!(tomb.state.version, 2);
    assert!(tomb.state.fields.is_empty());
    // Patch or delete of a tombstone at its version: NOT_FOUND.
    let patch = mutation(&c, op_id(3), Patch, "rooms", "r1", Some(json!({"n": 3})), 2);
    assert_eq!(
        rejected_code(&push1(&s, &c, patch)),
        Some(ErrorCode::NotFound)
    );
    let delete = mutation(&c, op_id(4), Delete, "rooms", "r1", None, 2);
    assert_eq!(
        rejected_code(&push1(&s, &c, delete)),
        Some(ErrorCode::NotFound)
    );
    // A create based on 0 conflicts with the tombstone, which is returned.
    let stale = mutation(
        &c,
        op_id(5),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 5})),
        0,
    );
    let AckResult::Conflict {
        server: Some(server),
    } = push1(&s, &c, stale)
    else {
        panic!("expected a conflict");
    };
    assert!(server.deleted);
    assert_eq!(server.version, 2);
    // A create based on the tombstone revives it.
    let revive = mutation(
        &c,
        op_id(6),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 6})),
        2,
    );
    assert_eq!(push1(&s, &c, revive), applied(3, 3));
    let e = stored(&s, &p, "rooms", "r1").unwrap();
    assert!(!e.state.deleted);
    assert_eq!(e.state.fields, fields(json!({"n": 6})));
    // The tombstone was in the feed.
    let feed = all_changes(&s, &c);
    assert!(feed[1].deleted && feed[1].version == 2);
}

#[test]
fn create_of_a_live_entity_at_its_version_is_already_exists() {
    let s = service();
    let c = ctx("b1", "t1");
    push1(
        &s,
        &c,
        mutation(&c, op_id(1), Create, "rooms", "r1", Some(json!({})), 0),
    );
    let again = mutation(&c, op_id(2), Create, "rooms", "r1", Some(json!({})), 1);
    assert_eq!(
        rejected_code(&push1(&s, &c, again)),
        Some(ErrorCode::AlreadyExists)
    );
}

#[test]
fn append_only_dedupes_by_id() {
    let s = service().with_policy("sales", ServerPolicy::AppendOnly);
    let c = ctx("b1", "t1");
    let d = ctx("b1", "t2");
    let sale = json!({"total": 1250, "items": 3});
    // base_version is ignored for append-only collections.
    let first = mutation(&c, op_id(1), Append, "sales", "s1", Some(sale.clone()), 42);
    assert_eq!(push1(&s, &c, first), applied(1, 1));
    push1(
        &s,
        &c,
        mutation(&c, op_id(2), Create, "rooms", "r1", Some(json!({})), 0),
    );
    // Same id and fields from another op (another terminal): the existing record.
    let same = mutation(&d, op_id(3), Append, "sales", "s1", Some(sale), 0);
    assert_eq!(
        push1(&s, &d, same),
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(1)
        }
    );
    // Same id, different fields.
    let different = mutation(
        &d,
        op_id(4),
        Append,
        "sales",
        "s1",
        Some(json!({"total": 1})),
        0,
    );
    let ack = push1(&s, &d, different);
    assert_eq!(rejected_code(&ack), Some(ErrorCode::EventDuplicate));
    assert!(rejected_message(&ack).starts_with("entity_id:"));
    // Never updated or deleted.
    let patch = mutation(
        &c,
        op_id(5),
        Patch,
        "sales",
        "s1",
        Some(json!({"total": 0})),
        1,
    );
    assert_eq!(
        rejected_code(&push1(&s, &c, patch)),
        Some(ErrorCode::PolicyViolation)
    );
    let delete = mutation(&c, op_id(6), Delete, "sales", "s1", None, 1);
    assert_eq!(
        rejected_code(&push1(&s, &c, delete)),
        Some(ErrorCode::PolicyViolation)
    );
    let create = mutation(&c, op_id(7), Create, "sales", "s2", Some(json!({})), 0);
    assert_eq!(
        rejected_code(&push1(&s, &c, create)),
        Some(ErrorCode::PolicyViolation)
    );
    let e = stored(&s, &c.partition(), "sales", "s1").unwrap();
    assert_eq!(e.state.version, 1);
    assert_eq!(e.cursor, Cursor(1));
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(2));
}

#[test]
fn read_only_collections_refuse_every_terminal_write() {
    let s = service().with_policy("catalog", ServerPolicy::ReadOnly);
    let c = ctx("b1", "t1");
    let p = c.partition();
    let item = tidesync::EntityKey::new("catalog", "sku-1");
    s.admin_put(
        &p,
        &item,
        fields(json!({"price": 300})),
        tidesync::Hlc::default(),
    )
    .unwrap();
    for (n, m) in [
        mutation(&c, op_id(1), Create, "catalog", "sku-2", Some(json!({})), 0),
        mutation(
            &c,
            op_id(2),
            Patch,
            "catalog",
            "sku-1",
            Some(json!({"price": 1})),
            1,
        ),
        mutation(&c, op_id(3), Delete, "catalog", "sku-1", None, 1),
        mutation(&c, op_id(4), Append, "catalog", "sku-3", Some(json!({})), 0),
    ]
    .into_iter()
    .enumerate()
    {
        let ack = push1(&s, &c, m);
        assert_eq!(
            rejected_code(&ack),
            Some(ErrorCode::PolicyViolation),
            "mutation {n}"
        );
    }
    let e = stored(&s, &p, "catalog", "sku-1").unwrap();
    assert_eq!(e.state.fields, fields(json!({"price": 300})));
    // Terminals still read the catalog.
    let feed = all_changes(&s, &c);
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].last_op, None);
}

#[test]
fn admin_writes_bump_versions_and_are_audited_without_terminal() {
    let s = service();
    let p = tidesync_server::Partition::new("acme", "b1");
    let k = tidesync::EntityKey::new("catalog", "a");
    let hlc = tidesync::Hlc::default();
    let seeded = s
        .seed(
            &p,
            hlc,
            [
                (k.clone(), fields(json!({"v": 1}))),
                (tidesync::EntityKey::new("catalog", "b"), fields(json!({}))),
            ],
        )
        .unwrap();
    assert_eq!(seeded.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(
        s.admin_put(&p, &k, fields(json!({"v": 2})), hlc)
            .unwrap()
            .version,
        2
    );
    assert_eq!(s.admin_delete(&p, &k, hlc).unwrap().unwrap().version, 3);
    assert_eq!(
        s.admin_delete(&p, &k, hlc).unwrap(),
        None,
        "already deleted"
    );
    let audit = s.store().audit(&p).unwrap();
    assert_eq!(audit.len(), 4);
    assert!(audit
        .iter()
        .all(|a| a.terminal.is_none() && a.op_id.is_none()));
    let bad = tidesync::EntityKey::new("Bad Name", "a");
    let err = s.admin_put(&p, &bad, fields(json!({})), hlc).unwrap_err();
    assert_eq!(err.code, ErrorCode::EventInvalid);
    assert!(err.message.starts_with("collection:"));
}

#[test]
fn seed_is_all_or_nothing() {
    let s = service();
    let p = tidesync_server::Partition::new("acme", "b1");
    s.store().fail_commits(true);
    let err = s
        .seed(
            &p,
            tidesync::Hlc::default(),
            [(tidesync::EntityKey::new("catalog", "a"), fields(json!({})))],
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::StorageFailed);
    s.store().fail_commits(false);
    assert_eq!(s.store().head(&p).unwrap(), Cursor(0));
}

#[test]
fn branch_and_terminal_must_match_the_credential() {
    let s = service();
    let b2 = ctx("b2", "t9");
    // An envelope claiming branch b1, sent with a b2 credential.
    let mut m = mutation(&b2, op_id(1), Create, "rooms", "r1", Some(json!({})), 0);
    m.branch_id = "b1".into();
    let ack = push1(&s, &b2, m);
    assert_eq!(rejected_code(&ack), Some(ErrorCode::SyncForbidden));
    assert!(rejected_message(&ack).starts_with("branch_id:"));
    // An envelope from another terminal.
    let mut m = mutation(&b2, op_id(2), Create, "rooms", "r1", Some(json!({})), 0);
    m.terminal_id = "t1".into();
    let ack = push1(&s, &b2, m);
    assert_eq!(rejected_code(&ack), Some(ErrorCode::EventInvalid));
    assert!(rejected_message(&ack).starts_with("terminal_id:"));
    // Nothing was written anywhere.
    assert_eq!(
        s.store().head(&ctx("b1", "x").partition()).unwrap(),
        Cursor(0)
    );
    assert_eq!(s.store().head(&b2.partition()).unwrap(), Cursor(0));
}

#[test]
fn validation_failures_name_the_field() {
    let s = service();
    let c = ctx("b1", "t1");
    let good = || {
        mutation(
            &c,
            op_id(1),
            Create,
            "rooms",
            "r1",
            Some(json!({"n": 1})),
            0,
        )
    };
    let cases: Vec<(tidesync::Mutation, ErrorCode, &str)> = vec![
        (
            {
                let mut m = good();
                m.op_id = tidesync::OpId("nope".into());
                m
            },
            ErrorCode::EventInvalid,
            "op_id",
        ),
        (
            {
                let mut m = good();
                m.client_id.clear();
                m
            },
            ErrorCode::EventInvalid,
            "client_id",
        ),
        (
            reseal({
                let mut m = good();
                m.collection = "Rooms!".into();
                m
            }),
            ErrorCode::EventInvalid,
            "collection",
        ),
        (
            reseal({
                let mut m = good();
                m.entity_id = String::new();
                m
            }),
            ErrorCode::EventInvalid,
            "entity_id",
        ),
        (
            reseal({
                let mut m = good();
                m.payload = None;
                m
            }),
            ErrorCode::EventInvalid,
            "payload",
        ),
        (
            {
                let mut m = good();
                m.checksum = "0".repeat(64);
                m
            },
            ErrorCode::EventInvalid,
            "checksum",
        ),
        (
            {
                let mut m = good();
                m.schema_version = 9;
                m
            },
            ErrorCode::SchemaUnsupported,
            "schema_version",
        ),
        (
            reseal({
                let mut m = good();
                m.payload = Some(fields(json!({"big": "x".repeat(70_000)})));
                m
            }),
            ErrorCode::PayloadTooLarge,
            "payload",
        ),
    ];
    for (m, code, field) in cases {
        let ack = push1(&s, &c, m);
        assert_eq!(rejected_code(&ack), Some(code), "{field}");
        assert!(
            rejected_message(&ack).starts_with(&format!("{field}:")),
            "{field}: {ack:?}"
        );
    }
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(0));
    let m = s.metrics();
    assert_eq!(m.rejected_total(), 8);
    assert_eq!(m.rejected[&ErrorCode::EventInvalid], 6);
    // And the good one still applies with that op id.
    assert_eq!(push1(&s, &c, good()), applied(1, 1));
}

#[test]
fn one_rejected_mutation_does_not_affect_the_others() {
    let s = service();
    let c = ctx("b1", "t1");
    let mut bad = mutation(&c, op_id(2), Create, "rooms", "bad", Some(json!({})), 0);
    bad.checksum = "f".repeat(64);
    let batch = vec![
        mutation(&c, op_id(1), Create, "rooms", "a", Some(json!({})), 0),
        bad,
        mutation(&c, op_id(3), Patch, "rooms", "zzz", Some(json!({})), 0), // NOT_FOUND
        mutation(&c, op_id(4), Patch, "rooms", "a", Some(json!({"n": 1})), 5), // conflict
        mutation(&c, op_id(5), Create, "rooms", "b", Some(json!({})), 0),
        mutation(&c, op_id(6), Patch, "rooms", "a", Some(json!({"n": 2})), 1),
    ];
    let ops: Vec<_> = batch.iter().map(|m| m.op_id.clone()).collect();
    let resp = s.push(&c, push_request(batch)).unwrap();
    assert_eq!(
        resp.acks
            .iter()
            .map(|a| a.op_id.clone())
            .collect::<Vec<_>>(),
        ops
    );
    let r: Vec<_> = resp.acks.into_iter().map(|a| a.result).collect();
    assert_eq!(r[0], applied(1, 1));
    assert_eq!(rejected_code(&r[1]), Some(ErrorCode::EventInvalid));
    assert_eq!(rejected_code(&r[2]), Some(ErrorCode::NotFound));
    assert!(matches!(r[3], AckResult::Conflict { .. }));
    assert_eq!(r[4], applied(1, 2));
    assert_eq!(r[5], applied(2, 3));
}

#[test]
fn wrong_protocol_version_or_oversized_batch_fail_the_whole_request() {
    let s = service();
    let c = ctx("b1", "t1");
    let mut req = push_request(vec![mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "a",
        Some(json!({})),
        0,
    )]);
    req.protocol = PROTOCOL_VERSION + 1;
    let err = s.push(&c, req).unwrap_err();
    assert_eq!(err.code, ErrorCode::EventInvalid);
    assert!(err.message.starts_with("protocol:"));
    assert_eq!(err.http_status(), 400);
    let many = (0..501)
        .map(|i| {
            mutation(
                &c,
                op_id(i),
                Create,
                "rooms",
                &format!("e{i}"),
                Some(json!({})),
                0,
            )
        })
        .collect();
    let err = s.push(&c, push_request(many)).unwrap_err();
    assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(0));
}

#[test]
fn storage_failure_fails_the_request_and_a_retry_is_exactly_once() {
    let s = service();
    let c = ctx("b1", "t1");
    let batch = vec![
        mutation(&c, op_id(1), Create, "rooms", "a", Some(json!({})), 0),
        mutation(&c, op_id(2), Create, "rooms", "b", Some(json!({})), 0),
    ];
    push1(&s, &c, batch[0].clone());
    s.store().fail_commits(true);
    let err = s.push(&c, push_request(batch.clone())).unwrap_err();
    assert_eq!(err.code, ErrorCode::StorageFailed);
    assert_eq!(err.http_status(), 500);
    assert_eq!(s.metrics().storage_failures, 1);
    // The failed mutation left nothing behind: no entity, change or ledger row.
    assert!(stored(&s, &c.partition(), "rooms", "b").is_none());
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(1));
    s.store().fail_commits(false);
    let resp = s.push(&c, push_request(batch)).unwrap();
    assert_eq!(
        resp.acks[0].result,
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(1)
        }
    );
    assert_eq!(resp.acks[1].result, applied(1, 2));
}

#[test]
fn every_applied_mutation_is_audited() {
    let s = service().with_clock(|| 1_234);
    let c = ctx("b1", "t1");
    let mut offline = mutation(&c, op_id(1), Create, "rooms", "a", Some(json!({})), 0);
    offline.offline = true;
    offline = reseal(offline);
    push1(&s, &c, offline.clone());
    push1(&s, &c, offline); // duplicate: no audit row
    push1(
        &s,
        &c,
        mutation(&c, op_id(2), Patch, "rooms", "a", Some(json!({})), 9),
    ); // conflict
    push1(
        &s,
        &c,
        mutation(&c, op_id(3), Patch, "rooms", "a", Some(json!({"n": 1})), 1),
    );
    let audit = s.store().audit(&c.partition()).unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].op_id, Some(op_id(1)));
    assert_eq!(audit[0].terminal.as_deref(), Some("t1"));
    assert_eq!(audit[0].key, tidesync::EntityKey::new("rooms", "a"));
    assert_eq!((audit[0].version, audit[0].cursor), (1, Cursor(1)));
    assert!(audit[0].originated_offline);
    assert_eq!(audit[0].applied_at_ms, 1_234);
    assert_eq!(audit[0].hlc.wall_ms, 1_700_000_000_000);
    assert_eq!(audit[1].op_id, Some(op_id(3)));
    assert!(!audit[1].originated_offline);
}

#[test]
fn payload_rules_of_a_collection_are_enforced_naming_the_field() {
    let config = tidesync_server::ServiceConfig {
        rules: tidesync_server::rules::parse_rules(
            r#"{"rooms": {"fields": {"status": {"type": "string", "required": true,
                                                "enum": ["clean", "dirty"]}}}}"#,
        )
        .unwrap(),
        ..Default::default()
    };
    let s = service_with(config);
    let c = ctx("b1", "t1");
    let missing = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"floor": 1})),
        0,
    );
    let ack = push1(&s, &c, missing);
    assert_eq!(rejected_code(&ack), Some(ErrorCode::EventInvalid));
    assert_eq!(rejected_message(&ack), "payload.status: is required");
    let bad = mutation(
        &c,
        op_id(2),
        Create,
        "rooms",
        "r1",
        Some(json!({"status": "burnt"})),
        0,
    );
    assert!(rejected_message(&push1(&s, &c, bad)).starts_with("payload.status: must be one of"));
    assert_eq!(s.head(&c).unwrap(), Cursor(0), "nothing stored");
    let good = mutation(
        &c,
        op_id(3),
        Create,
        "rooms",
        "r1",
        Some(json!({"status": "clean"})),
        0,
    );
    assert_eq!(push1(&s, &c, good), applied(1, 1));
    let removal = mutation(
        &c,
        op_id(4),
        Patch,
        "rooms",
        "r1",
        Some(json!({"status": null})),
        1,
    );
    assert_eq!(
        rejected_message(&push1(&s, &c, removal)),
        "payload.status: is required and cannot be removed"
    );
    // Other collections are free.
    let other = mutation(
        &c,
        op_id(5),
        Create,
        "notes",
        "n1",
        Some(json!({"x": 1})),
        0,
    );
    assert_eq!(push1(&s, &c, other), applied(1, 2));
}

#[test]
fn a_storage_failure_keeps_nothing_of_the_batch() {
    let s = service();
    let c = ctx("b1", "t1");
    let batch = vec![
        mutation(&c, op_id(1), Create, "rooms", "a", Some(json!({})), 0),
        mutation(&c, op_id(2), Create, "rooms", "b", Some(json!({})), 0),
    ];
    s.store().fail_commits(true);
    assert!(s.push(&c, push_request(batch.clone())).is_err());
    s.store().fail_commits(false);
    assert!(stored(&s, &c.partition(), "rooms", "a").is_none());
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(0));
    assert_eq!(
        s.metrics().applied,
        0,
        "acks are counted only once committed"
    );
    let resp = s.push(&c, push_request(batch)).unwrap();
    assert_eq!(resp.acks[0].result, applied(1, 1));
    assert_eq!(resp.acks[1].result, applied(1, 2));
}

/// The replay window (issue 17 item 7): inside it a replay is `duplicate`;
/// once its row is pruned, the op (made before the window) is refused with
/// OP_EXPIRED and never applied a second time; recent rows survive a prune.
#[test]
fn outside_the_replay_window_a_replay_is_op_expired_and_never_applied_again() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const DAY: u64 = 86_400_000;
    let t0 = 1_700_000_000_000;
    let now = Arc::new(AtomicU64::new(t0 + 10));
    let clock = now.clone();
    let s = tidesync_server::SyncService::with_config(
        store(),
        tidesync_server::ServiceConfig {
            replay_window_ms: Some(30 * DAY),
            ..Default::default()
        },
    )
    .with_clock(move || clock.load(Ordering::SeqCst));
    let c = ctx("b1", "t1");
    let create = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 1})),
        0,
    );
    assert_eq!(push1(&s, &c, create.clone()), applied(1, 1));

    now.store(t0 + 20 * DAY, Ordering::SeqCst);
    assert_eq!(s.prune_ledger().unwrap(), 0, "inside the window: kept");
    assert!(matches!(
        push1(&s, &c, create.clone()),
        AckResult::Duplicate { version: 1, .. }
    ));

    now.store(t0 + 31 * DAY, Ordering::SeqCst);
    // A recent op: applied, and its row outlives the prune.
    let recent = tidesync::OpId::from_parts(t0 + 31 * DAY - 5, 9);
    let patch = mutation(&c, recent, Patch, "rooms", "r1", Some(json!({"n": 2})), 1);
    assert_eq!(push1(&s, &c, patch.clone()), applied(2, 2));
    assert_eq!(s.prune_ledger().unwrap(), 1, "only the old op's row goes");
    let again = push1(&s, &c, create);
    assert_eq!(
        rejected_code(&again),
        Some(ErrorCode::OpExpired),
        "{again:?}"
    );
    assert!(rejected_message(&again).starts_with("op_id: "));
    assert!(matches!(
        push1(&s, &c, patch),
        AckResult::Duplicate { version: 2, .. }
    ));
    // Never applied twice: still version 2, no new change.
    assert_eq!(
        stored(&s, &c.partition(), "rooms", "r1")
            .unwrap()
            .state
            .version,
        2
    );
    assert_eq!(s.store().head(&c.partition()).unwrap(), Cursor(2));
    // An old op never seen before is refused the same way (it cannot be
    // told from one whose row was pruned).
    let old = mutation(
        &c,
        op_id(3),
        Create,
        "rooms",
        "r2",
        Some(json!({"n": 1})),
        0,
    );
    assert_eq!(
        rejected_code(&push1(&s, &c, old)),
        Some(ErrorCode::OpExpired)
    );
    assert!(stored(&s, &c.partition(), "rooms", "r2").is_none());
    assert!(
        ErrorCode::OpExpired.is_permanent(),
        "the client dead-letters it"
    );
}

/// Without a window (the library's default) nothing is pruned.
#[test]
fn without_a_replay_window_the_ledger_is_kept() {
    let s = service();
    let c = ctx("b1", "t1");
    let create = mutation(
        &c,
        op_id(1),
        Create,
        "rooms",
        "r1",
        Some(json!({"n": 1})),
        0,
    );
    assert_eq!(push1(&s, &c, create.clone()), applied(1, 1));
    assert_eq!(s.prune_ledger().unwrap(), 0);
    assert!(matches!(push1(&s, &c, create), AckResult::Duplicate { .. }));
    assert_eq!(
        s.store().prune_ledger(u64::MAX / 2).unwrap(),
        1,
        "the store's own prune works"
    );
}
