//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tidesync::{
    payload_checksum, AckResult, ChangesRequest, Cursor, EntityKey, EntityState, Mutation,
};
pub use tidesync_server::testing::{fields, mutation, op_id, push_request, test_pg_url};
use tidesync_server::testing::{temporary_postgres, temporary_sqlite};
use tidesync_server::{
    Backend, Partition, ServerStore, SqliteSync, StoredEntity, SyncService, TerminalContext,
};

/// Which backend a test binary runs the suite on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    Postgres,
}

pub type Service = SyncService<Backend>;

/// A new, empty store of `kind` (its files or schema go away when dropped).
pub fn store_of(kind: Kind) -> Backend {
    match kind {
        Kind::Memory => Backend::memory(),
        Kind::Sqlite => Backend::new(temporary_sqlite(SqliteSync::Normal)),
        Kind::Postgres => Backend::new(temporary_postgres(&test_pg_url())),
    }
}

/// A new, empty store of the binary's backend.
pub fn store() -> Backend {
    store_of(crate::BACKEND)
}

pub fn service() -> Service {
    SyncService::new(store()).with_clock(|| 1_000)
}

pub fn service_with(config: tidesync_server::ServiceConfig) -> Service {
    SyncService::with_config(store(), config).with_clock(|| 1_000)
}

pub fn ctx(branch: &str, terminal: &str) -> TerminalContext {
    TerminalContext::new("acme", branch, terminal)
}

/// Recomputes the checksum after a test edited the mutation.
pub fn reseal(mut m: Mutation) -> Mutation {
    m.checksum = payload_checksum(&m.collection, &m.entity_id, m.kind, m.payload.as_ref());
    m
}

/// Pushes one mutation and returns its ack.
pub fn push1(s: &Service, ctx: &TerminalContext, m: Mutation) -> AckResult {
    let mut resp = s.push(ctx, push_request(vec![m])).expect("push");
    assert_eq!(resp.acks.len(), 1);
    resp.acks.remove(0).result
}

pub fn applied(version: u64, cursor: u64) -> AckResult {
    AckResult::Applied {
        version,
        cursor: Cursor(cursor),
    }
}

/// The stored entity, read through a transaction.
pub fn stored(s: &Service, p: &Partition, collection: &str, id: &str) -> Option<StoredEntity> {
    s.store()
        .transaction(p, |tx| tx.entity(&EntityKey::new(collection, id)))
        .unwrap()
}

/// Every change of the caller's partition, read with `changes`.
pub fn all_changes(s: &Service, ctx: &TerminalContext) -> Vec<EntityState> {
    let mut out = Vec::new();
    let mut since = Cursor(0);
    loop {
        let page = s
            .changes(ctx, ChangesRequest { since, limit: 100 })
            .unwrap();
        out.extend(page.changes);
        since = page.next;
        if !page.has_more {
            return out;
        }
    }
}

pub fn rejected_code(ack: &AckResult) -> Option<tidesync::ErrorCode> {
    match ack {
        AckResult::Rejected { code, .. } => Some(*code),
        _ => None,
    }
}

