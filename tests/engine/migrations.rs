//! Schema migrations of queued mutations.

use crate::common::*;

struct RenameStatusToState;
impl tidesync::migrate::QueuedMigration for RenameStatusToState {
    fn upgrades_from(&self) -> u32 {
        1
    }
    fn migrate(&self, m: &Mutation) -> tidesync::migrate::MigrationOutcome {
        use tidesync::migrate::MigrationOutcome;
        match m.collection.as_str() {
            "rooms" => {
                let mut p = m.payload.clone().unwrap_or_default();
                if let Some(v) = p.remove("status") {
                    p.insert("state".into(), v);
                }
                MigrationOutcome::Rewrite(Some(p))
            }
            "incidents" => MigrationOutcome::Hold {
                code: ErrorCode::SchemaUnsupported,
                message: "incidents changed shape in schema 2: re-enter by hand".into(),
            },
            _ => MigrationOutcome::Keep,
        }
    }
}

#[test]
fn schema_migration_carries_queued_mutations_forward_and_never_drops_them() {
    let w = World::new();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "open"})),
    );
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    net.set_offline(true);
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.patch("incidents", "inc-1", f(json!({"state": "ack"})))).unwrap();
    block_on(engine.append("sales", Some("s1"), f(json!({"total": 5})))).unwrap();
    drop(engine);

    let mut config = w.config("t1");
    config.schema_version = 2;
    config.limits.schema_versions = (1, 2);
    let engine = block_on(Engine::open_with_migrations(
        store.clone(),
        net.clone(),
        w.env.clone(),
        config,
        vec![Box::new(RenameStatusToState)],
    ))
    .unwrap();
    assert_eq!(block_on(engine.meta()).schema_version, 2);
    let outbox = block_on(engine.outbox());
    assert_eq!(outbox.len(), 3, "nothing dropped");
    let room = outbox
        .iter()
        .find(|e| e.mutation.collection == "rooms")
        .unwrap();
    assert_eq!(room.mutation.payload.as_ref().unwrap()["state"], "clean");
    assert_eq!(room.mutation.schema_version, 2);
    let limits = Limits {
        schema_versions: (1, 2),
        ..Limits::default()
    };
    validate_mutation(&room.mutation, &limits).expect("checksum follows the new payload");
    let inc = outbox
        .iter()
        .find(|e| e.mutation.collection == "incidents")
        .unwrap();
    assert!(matches!(
        inc.state,
        OutboxState::DeadLetter {
            code: ErrorCode::SchemaUnsupported,
            ..
        }
    ));
    let sale = outbox
        .iter()
        .find(|e| e.mutation.collection == "sales")
        .unwrap();
    assert_eq!(sale.mutation.schema_version, 2);
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["state"],
        "clean",
        "the view follows the migrated payload"
    );
    drop(engine);
    // An older build refuses a newer store instead of misreading it.
    let err = block_on(Engine::open(store, net, w.env.clone(), w.config("t1"))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SchemaUnsupported);
}
