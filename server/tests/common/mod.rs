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
