//! Helpers shared by the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use tidesync::{
    payload_checksum, AckResult, ChangesRequest, Cursor, EntityKey, EntityState, Fields, Hlc,
    Mutation, MutationKind, OpId, PushRequest, PROTOCOL_VERSION,
};
use tidesync_server::{
    Backend, Partition, PgStore, ServerStore, SqliteStore, StoredEntity, SyncService,
    TerminalContext,
};

/// Which backend a test binary runs the suite on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    Postgres,
}

pub type Service = SyncService<Backend>;

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PostgreSQL URL of the test database. Required: a PostgreSQL test
/// binary without it fails (scripts/test-server.sh starts a server and sets it).
pub fn pg_url() -> String {
    std::env::var("TIDESYNC_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "TIDESYNC_TEST_PG_URL is not set: the PostgreSQL suite needs a database \
             (scripts/test-server.sh starts one)"
        )
    })
}

/// A new, empty store of `kind` (its files or schema go away when dropped).
pub fn store_of(kind: Kind) -> Backend {
    match kind {
        Kind::Memory => Backend::memory(),
        Kind::Sqlite => {
            let path = std::env::temp_dir().join(format!("{}.db", unique("tidesync_test")));
            Backend::new(SqliteStore::temporary(path).expect("open SQLite"))
        }
        Kind::Postgres => Backend::new(
            PgStore::temporary(&pg_url(), &unique("ts_test")).expect("open PostgreSQL"),
        ),
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

pub fn op(n: u64) -> OpId {
    OpId::from_parts(1_700_000_000_000 + n, u128::from(n) * 7919)
}

pub fn obj(v: Value) -> Fields {
    v.as_object().expect("a JSON object").clone()
}

/// A valid mutation of `ctx`'s terminal and branch.
pub fn mutation(
    ctx: &TerminalContext,
    op_id: OpId,
    kind: MutationKind,
    collection: &str,
    id: &str,
    payload: Option<Value>,
    base_version: u64,
) -> Mutation {
    let payload = payload.map(obj);
    Mutation {
        checksum: payload_checksum(collection, id, kind, payload.as_ref()),
        op_id,
        client_id: format!("client-{}", ctx.terminal),
        terminal_id: ctx.terminal.clone(),
        branch_id: ctx.branch.clone(),
        collection: collection.into(),
        entity_id: id.into(),
        kind,
        payload,
        base_version,
        hlc: Hlc {
            wall_ms: 1_700_000_000_000,
            counter: 0,
            node: 1,
        },
        schema_version: 1,
        offline: false,
    }
}

/// Recomputes the checksum after a test edited the mutation.
pub fn reseal(mut m: Mutation) -> Mutation {
    m.checksum = payload_checksum(&m.collection, &m.entity_id, m.kind, m.payload.as_ref());
    m
}

pub fn request(mutations: Vec<Mutation>) -> PushRequest {
    PushRequest {
        protocol: PROTOCOL_VERSION,
        attempt: 0,
        mutations,
    }
}

/// Pushes one mutation and returns its ack.
pub fn push1(s: &Service, ctx: &TerminalContext, m: Mutation) -> AckResult {
    let mut resp = s.push(ctx, request(vec![m])).expect("push");
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
