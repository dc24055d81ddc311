//! The edge cases PROTOCOL.md states an outcome for ("Edge cases"), each
//! over HTTP: create over an existing entity, patch of a missing one, the
//! same op twice in one batch, the same op id with another base version.

use super::*;
use tidesync::{ErrorCode, Mutation, MutationKind};
use tidesync_server::testing::{mutation, op_id};

fn room_op(n: u64, kind: MutationKind, id: &str, payload: Option<Value>, base: u64) -> Mutation {
    let ctx = TerminalContext::new("acme", "b1", "till");
    mutation(&ctx, op_id(n), kind, "rooms", id, payload, base)
}

fn applied(version: u64, cursor: u64) -> AckResult {
    AckResult::Applied {
        version,
        cursor: Cursor(cursor),
    }
}

fn duplicate(version: u64, cursor: u64) -> AckResult {
    AckResult::Duplicate {
        version,
        cursor: Cursor(cursor),
    }
}

fn rejected_code(ack: &AckResult) -> Option<ErrorCode> {
    match ack {
        AckResult::Rejected { code, .. } => Some(*code),
        _ => None,
    }
}

pub async fn edge_cases_have_the_documented_outcomes(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "till");
    let push = |ms: Vec<Mutation>| {
        let req = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&push_request(ms));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let r: PushResponse = resp.json().await.unwrap();
            r.acks.into_iter().map(|a| a.result).collect::<Vec<_>>()
        }
    };
    let c = MutationKind::Create;
    let p = MutationKind::Patch;
    let d = MutationKind::Delete;
    let r1 = || Some(serde_json::json!({"status": "dirty"}));
    assert_eq!(
        push(vec![room_op(1, c, "r1", r1(), 0)]).await,
        [applied(1, 1)]
    );

    // Create over an existing entity: against base 0 a conflict with the
    // server state; against its version ALREADY_EXISTS. Nothing changes.
    let acks = push(vec![
        room_op(2, c, "r1", Some(serde_json::json!({"status": "clean"})), 0),
        room_op(3, c, "r1", Some(serde_json::json!({"status": "clean"})), 1),
    ])
    .await;
    match &acks[0] {
        AckResult::Conflict {
            server: Some(state),
        } => {
            assert_eq!(
                (state.version, state.fields["status"].as_str()),
                (1, Some("dirty"))
            )
        }
        other => panic!("create over an existing entity at base 0: {other:?}"),
    }
    assert_eq!(
        rejected_code(&acks[1]),
        Some(ErrorCode::AlreadyExists),
        "{acks:?}"
    );

    // Patch (or delete) of a missing entity: at base 0 NOT_FOUND, at any
    // other base a conflict without server state.
    let acks = push(vec![
        room_op(4, p, "r9", Some(serde_json::json!({"status": "clean"})), 0),
        room_op(5, p, "r9", Some(serde_json::json!({"status": "clean"})), 2),
        room_op(6, d, "r9", None, 0),
    ])
    .await;
    assert_eq!(
        rejected_code(&acks[0]),
        Some(ErrorCode::NotFound),
        "{acks:?}"
    );
    assert_eq!(acks[1], AckResult::Conflict { server: None });
    assert_eq!(
        rejected_code(&acks[2]),
        Some(ErrorCode::NotFound),
        "{acks:?}"
    );

    // The same op twice in one batch: applied once, the second answered
    // duplicate with the first's result; with another payload the second
    // is EVENT_DUPLICATE.
    let patch = room_op(7, p, "r1", Some(serde_json::json!({"status": "clean"})), 1);
    let mut other = patch.clone();
    other.payload = Some(tidesync_server::testing::fields(
        serde_json::json!({"status": "ooo"}),
    ));
    other.checksum = tidesync::payload_checksum("rooms", "r1", p, other.payload.as_ref());
    let acks = push(vec![patch.clone(), patch.clone(), other]).await;
    assert_eq!(acks[..2], [applied(2, 2), duplicate(2, 2)]);
    assert_eq!(
        rejected_code(&acks[2]),
        Some(ErrorCode::EventDuplicate),
        "{acks:?}"
    );

    // The same op id with another base version: once applied, a duplicate
    // with the original result (base_version is not in the checksum)...
    let mut rebased = patch.clone();
    rebased.base_version = 7;
    assert_eq!(push(vec![rebased]).await, [duplicate(2, 2)]);
    // ... and before it applied (a conflict records nothing), decided anew:
    let stale = room_op(8, p, "r1", Some(serde_json::json!({"floor": 1})), 1);
    assert!(matches!(
        push(vec![stale.clone()]).await[0],
        AckResult::Conflict { .. }
    ));
    let mut rebased = stale;
    rebased.base_version = 2;
    assert_eq!(push(vec![rebased]).await, [applied(3, 3)]);

    // Three changes in the log: the create, the patch once, the rebased op.
    let page: ChangesPage = client()
        .get(s.url("/v1/changes"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<u64> = page.changes.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(page.changes[2].fields["status"], "clean");
    assert_eq!(page.changes[2].fields["floor"], 1);
}
