//! The scorer never panics nor fails on odd field values: a field that is
//! missing or not a number takes its default; unscored writes are `None`.

mod common;

use common::*;
use serde_json::{json, Value};
use tidesync::protocol::{Fields, MutationKind};
use tidesync::scoring::{ScoreInput, Scorer};

fn f(v: Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn input<'a>(
    collection: &'a str,
    kind: MutationKind,
    before: Option<&'a Fields>,
    after: Option<&'a Fields>,
    at_ms: u64,
) -> ScoreInput<'a> {
    ScoreInput {
        collection,
        entity_id: "x",
        kind,
        before,
        after,
        at_ms,
    }
}

#[test]
fn odd_values_score_finite_and_unscored_writes_are_none() {
    let s = scorer();
    let odd = [
        json!({}),
        json!({"rate": null, "status": 7}),
        json!({"rate": [1, 2], "status": {"a": 1}}),
        json!({"rate": "12000"}),
        json!({"rate": -5}),
        json!({"rate": 1e308, "status": "clean"}),
        json!({"rate": -1e308}),
        json!({"rate": u64::MAX}),
        json!({"total": true, "items": "three", "discount": -4}),
        json!({"total": -1e308, "items": 1e308, "discount": 1e308}),
        json!({"total": 0, "items": 0, "discount": 0}),
    ];
    let before = f(json!({"rate": 120, "status": "dirty"}));
    for a in &odd {
        let a = f(a.clone());
        for at in [0, 1_767_225_600_000, u64::MAX] {
            for (c, k) in [
                ("rooms", MutationKind::Patch),
                ("rooms", MutationKind::Create),
                ("sales", MutationKind::Append),
            ] {
                for b in [None, Some(&before), Some(&a)] {
                    let got = s
                        .score(&input(c, k, b, Some(&a), at))
                        .unwrap()
                        .expect("scored");
                    assert!(
                        got.score.is_finite() && got.score >= 0.0,
                        "{a:?}: {}",
                        got.score
                    );
                }
            }
        }
    }
    let a = f(json!({"rate": 120}));
    let none = [
        input("rooms", MutationKind::Delete, Some(&before), None, 0),
        input("tasks", MutationKind::Patch, Some(&before), Some(&a), 0),
        input("sales", MutationKind::Patch, Some(&before), Some(&a), 0),
        input("rooms", MutationKind::Append, None, Some(&a), 0),
    ];
    for i in none {
        assert_eq!(s.score(&i).unwrap(), None, "{} {:?}", i.collection, i.kind);
    }
}

#[test]
fn the_change_is_scored_not_the_entity() {
    // A room already at 12,000 (a typo held and released, or from the
    // server) is not flagged again for a note.
    let s = scorer();
    let before = f(json!({"rate": 12000, "status": "occupied", "notes": ""}));
    let after = f(json!({"rate": 12000, "status": "occupied", "notes": "vip"}));
    let at = 1_767_225_600_000 + 10 * 3_600_000;
    let got = s
        .score(&input(
            "rooms",
            MutationKind::Patch,
            Some(&before),
            Some(&after),
            at,
        ))
        .unwrap()
        .unwrap();
    assert!(!got.flagged, "{}", got.score);
}
