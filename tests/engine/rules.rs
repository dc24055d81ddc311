//! An engine given the server's rules file refuses at once what the server
//! would refuse, with the server's own code and message, and queues
//! nothing; what it accepts, the server applies.

use crate::common::*;
use tidesync::rules::{parse_rules, Rules};
use tidesync_server::ServiceConfig;

/// The demo server's own rules file (a read-only catalog, append-only
/// sales).
fn rules() -> Rules {
    parse_rules(include_str!("../../server/rules/hotel.json")).unwrap()
}

/// A server that runs `rules`.
fn server() -> Arc<Server> {
    let config = ServiceConfig {
        rules: rules(),
        ..ServiceConfig::default()
    };
    Arc::new(SyncService::with_config(ServerMemory::new(), config))
}

fn net(server: &Arc<Server>, terminal: &str) -> Net {
    Net {
        server: server.clone(),
        ctx: TerminalContext::new("hotel", "b1", terminal),
        script: Default::default(),
        offline: Default::default(),
        pushes: Default::default(),
    }
}

fn engine(
    server: &Arc<Server>,
    terminal: &str,
    rules: Rules,
) -> (Engine<MemoryStore, Net, SimEnv>, MemoryStore) {
    let store = MemoryStore::new();
    let config = EngineConfig::new(format!("client-{terminal}"), terminal, "b1")
        .with_policy("rooms", ConflictPolicy::MergeThreeWay)
        .with_rules(rules);
    let engine = block_on(Engine::open(
        store.clone(),
        net(server, terminal),
        SimEnv::new(T0, 11),
        config,
    ))
    .unwrap();
    (engine, store)
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Create(&'static str, &'static str),
    Patch(&'static str, &'static str),
    Delete(&'static str, &'static str),
}

/// The writes both sides judge: valid ones and one of each way to break a
/// rule, in order (the patches and the delete act on room 101's create).
fn writes() -> Vec<(Write, Value)> {
    use Write::*;
    vec![
        (
            Create("rooms", "101"),
            json!({"number": "101", "status": "dirty", "floor": 1}),
        ),
        (
            Create("rooms", "102"),
            json!({"number": "102", "status": "burnt"}),
        ),
        (Create("rooms", "103"), json!({"status": "dirty"})),
        (
            Create("rooms", "104"),
            json!({"number": "104", "status": "dirty", "floor": 2.5}),
        ),
        (
            Create("rooms", "105"),
            json!({"number": "105", "status": "dirty", "floor": 201}),
        ),
        (
            Create("rooms", "106"),
            json!({"number": "1066666666666666666", "status": "dirty"}),
        ),
        (
            Patch("rooms", "101"),
            json!({"status": "clean", "note": "ok"}),
        ),
        (Patch("rooms", "101"), json!({"status": null})),
        (Patch("rooms", "101"), json!({"note": null})),
        (Create("catalog", "soap"), json!({"price": 3})),
        (
            Create("sales", "s-1"),
            json!({"total_cents": 1, "currency": "EUR", "lines": []}),
        ),
        (Delete("rooms", "101"), Value::Null),
    ]
}

fn write(e: &Engine<MemoryStore, Net, SimEnv>, w: Write, v: &Value) -> Result<(), EngineError> {
    let r = match w {
        Write::Create(c, id) => block_on(e.create(c, Some(id), f(v.clone()))),
        Write::Patch(c, id) => block_on(e.patch(c, id, f(v.clone()))),
        Write::Delete(c, id) => block_on(e.delete(c, id)),
    };
    r.map(|_| ())
}

#[test]
fn the_engine_refuses_at_once_exactly_what_the_server_refuses_and_says_it_alike() {
    // Two servers with the same rules: one for each engine's writes.
    let (checked, _) = engine(&server(), "t1", rules());
    let (unchecked, _) = engine(&server(), "t1", Rules::new());
    block_on(checked.sync_now()).unwrap();
    block_on(unchecked.sync_now()).unwrap();
    let mut refused = 0;
    for (w, v) in writes() {
        let local = write(&checked, w, &v);
        // The engine without rules queues it; the server judges it.
        write(&unchecked, w, &v).unwrap_or_else(|e| panic!("{w:?}: {e}"));
        block_on(unchecked.sync_now()).unwrap();
        let dead = block_on(unchecked.dead_letters());
        match local {
            Ok(()) => assert!(dead.is_empty(), "{w:?}: the server refused {dead:?}"),
            Err(e) => {
                refused += 1;
                let [entry] = &dead[..] else {
                    panic!("{w:?}: refused locally ({e}) but the server took it");
                };
                let OutboxState::DeadLetter { code, message, .. } = &entry.state else {
                    panic!("{entry:?}");
                };
                assert_eq!((e.code(), e.message()), (*code, message.clone()), "{w:?}");
                block_on(unchecked.discard(entry.seq)).unwrap();
            }
        }
        assert!(block_on(unchecked.outbox()).is_empty());
    }
    assert_eq!(refused, 8, "each broken rule was refused");
    // What the checked engine accepted, the server applied: none of it
    // dead-letters.
    block_on(checked.sync_now()).unwrap();
    assert!(block_on(checked.dead_letters()).is_empty());
    assert!(block_on(checked.outbox()).is_empty());
    assert_eq!(block_on(checked.metrics()).synced, 4);
}

