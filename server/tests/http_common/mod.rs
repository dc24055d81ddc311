//! A real server on loopback for the HTTP tests.
#![allow(dead_code)]

use std::net::SocketAddr;
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
    app.service.store().put_credential(&credential).unwrap();
    key
}

pub fn sqlite_backend() -> Backend {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tidesync_http_{}_{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    Backend::Sqlite(SqliteStore::temporary(path).unwrap())
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
