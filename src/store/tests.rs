//! Unit tests of the record types (the settled form of a record).

use super::*;
use crate::protocol::OpId;

fn state(version: u64) -> EntityState {
    EntityState {
        collection: "rooms".into(),
        id: "r1".into(),
        version,
        fields: serde_json::json!({"status": "dirty-and-unique"})
            .as_object()
            .cloned()
            .unwrap(),
        deleted: false,
        updated_at: Hlc {
            wall_ms: 9,
            counter: 1,
            node: 2,
        },
        last_op: Some(OpId::from_parts(1, 2)),
    }
}

fn settled() -> EntityRecord {
    let s = state(3);
    EntityRecord {
        key: s.key(),
        view: Some(EntityRecord::settled_view(&s.key(), &s)),
        chain_base: None,
        server: Some(s),
    }
}

#[test]
fn a_settled_record_stores_its_fields_once() {
    let r = settled();
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(text.matches("dirty-and-unique").count(), 1, "{text}");
    assert!(text.contains(r#""settled":true"#), "{text}");
    assert_eq!(serde_json::from_str::<EntityRecord>(&text).unwrap(), r);
}

#[test]
fn a_pending_or_different_view_is_stored_whole() {
    let mut pending = settled();
    pending.chain_base = Some(ChainBase::State(state(3)));
    pending.view.as_mut().unwrap().pending = 1;
    let mut changed = settled();
    changed
        .view
        .as_mut()
        .unwrap()
        .fields
        .insert("x".into(), 1.into());
    let mut behind = settled();
    behind.view.as_mut().unwrap().server_version = 2;
    for r in [pending, changed, behind] {
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("settled"), "{text}");
        assert_eq!(serde_json::from_str::<EntityRecord>(&text).unwrap(), r);
    }
}

#[test]
fn a_record_in_the_older_form_reads_as_it_was() {
    let r = settled();
    let old = serde_json::json!({
        "key": r.key,
        "server": r.server,
        "chain_base": null,
        "view": r.view,
    });
    assert_eq!(serde_json::from_value::<EntityRecord>(old).unwrap(), r);
    let no_view =
        serde_json::json!({"key": r.key, "server": r.server, "chain_base": null, "view": null});
    let read: EntityRecord = serde_json::from_value(no_view).unwrap();
    assert_eq!(read.view, None);
    // Settled needs the server state it derives the view from.
    let broken =
        serde_json::json!({"key": r.key, "server": null, "chain_base": null, "settled": true});
    assert!(serde_json::from_value::<EntityRecord>(broken).is_err());
}
