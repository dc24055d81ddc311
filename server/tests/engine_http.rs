//! The core engine end to end over real HTTP: a terminal works offline, the
//! server comes up, the outbox flushes, and every mutation is applied on the
//! server exactly once, even when push answers are lost on the way back.

mod http_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http_common::*;
use serde_json::json;
use tidesync::env::SimEnv;
use tidesync::{
    ChangesPage, ChangesRequest, Engine, EngineConfig, EntityKey, Fields, PushRequest,
    PushResponse, ReconcileRequest, ReconcileResponse, SnapshotPage, SnapshotRequest, Transport,
    TransportError,
};
use tidesync_server::auth::{self, CredentialStore};
use tidesync_server::client::HttpTransport;
use tidesync_server::{ServerStore, SyncService, TerminalContext};

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

fn obj(v: serde_json::Value) -> Fields {
    v.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_writes_flush_exactly_once_after_reconnect() {
    // A port with nothing listening: the terminal is offline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = SyncService::new(sqlite_backend());
    let (key, credential) = auth::new_key(
        TerminalContext::new("acme", "b1", "t1"),
        tidesync_server::now_ms(),
        None,
    )
    .unwrap();
    service.store().put_credential(&credential).unwrap();

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
                obj(json!({"n": i, "status": "dirty"})),
            )
            .await
            .unwrap();
    }
    for i in 0..10 {
        engine
            .patch("rooms", &format!("r{i}"), obj(json!({"status": "clean"})))
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
    let server = start_with(service, relaxed(), &format!("127.0.0.1:{port}")).await;
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
    let ctx = TerminalContext::new("acme", "b1", "t1");
    let audit = server.app.service.store().audit(&ctx.partition()).unwrap();
    assert_eq!(audit.len(), 40);
    for i in 0..30 {
        let id = format!("r{i}");
        let e = server
            .app
            .service
            .store()
            .transaction(&ctx.partition(), |tx| {
                tx.entity(&EntityKey::new("rooms", &id))
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
