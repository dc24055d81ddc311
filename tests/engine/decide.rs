//! What a policy decides where the simulation does not go (rooms are never
//! deleted there), through `policy::decide` (mutation testing found these
//! cases unchecked).

use crate::common::*;
use tidesync::policy::{decide, Decision};

fn state(version: u64, fields: Value, deleted: bool) -> EntityState {
    EntityState {
        collection: "rooms".into(),
        id: "room-1".into(),
        version,
        fields: if deleted { Fields::new() } else { f(fields) },
        deleted,
        updated_at: Hlc {
            wall_ms: version,
            counter: 0,
            node: 1,
        },
        last_op: None,
    }
}

fn mutation(kind: MutationKind, payload: Option<Value>) -> Mutation {
    let payload = payload.map(f);
    Mutation {
        op_id: OpId::from_parts(T0, 1),
        client_id: "client-t1".into(),
        terminal_id: "t1".into(),
        branch_id: "b1".into(),
        collection: "rooms".into(),
        entity_id: "room-1".into(),
        kind,
        checksum: payload_checksum("rooms", "room-1", kind, payload.as_ref()),
        payload,
        base_version: 1,
        hlc: Hlc {
            wall_ms: 10,
            counter: 0,
            node: 2,
        },
        schema_version: 1,
        offline: false,
        anomaly: None,
    }
}

#[test]
fn merge_three_way_hands_a_change_of_existence_to_a_person() {
    let base = state(1, json!({"status": "dirty", "notes": ""}), false);
    let patch = mutation(MutationKind::Patch, Some(json!({"status": "clean"})));
    let manual = Decision::Manual { fields: vec![] };
    // Deleted on the server while patched here: not a field merge.
    let gone = state(2, json!({}), true);
    assert_eq!(
        decide(
            ConflictPolicy::MergeThreeWay,
            Some(&base),
            &[&patch],
            Some(&gone)
        ),
        manual
    );
    // Deleted here while the server changed a field.
    let server = state(2, json!({"status": "dirty", "notes": "vip"}), false);
    let delete = mutation(MutationKind::Delete, None);
    assert_eq!(
        decide(
            ConflictPolicy::MergeThreeWay,
            Some(&base),
            &[&delete],
            Some(&server)
        ),
        manual
    );
    // The same without the delete merges.
    assert_eq!(
        decide(
            ConflictPolicy::MergeThreeWay,
            Some(&base),
            &[&patch],
            Some(&server)
        ),
        Decision::Rebase
    );
}

#[test]
fn manual_resolve_names_the_fields_both_sides_changed() {
    let base = state(1, json!({"state": "open", "owner": "", "n": 1}), false);
    let server = state(2, json!({"state": "ack", "owner": "cloud", "n": 1}), false);
    let local = mutation(
        MutationKind::Patch,
        Some(json!({"state": "closed", "owner": "cloud", "n": 2})),
    );
    // owner: the same value on both sides; n: only here.
    assert_eq!(
        decide(
            ConflictPolicy::ManualResolve,
            Some(&base),
            &[&local],
            Some(&server)
        ),
        Decision::Manual {
            fields: vec!["state".to_string()]
        }
    );
}

#[test]
fn decisions_have_stable_names_for_logs() {
    let names: Vec<&str> = [
        Decision::Rebase,
        Decision::SupersedeHead,
        Decision::SupersedeAll,
        Decision::Manual { fields: vec![] },
    ]
    .iter()
    .map(|d| d.name())
    .collect();
    assert_eq!(
        names,
        ["rebase", "supersede-head", "supersede-all", "manual"]
    );
}
