//! Each scenario here writes more than once; it runs once for every commit
//! it makes, with that commit failing (see `common::every_commit`), and
//! holds its invariants whichever one failed.

use crate::common::*;

fn one_change_a_page(c: EngineConfig) -> EngineConfig {
    EngineConfig {
        changes_page: 1,
        ..c
    }
}

#[test]
fn a_paged_pull_never_stores_a_cursor_ahead_of_its_changes() {
    let commits = every_commit(one_change_a_page, |rig| {
        block_on(rig.engine.sync_now()).unwrap();
        rig.w.admin(room(1), f(json!({"status": "ooo"})));
        rig.w.admin(room(2), f(json!({"status": "clean"})));
        rig.w.admin(room(1), f(json!({"status": "inspected"})));
        rig.arm();
        rig.tolerate(block_on(rig.engine.pull()));
        rig.assert_cursor_covers();
        rig.tolerate(block_on(rig.engine.pull()));
        rig.assert_cursor_covers();
        rig.disarm();
        rig.recover();
        rig.assert_cursor_covers();
        rig.assert_converged("rooms");
        assert_eq!(
            block_on(rig.engine.get("rooms", "room-1"))
                .unwrap()
                .unwrap()
                .fields["status"],
            "inspected"
        );
    });
    assert!(commits >= 3, "a page a commit: {commits}");
}

#[test]
fn writes_and_their_acks_survive_any_failed_commit() {
    every_commit(as_is, |rig| {
        block_on(rig.engine.sync_now()).unwrap();
        rig.arm();
        let a = rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-1",
            f(json!({"status": "clean"})),
        )));
        let b = rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-2",
            f(json!({"notes": "vip"})),
        )));
        // The first answer is lost after the server applied it.
        rig.net.then(Step::LoseAnswer);
        rig.tolerate(block_on(rig.engine.sync_now()));
        rig.assert_accounted();
        rig.tolerate(block_on(rig.engine.sync_now()));
        rig.assert_accounted();
        rig.assert_cursor_covers();
        rig.disarm();
        rig.recover();
        rig.assert_accounted();
        rig.assert_converged("rooms");
        // A write that returned Ok is on the server; a refused one left nothing.
        let s1 = rig.w.server_state(&room(1)).unwrap();
        assert_eq!(
            s1.fields["status"],
            if a.is_some() { "clean" } else { "dirty" }
        );
        let s2 = rig.w.server_state(&room(2)).unwrap();
        assert_eq!(s2.fields["notes"], if b.is_some() { "vip" } else { "" });
    });
}

#[test]
fn a_conflict_and_its_resolution_survive_any_failed_commit() {
    every_commit(as_is, |rig| {
        block_on(rig.engine.sync_now()).unwrap();
        rig.w.admin(
            room(1),
            f(json!({"status": "ooo", "notes": "", "floor": 1})),
        );
        rig.arm();
        let wrote = rig
            .tolerate(block_on(rig.engine.patch(
                "rooms",
                "room-1",
                f(json!({"status": "clean"})),
            )))
            .is_some();
        rig.tolerate(block_on(rig.engine.sync_now()));
        rig.assert_accounted();
        let conflicts = block_on(rig.engine.conflicts());
        if rig.is_clean() {
            assert_eq!(conflicts.len(), 1, "the scenario opens a conflict");
        }
        for c in conflicts {
            assert_eq!(
                c.fields,
                vec!["status".to_string()],
                "overlap on status only"
            );
            rig.tolerate(block_on(rig.engine.resolve(&c.key, Resolution::Local)));
            rig.assert_accounted();
        }
        rig.tolerate(block_on(rig.engine.sync_now()));
        rig.assert_accounted();
        rig.disarm();
        rig.recover();
        rig.assert_accounted();
        rig.assert_converged("rooms");
        // The person kept the local side: it is on the server.
        let s = rig.w.server_state(&room(1)).unwrap();
        assert_eq!(s.fields["status"], if wrote { "clean" } else { "ooo" });
    });
}

#[test]
fn dead_letters_survive_any_failed_commit_until_a_person_acts() {
    every_commit(as_is, |rig| {
        block_on(rig.engine.sync_now()).unwrap();
        rig.arm();
        rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-1",
            f(json!({"status": "clean"})),
        )));
        // Server errors until the attempts run out (max_attempts 3).
        for _ in 0..3 {
            rig.net.then(Step::Fail(TransportError::Server {
                status: 503,
                message: "down".into(),
            }));
            rig.tolerate(block_on(rig.engine.push()));
            rig.w.env.advance(5_000);
            rig.assert_accounted();
        }
        let dead = block_on(rig.engine.dead_letters());
        if rig.is_clean() {
            assert_eq!(dead.len(), 1, "the scenario makes a dead letter");
        }
        if let Some(d) = dead.first() {
            rig.tolerate(block_on(rig.engine.retry(d.seq)));
            rig.assert_accounted();
        }
        rig.tolerate(block_on(rig.engine.patch(
            "rooms",
            "room-3",
            f(json!({"status": "inspected"})),
        )));
        rig.tolerate(block_on(rig.engine.sync_now()));
        rig.assert_accounted();
        rig.disarm();
        rig.recover();
        rig.assert_accounted();
        rig.assert_converged("rooms");
    });
}
