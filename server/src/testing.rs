//! Fixtures for the server's tests and its benchmark (feature `testing`,
//! which the package turns on for its own tests and bench through a
//! dev-dependency on itself): valid mutations, throw-away databases, API
//! keys, and a real server on a loopback port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tidesync::{
    payload_checksum, Fields, Hlc, Mutation, MutationKind, OpId, PushRequest, PROTOCOL_VERSION,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth;
use crate::context::TerminalContext;
use crate::http::{self, AppState, HttpConfig};
use crate::service::SyncService;
use crate::storage::{Backend, CredentialStore, PgStore, SqliteStore, SqliteSync};

/// The op id of test op number `n`: a valid ULID, different for every `n`.
pub fn op_id(n: u64) -> OpId {
    OpId::from_parts(1_700_000_000_000 + n, u128::from(n) * 7919)
}

/// A JSON object as entity fields. Panics on anything but an object.
pub fn fields(v: Value) -> Fields {
    v.as_object().expect("a JSON object").clone()
}

/// A valid mutation by `ctx`'s terminal in its branch, with its checksum.
pub fn mutation(
    ctx: &TerminalContext,
    op_id: OpId,
    kind: MutationKind,
    collection: &str,
    id: &str,
    payload: Option<Value>,
    base_version: u64,
) -> Mutation {
    let payload = payload.map(fields);
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
        anomaly: None,
    }
}

/// A first push (attempt 0) of `mutations` in this protocol version.
pub fn push_request(mutations: Vec<Mutation>) -> PushRequest {
    PushRequest {
        protocol: PROTOCOL_VERSION,
        attempt: 0,
        mutations,
    }
}

/// `prefix` made unique on this machine: with the process id, a counter
/// and the clock's nanoseconds (for file and schema names).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new SQLite database in the temp directory, deleted when dropped.
pub fn temporary_sqlite(sync: SqliteSync) -> SqliteStore {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name("tidesync_test")));
    SqliteStore::temporary(path, sync).expect("open SQLite")
}

/// The URL of the PostgreSQL test database, `TIDESYNC_TEST_PG_URL`.
/// Panics without it: scripts/test-server.sh starts a database and sets it.
pub fn test_pg_url() -> String {
    std::env::var("TIDESYNC_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "TIDESYNC_TEST_PG_URL is not set: the PostgreSQL suite needs a database \
             (scripts/test-server.sh starts one)"
        )
    })
}

/// A new schema in the PostgreSQL database at `url`, dropped with the store.
pub fn temporary_postgres(url: &str) -> PgStore {
    PgStore::temporary(url, &unique_name("ts_test")).expect("open PostgreSQL")
}

/// Issues a key for `ctx`, valid until `expires_at_ms` if given, and stores
/// its credential in `store`; returns the key.
pub fn issue_key(
    store: &(impl CredentialStore + ?Sized),
    ctx: TerminalContext,
    expires_at_ms: Option<u64>,
) -> String {
    let (key, credential) =
        auth::new_key(ctx, tidesync::env::unix_now_ms(), expires_at_ms).expect("randomness");
    store
        .put_credential(&credential)
        .expect("store the credential");
    key
}

/// A real server in this process, on a loopback port, until
/// [`LoopbackServer::shutdown`]. Needs a multi-threaded tokio runtime.
#[derive(Debug)]
pub struct LoopbackServer {
    /// `http://<addr>`.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (service, store, counters).
    pub app: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl LoopbackServer {
    /// Serves `service` with `config` on `addr` (`127.0.0.1:0`: a free port).
    pub async fn start(service: SyncService<Backend>, config: HttpConfig, addr: &str) -> Self {
        let app = AppState::new(service, config);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, Arc::clone(&app), async move {
            let _ = stopped.await;
        }));
        LoopbackServer {
            base: format!("http://{addr}"),
            addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new key for `terminal` of tenant `acme`, branch `branch`.
    pub fn key(&self, branch: &str, terminal: &str) -> String {
        let ctx = TerminalContext::new("acme", branch, terminal);
        // The PostgreSQL client blocks on a runtime of its own, which a
        // tokio worker thread may only do inside `block_in_place`.
        tokio::task::block_in_place(|| issue_key(self.app.service.store(), ctx, None))
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops accepting, lets requests in progress finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
    }
}
