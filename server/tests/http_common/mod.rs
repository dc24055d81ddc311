//! A real server on loopback for the HTTP tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use tidesync::{payload_checksum, Hlc, Mutation, MutationKind, OpId, PushRequest};
use tidesync_server::auth::{self, CredentialStore};
use tidesync_server::http::{self, AppState, HttpConfig};
use tidesync_server::{Backend, SqliteStore, SyncService, TerminalContext};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub app: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Stops accepting, lets requests in progress finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// A new key for `terminal` of tenant `acme`, branch `branch`.
    pub fn key(&self, branch: &str, terminal: &str) -> String {
        issue(
            &self.app,
            TerminalContext::new("acme", branch, terminal),
            None,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn issue(app: &AppState, ctx: TerminalContext, expires_at_ms: Option<u64>) -> String {
    let (key, credential) = auth::new_key(ctx, tidesync_server::now_ms(), expires_at_ms).unwrap();
    blocking(|| app.service.store().put_credential(&credential)).unwrap();
    key
}

/// Runs a storage call from async test code (the PostgreSQL client blocks
/// on a runtime of its own, which a tokio worker thread may not do).
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

pub fn sqlite_backend() -> Backend {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tidesync_http_{}_{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    Backend::new(SqliteStore::temporary(path).unwrap())
}

pub fn relaxed() -> HttpConfig {
    HttpConfig {
        rate_per_sec: 0.0,
        ..HttpConfig::default()
    }
}

pub async fn start(config: HttpConfig) -> Server {
    start_with(SyncService::new(sqlite_backend()), config, "127.0.0.1:0").await
}

pub async fn start_with(service: SyncService<Backend>, config: HttpConfig, addr: &str) -> Server {
    let app = AppState::new(service, config);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(listener, Arc::clone(&app), async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        addr,
        app,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn op(n: u64) -> OpId {
    OpId::from_parts(1_700_000_000_000 + n, u128::from(n) * 7919)
}

pub fn mutation(branch: &str, terminal: &str, n: u64, id: &str, payload: Value) -> Mutation {
    let payload = payload.as_object().cloned();
    Mutation {
        checksum: payload_checksum("rooms", id, MutationKind::Create, payload.as_ref()),
        op_id: op(n),
        client_id: format!("client-{terminal}"),
        terminal_id: terminal.into(),
        branch_id: branch.into(),
        collection: "rooms".into(),
        entity_id: id.into(),
        kind: MutationKind::Create,
        payload,
        base_version: 0,
        hlc: Hlc {
            wall_ms: 1_700_000_000_000,
            counter: 0,
            node: 1,
        },
        schema_version: 1,
        offline: false,
    }
}

pub fn push_body(mutations: Vec<Mutation>) -> PushRequest {
    PushRequest {
        protocol: 1,
        attempt: 0,
        mutations,
    }
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

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_trait::async_trait;
use tidesync::env::SimEnv;
use tidesync::{
    ChangesPage, ChangesRequest, Engine, EngineConfig, EntityKey, Fields, PushResponse,
    ReconcileRequest, ReconcileResponse, SnapshotPage, SnapshotRequest, Transport, TransportError,
};
use tidesync_server::client::HttpTransport;
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

fn obj(v: Value) -> Fields {
    v.as_object().unwrap().clone()
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
    let (key, credential) = auth::new_key(
        TerminalContext::new("acme", "b1", "t1"),
        tidesync_server::now_ms(),
        None,
    )
    .unwrap();
    blocking(|| service.store().put_credential(&credential)).unwrap();

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