pub fn rejected_message(ack: &AckResult) -> &str {
    match ack {
        AckResult::Rejected { message, .. } => message,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ---- a database written by the 0001 schema (ledger keyed without branch)

/// An SQL string literal (both backends use standard `'…'` quoting).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One mutation applied under schema 0001: who sent it, what, and the
/// result the ledger holds for it.
#[derive(Clone, Debug)]
pub struct OldOp {
    pub ctx: TerminalContext,
    pub m: Mutation,
    pub cursor: u64,
    pub applied_at_ms: u64,
}

/// Brings an empty database to schema version 1 exactly as the migration
/// runner does (`first` is step 0001 of the backend, `int` its 64-bit
/// integer type), then writes the rows the 0001-era server wrote for three
/// applied creates: partitions, entities, changes, ledger rows keyed
/// (tenant, terminal, op_id) and one audit row each. `exec` runs SQL.
pub fn database_at_0001_with_ledger_rows(
    exec: &mut dyn FnMut(&str),
    first: &tidesync_server::storage::migrate::Migration,
    int: &str,
) -> Vec<OldOp> {
    assert_eq!(first.version, 1);
    exec(&format!(
        "CREATE TABLE schema_migrations (
             version {int} PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at_ms {int} NOT NULL)"
    ));
    exec(first.sql);
    exec(&format!(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) \
         VALUES (1, {}, {}, 1)",
        lit(first.name),
        lit(&first.checksum())
    ));
    let ops = [
        ("b1", "t1", 1, "r1"),
        ("b1", "t1", 2, "r2"),
        ("b2", "t2", 1, "r1"),
    ];
    let mut out = Vec::new();
    let mut heads: std::collections::BTreeMap<&str, u64> = Default::default();
    for (i, (branch, terminal, n, id)) in ops.into_iter().enumerate() {
        let ctx = TerminalContext::new("acme", branch, terminal);
        let m = mutation(
            &ctx,
            op_id(n),
            tidesync::MutationKind::Create,
            "rooms",
            id,
            Some(serde_json::json!({"n": n, "note": "it's old"})),
            0,
        );
        let state = tidesync::apply_mutation(None, &m, 1).unwrap();
        let head = heads.entry(branch).or_default();
        *head += 1;
        let cursor = *head;
        let applied_at_ms = 1_600_000_000_000 + i as u64;
        let audit = tidesync_server::storage::AuditRow {
            op_id: Some(m.op_id.clone()),
            terminal: Some(terminal.to_owned()),
            key: m.key(),
            version: 1,
            cursor: Cursor(cursor),
            hlc: m.hlc,
            originated_offline: m.offline,
            applied_at_ms,
            anomaly: None,
        };
        let state_json = lit(&serde_json::to_string(&state).unwrap());
        let (b, t, o) = (lit(branch), lit(terminal), lit(m.op_id.as_str()));
        exec(&format!(
            "INSERT INTO entities (tenant, branch, collection, id, version, deleted, cursor, state)
             VALUES ('acme', {b}, 'rooms', {}, 1, 0, {cursor}, {state_json});
             INSERT INTO changes (tenant, branch, cursor, state)
             VALUES ('acme', {b}, {cursor}, {state_json});
             INSERT INTO ledger (tenant, terminal, op_id, fingerprint, collection, entity_id,
                                 version, cursor)
             VALUES ('acme', {t}, {o}, {}, 'rooms', {}, 1, {cursor});
             INSERT INTO audit (tenant, branch, entry) VALUES ('acme', {b}, {});",
            lit(id),
            lit(&m.checksum),
            lit(id),
            lit(&serde_json::to_string(&audit).unwrap()),
        ));
        out.push(OldOp {
            ctx,
            m,
            cursor,
            applied_at_ms,
        });
    }
    for (branch, head) in heads {
        exec(&format!(
            "INSERT INTO partitions (tenant, branch, head) VALUES ('acme', {}, {head})",
            lit(branch)
        ));
    }
    out
}

/// What must hold once the database of
/// [`database_at_0001_with_ledger_rows`] is migrated and served by `s`:
/// every old op, retried, is a duplicate with its original result (never
/// applied again), its ledger row sits in its own branch with the time of
/// its audit row, and the branches now have ledgers of their own.
pub fn old_ops_are_still_duplicates_after_the_migration(s: &Service, old: &[OldOp]) {
    for op in old {
        assert_eq!(
            push1(s, &op.ctx, op.m.clone()),
            AckResult::Duplicate {
                version: 1,
                cursor: Cursor(op.cursor)
            },
            "{op:?}"
        );
        let p = op.ctx.partition();
        let entry = s
            .store()
            .transaction(&p, |tx| tx.ledger(&op.ctx.terminal, &op.m.op_id))
            .unwrap()
            .expect("the ledger row survived the migration");
        assert_eq!(entry.applied_at_ms, op.applied_at_ms);
        assert_eq!(entry.cursor, Cursor(op.cursor));
        assert_eq!(entry.fingerprint, op.m.checksum);
        // Not visible from the tenant's other branch.
        let other = Partition::new("acme", if p.branch == "b1" { "b2" } else { "b1" });
        let elsewhere = s
            .store()
            .transaction(&other, |tx| tx.ledger(&op.ctx.terminal, &op.m.op_id))
            .unwrap();
        assert_eq!(elsewhere, None, "{op:?}");
    }
    // A changed payload under an old op id is still refused.
    let mut changed = old[0].m.clone();
    changed.payload = Some(fields(serde_json::json!({"n": 99})));
    let changed = reseal(changed);
    assert_eq!(
        rejected_code(&push1(s, &old[0].ctx, changed)),
        Some(tidesync::ErrorCode::EventDuplicate)
    );
    assert_eq!(s.metrics().applied, 0, "nothing applied a second time");
    let b1 = TerminalContext::new("acme", "b1", "t1");
    assert_eq!(all_changes(s, &b1).len(), 2);
    // New writes continue the logs; t1's op 1 on b2 is a new op there.
    let on_b2 = TerminalContext::new("acme", "b2", "t1");
    let m = mutation(
        &on_b2,
        op_id(1),
        tidesync::MutationKind::Create,
        "rooms",
        "r9",
        Some(serde_json::json!({"n": 9})),
        0,
    );
    assert_eq!(push1(s, &on_b2, m), applied(1, 2));
    let m = mutation(
        &b1,
        op_id(3),
        tidesync::MutationKind::Create,
        "rooms",
        "r3",
        Some(serde_json::json!({"n": 3})),
        0,
    );
    assert_eq!(push1(s, &b1, m), applied(1, 3));
}
