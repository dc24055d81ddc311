//! A real server on loopback for the HTTP tests.
#![allow(dead_code)]

use serde_json::{json, Value};
use tidesync::{Mutation, MutationKind, PushRequest};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::issue_key;
use tidesync_server::testing::{mutation, op_id, temporary_sqlite};
use tidesync_server::{Backend, SqliteSync, SyncService, TerminalContext};

pub use tidesync_server::testing::LoopbackServer as Server;

/// Runs a storage call from async test code (the PostgreSQL client blocks
/// on a runtime of its own, which a tokio worker thread may not do).
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

pub fn sqlite_backend() -> Backend {
    Backend::new(temporary_sqlite(SqliteSync::Normal))
}

pub fn relaxed() -> HttpConfig {
    HttpConfig {
        rate_per_sec: 0.0,
        ..HttpConfig::default()
    }
}

/// A server on SQLite on a free loopback port.
pub async fn start(config: HttpConfig) -> Server {
    Server::start(SyncService::new(sqlite_backend()), config, "127.0.0.1:0").await
}

/// Op number `n` of `terminal` in `branch` (tenant `acme`): create room `id`.
pub fn create_room(branch: &str, terminal: &str, n: u64, id: &str, payload: Value) -> Mutation {
    let ctx = TerminalContext::new("acme", branch, terminal);
    mutation(
        &ctx,
        op_id(n),
        MutationKind::Create,
        "rooms",
        id,
        Some(payload),
        0,
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The `code` of a JSON error body.
pub async fn code_of(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["code"].as_str().unwrap_or_default().to_owned()
}

pub fn room(n: u64) -> Value {
    json!({"number": n, "status": "dirty"})
}

// ---- the engine end to end over HTTP (used by engine_http.rs and postgres.rs)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tidesync::env::SimEnv;
use tidesync::{
    ChangesPage, ChangesRequest, Engine, EngineConfig, EntityKey, PushResponse, ReconcileRequest,
    ReconcileResponse, SnapshotPage, SnapshotRequest, Transport, TransportError,
};
use tidesync_server::client::HttpTransport;
use tidesync_server::testing::fields;
use tidesync_server::ServerStore;

/// HTTP, except that the answers of the first `lose` pushes are lost after
/// the server processed them (the terminal sees a timeout).
struct LossyTransport {
    inner: HttpTransport,
    lose: AtomicUsize,
}

#[async_trait]
impl Transport for LossyTransport {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        let resp = self.inner.push(request).await?;
        let lose = self.lose.load(Ordering::SeqCst);
        if lose > 0 {
            self.lose.store(lose - 1, Ordering::SeqCst);
            return Err(TransportError::Timeout);
        }
        Ok(resp)
    }
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        self.inner.changes(request).await
    }
    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        self.inner.snapshot(request).await
    }
    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        self.inner.reconcile(request).await
    }
}

/// A terminal works offline, the server (on `service`'s store) comes up,
/// the outbox flushes with lost answers on the way, and every mutation is
/// applied exactly once.
pub async fn offline_writes_flush_exactly_once(service: SyncService<Backend>) {
    // A port with nothing listening: the terminal is offline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctx = TerminalContext::new("acme", "b1", "t1");
    let key = blocking(|| issue_key(service.store(), ctx.clone(), None));

    let transport = LossyTransport {
        inner: HttpTransport::with_timeout(
            format!("http://127.0.0.1:{port}"),
            key,
            "b1",
            Duration::from_secs(10),
        ),
        lose: AtomicUsize::new(2),
    };
    let env = SimEnv::new(tidesync_server::now_ms(), 42);
    let engine = Engine::open(
        tidesync::MemoryStore::new(),
        transport,
        env.clone(),
        EngineConfig::new("install-1", "t1", "b1"),
    )
    .await
    .unwrap();

    for i in 0..30 {
        engine
            .create(
                "rooms",
                Some(&format!("r{i}")),
                fields(json!({"n": i, "status": "dirty"})),
            )
            .await
            .unwrap();
    }
    for i in 0..10 {
        engine
            .patch(
                "rooms",
                &format!("r{i}"),
                fields(json!({"status": "clean"})),
            )
            .await
            .unwrap();
    }
    let _ = engine.sync_now().await;
    assert_eq!(
        engine.outbox().await.len(),
        40,
        "nothing left while offline"
    );

    // The server comes up on that port.
    let server = Server::start(service, relaxed(), &format!("127.0.0.1:{port}")).await;
    for _ in 0..30 {
        env.advance(3_600_000); // past any backoff
        let _ = engine.sync_now().await;
        if engine.outbox().await.is_empty() {
            break;
        }
    }
    assert!(
        engine.outbox().await.is_empty(),
        "{:?}",
        engine.outbox().await
    );
    assert!(engine.dead_letters().await.is_empty());

    let m = server.app.service.metrics();
    assert_eq!(m.applied, 40, "every mutation applied once: {m:?}");
    assert!(m.duplicates > 0, "lost answers were retried: {m:?}");
    let audit = blocking(|| server.app.service.store().audit(&ctx.partition())).unwrap();
    assert_eq!(audit.len(), 40);
    for i in 0..30 {
        let id = format!("r{i}");
        let store = server.app.service.store();
        let e = blocking(|| {
            store.transaction(&ctx.partition(), |tx| {
                tx.entity(&EntityKey::new("rooms", &id))
            })
        })
        .unwrap()
        .unwrap();
        let (version, status) = if i < 10 { (2, "clean") } else { (1, "dirty") };
        assert_eq!(e.state.version, version, "{id}");
        assert_eq!(e.state.fields["status"], status, "{id}");
        assert!(e.state.fields.get("n").is_some());
        let local = engine.get("rooms", &id).await.unwrap().unwrap();
        assert_eq!(
            local.server_version, version,
            "the terminal caught up: {id}"
        );
    }
    server.shutdown().await;
}