#[test]
fn a_refused_write_queues_nothing_and_changes_nothing() {
    let server = server();
    let (e, _) = engine(&server, "t1", rules());
    block_on(e.create(
        "rooms",
        Some("101"),
        f(json!({"number": "101", "status": "dirty"})),
    ))
    .unwrap();
    let before = (
        block_on(e.outbox()),
        block_on(e.get("rooms", "101")).unwrap(),
    );
    let audit = block_on(e.audit(0, 1000)).unwrap().len();

    let err = block_on(e.patch("rooms", "101", f(json!({"status": "burnt"})))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EventInvalid);
    assert!(
        err.message().starts_with("payload.status: must be one of"),
        "{err}"
    );
    let err = block_on(e.create("rooms", Some("102"), f(json!({"status": "dirty"})))).unwrap_err();
    assert_eq!(err.message(), "payload.number: is required");
    let err = block_on(e.create("catalog", None, f(json!({"price": 3})))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation);
    assert_eq!(
        err.message(),
        "collection: catalog is read-only for terminals"
    );
    let err = block_on(e.delete("catalog", "soap")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation);

    assert_eq!(
        (
            block_on(e.outbox()),
            block_on(e.get("rooms", "101")).unwrap()
        ),
        before
    );
    assert_eq!(block_on(e.get("rooms", "102")).unwrap(), None);
    assert_eq!(block_on(e.audit(0, 1000)).unwrap().len(), audit);
    let status = block_on(e.status());
    assert_eq!((status.pending, status.dead_letters), (1, 0));
}

#[test]
fn an_append_only_collection_in_the_rules_is_append_only_in_the_engine() {
    let server = server();
    let (e, _) = engine(&server, "t1", rules());
    assert_eq!(e.policy("sales"), ConflictPolicy::AppendOnly);
    let sale = f(json!({"total_cents": 250, "currency": "EUR", "lines": [{"sku": "A1"}]}));
    let err = block_on(e.create("sales", Some("s-1"), sale.clone())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation);
    assert_eq!(
        err.message(),
        "kind: collection sales is append-only, only append is accepted"
    );
    let err = block_on(e.append("sales", Some("s-2"), f(json!({"total_cents": -1})))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EventInvalid);
    block_on(e.append("sales", Some("s-1"), sale)).unwrap();
    block_on(e.sync_now()).unwrap();
    assert_eq!(block_on(e.metrics()).synced, 1);
    assert!(block_on(e.dead_letters()).is_empty());
}

#[test]
fn a_person_cannot_edit_a_dead_letter_or_a_conflict_into_a_refused_write() {
    let server = server();
    // Queued without the rules (an older build), refused by the server.
    let (old, store) = engine(&server, "t1", Rules::new());
    block_on(old.sync_now()).unwrap();
    block_on(old.create(
        "rooms",
        Some("101"),
        f(json!({"number": "101", "status": "x"})),
    ))
    .unwrap();
    block_on(old.sync_now()).unwrap();
    drop(old);
    let e = block_on(Engine::open(
        store,
        net(&server, "t1"),
        SimEnv::new(T0 + 1_000, 12),
        EngineConfig::new("client-t1", "t1", "b1").with_rules(rules()),
    ))
    .unwrap();
    let [dead] = &block_on(e.dead_letters())[..] else {
        panic!("one dead letter");
    };
    let err = block_on(e.retry_edited(
        dead.seq,
        Some(f(json!({"number": "101", "status": "sparkling"}))),
    ))
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::EventInvalid);
    assert_eq!(block_on(e.dead_letters()).len(), 1, "still there to fix");
    block_on(e.retry_edited(
        dead.seq,
        Some(f(json!({"number": "101", "status": "clean"}))),
    ))
    .unwrap();
    block_on(e.sync_now()).unwrap();
    assert!(block_on(e.dead_letters()).is_empty());
    assert_eq!(block_on(e.metrics()).synced, 1);
}

#[test]
fn a_conflict_resolved_by_an_edit_the_server_would_refuse_stays_open() {
    let server = server();
    let open = |terminal: &str, seed| {
        let config = EngineConfig::new(format!("client-{terminal}"), terminal, "b1")
            .with_policy("rooms", ConflictPolicy::ManualResolve)
            .with_rules(rules());
        block_on(Engine::open(
            MemoryStore::new(),
            net(&server, terminal),
            SimEnv::new(T0, seed),
            config,
        ))
        .unwrap()
    };
    let (a, b) = (open("t1", 1), open("t2", 2));
    block_on(b.create(
        "rooms",
        Some("101"),
        f(json!({"number": "101", "status": "dirty"})),
    ))
    .unwrap();
    block_on(b.sync_now()).unwrap();
    block_on(a.sync_now()).unwrap();
    block_on(a.patch("rooms", "101", f(json!({"status": "clean"})))).unwrap();
    block_on(b.patch("rooms", "101", f(json!({"status": "inspected"})))).unwrap();
    block_on(b.sync_now()).unwrap();
    block_on(a.sync_now()).unwrap();
    let key = EntityKey::new("rooms", "101");
    assert_eq!(block_on(a.conflicts()).len(), 1);
    let edited = f(json!({"number": "101", "status": "sparkling"}));
    let err = block_on(a.resolve(&key, Resolution::Edited(edited))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EventInvalid);
    assert_eq!(block_on(a.conflicts()).len(), 1, "still open to resolve");
    let edited = f(json!({"number": "101", "status": "clean"}));
    block_on(a.resolve(&key, Resolution::Edited(edited))).unwrap();
    block_on(a.sync_now()).unwrap();
    assert!(block_on(a.conflicts()).is_empty());
    assert!(block_on(a.dead_letters()).is_empty());
}
