//! A store that dies at its N-th write, for every N of an engine scenario,
//! leaves exactly the state of the commits before it: the SQLCipher file,
//! reopened, reads back as the failure-free run read after the same number
//! of commits (nothing of the interrupted batch, nothing of the earlier ones
//! lost), and a fresh engine on it then converges with the server, each
//! mutation applied once.
//!
//! The failure is SQLite's own: the interrupted batch has issued some of its
//! writes inside a real transaction when it fails and rolls back
//! ([`InjectFaults`]); after that, the "process" is dead (every later commit
//! fails) until the file is reopened.

mod common;

use async_trait::async_trait;
use futures::executor::block_on;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tidesync::env::{Environment, SimEnv};
use tidesync::store::conformance::{contents, Contents};
use tidesync::store::{
    AuditEntry, ConflictRecord, EntityRecord, InjectFaults, OutboxEntry, Store, StoreError,
    SyncMeta, WriteBatch,
};
use tidesync::{ConflictPolicy, Engine, EngineConfig, EntityKey, Fields, Hlc};
use tidesync_server::storage::Partition;
use tidesync_server::{InProcessTransport, MemoryServerStore, SyncService, TerminalContext};
use tidesync_sqlcipher::SqlCipherStore;

const T0: u64 = 1_767_225_600_000;
type Server = SyncService<MemoryServerStore>;

/// Counts writes across commits; dies at write `fail_at`; in the reference
/// run, records the contents after every commit.
#[derive(Clone)]
struct Dying {
    inner: SqlCipherStore,
    written: Arc<AtomicUsize>,
    commits: Arc<AtomicUsize>,
    fail_at: Option<usize>,
    dead: Arc<AtomicBool>,
    record: Option<Arc<Mutex<Vec<Contents>>>>,
}

#[async_trait]
impl Store for Dying {
    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        self.inner.load_meta().await
    }
    async fn load_credential(
        &self,
    ) -> Result<Option<tidesync::store::StoredCredential>, StoreError> {
        self.inner.load_credential().await
    }
    fn keeps_secrets(&self) -> bool {
        self.inner.keeps_secrets()
    }
    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.inner.scan(collection).await
    }
    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        self.inner.scan_page(collection, after, limit).await
    }
    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.inner.collections().await
    }
    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox().await
    }
    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        self.inner.conflicts().await
    }
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(after, limit).await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the process is dead".into()));
        }
        let before = self.written.load(Ordering::SeqCst);
        let n = batch.ops.len();
        if let Some(at) = self
            .fail_at
            .filter(|&at| at >= before && at < before + n.max(1))
        {
            self.dead.store(true, Ordering::SeqCst);
            self.inner.fail_next_commit_after(at - before);
            let result = self.inner.commit(batch).await;
            assert!(result.is_err(), "the armed commit failed");
            return result;
        }
        self.inner.commit(batch).await?;
        self.written.fetch_add(n.max(1), Ordering::SeqCst);
        self.commits.fetch_add(1, Ordering::SeqCst);
        if let Some(rec) = &self.record {
            let c = contents(&self.inner).await;
            rec.lock().unwrap().push(c);
        }
        Ok(())
    }
}

fn f(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn server() -> (Arc<Server>, SimEnv) {
    let env = SimEnv::new(T0, 11);
    let clock = env.clone();
    let server =
        Arc::new(SyncService::new(MemoryServerStore::new()).with_clock(move || clock.now_ms()));
    server
        .seed(
            &Partition::new("hotel", "b1"),
            Hlc::default(),
            (1..=4).map(|k| {
                (
                    EntityKey::new("rooms", format!("room-{k}")),
                    f(json!({"status": "dirty", "notes": "", "floor": k})),
                )
            }),
        )
        .unwrap();
    (server, env)
}

fn config() -> EngineConfig {
    EngineConfig::new("client-desk", "desk", "b1")
        .with_policy("rooms", ConflictPolicy::MergeThreeWay)
        .with_policy("incidents", ConflictPolicy::ManualResolve)
}

type Eng<S> = Engine<S, InProcessTransport<MemoryServerStore>, SimEnv>;

fn open<S: Store>(
    store: S,
    server: &Arc<Server>,
    env: &SimEnv,
) -> Result<Eng<S>, tidesync::EngineError> {
    block_on(Engine::open(
        store,
        InProcessTransport::new(
            Arc::clone(server),
            TerminalContext::new("hotel", "b1", "desk"),
        ),
        env.clone(),
        config(),
    ))
}

/// Another device's write, straight into the server.
fn other_device(server: &Server, env: &SimEnv, id: &str, fields: Fields) {
    server
        .admin_put(
            &Partition::new("hotel", "b1"),
            &EntityKey::new("rooms", id),
            fields,
            Hlc {
                wall_ms: env.now_ms(),
                counter: 0,
                node: 9,
            },
        )
        .unwrap();
}

/// The scenario: first sync, offline writes (create, patch, delete, an
/// incident), a push and pull, a concurrent edit merged three-way, a second
/// round. Every step's error is ignored: after the
/// store dies, they all fail.
fn scenario<S: Store>(store: S, server: &Arc<Server>, env: &SimEnv) {
    let Ok(e) = open(store, server, env) else {
        return;
    };
    let _ = block_on(e.sync_now());
    env.advance(1_000);
    let _ = block_on(e.create(
        "rooms",
        Some("room-9"),
        f(json!({"status": "dirty", "floor": 9})),
    ));
    let _ = block_on(e.patch("rooms", "room-1", f(json!({"status": "clean"}))));
    let _ = block_on(e.patch("rooms", "room-1", f(json!({"notes": "towels"}))));
    let _ = block_on(e.delete("rooms", "room-2"));
    let _ = block_on(e.create(
        "incidents",
        Some("inc-1"),
        f(json!({"room": "101", "what": "leak"})),
    ));
    env.advance(1_000);
    let _ = block_on(e.sync_now());
    other_device(
        server,
        env,
        "room-3",
        f(json!({"status": "dirty", "notes": "vip", "floor": 3})),
    );
    let _ = block_on(e.patch("rooms", "room-3", f(json!({"status": "inspected"}))));
    env.advance(1_000);
    let _ = block_on(e.sync_now());
    let _ = block_on(e.patch("rooms", "room-4", f(json!({"status": "clean"}))));
    let _ = block_on(e.patch("rooms", "room-9", f(json!({"status": "clean"}))));
    env.advance(1_000);
    let _ = block_on(e.sync_now());
}

#[test]
fn a_store_that_dies_at_any_write_keeps_every_commit_before_it() {
    // The failure-free run: how many writes, and the contents after each commit.
    let path = common::fresh_path("crash-ref");
    let states = Arc::new(Mutex::new(Vec::new()));
    let reference = Dying {
        inner: SqlCipherStore::open(&path, common::raw_key()).unwrap(),
        written: Default::default(),
        commits: Default::default(),
        fail_at: None,
        dead: Default::default(),
        record: Some(Arc::clone(&states)),
    };
    states
        .lock()
        .unwrap()
        .push(block_on(contents(&reference.inner)));
    let (srv, env) = server();
    scenario(reference.clone(), &srv, &env);
    let total = reference.written.load(Ordering::SeqCst);
    let states = states.lock().unwrap().clone();
    let last = states.last().unwrap();
    assert!(
        last.outbox.is_empty(),
        "the reference run synced everything: {:?}",
        last.outbox
    );
    assert!(
        total > 30 && states.len() > 10,
        "a scenario worth the name: {total} writes, {} commits",
        states.len()
    );

    for at in 0..total {
        let path = common::fresh_path("crash");
        let dying = Dying {
            inner: SqlCipherStore::open(&path, common::raw_key()).unwrap(),
            written: Default::default(),
            commits: Default::default(),
            fail_at: Some(at),
            dead: Default::default(),
            record: None,
        };
        let (srv, env) = server();
        scenario(dying.clone(), &srv, &env);
        assert!(dying.dead.load(Ordering::SeqCst), "write {at} was reached");
        let committed = dying.commits.load(Ordering::SeqCst);
        dying.inner.close();
        drop(dying);

        // Restart: the file holds exactly the first `committed` commits.
        let store = SqlCipherStore::open(&path, common::raw_key()).unwrap();
        let got = block_on(contents(&store));
        assert_eq!(got, states[committed], "died at write {at} (in commit {}): the file is not the state after {committed} commits", committed + 1);

        // And a fresh engine on it converges with the server.
        env.advance(60_000);
        let e = open(store.clone(), &srv, &env).unwrap();
        for _ in 0..5 {
            block_on(e.sync_now()).unwrap();
            env.advance(5_000);
        }
        let outbox = block_on(e.outbox());
        assert!(
            outbox.is_empty(),
            "died at write {at}: still queued after recovery: {outbox:?}"
        );
        let snap = srv
            .snapshot(
                &TerminalContext::new("hotel", "b1", "admin"),
                tidesync::SnapshotRequest {
                    after: None,
                    limit: 1000,
                },
            )
            .unwrap();
        assert!(
            snap.entities.len() >= 4,
            "died at write {at}: {:?}",
            snap.entities
        );
        for state in &snap.entities {
            let local = block_on(e.get(&state.collection, &state.id)).unwrap();
            let what = format!("died at write {at}: {}/{}", state.collection, state.id);
            if state.deleted {
                assert!(
                    local.is_none_or(|l| l.deleted),
                    "{what} is deleted on the server only"
                );
            } else {
                let local = local.unwrap_or_else(|| panic!("{what} is on the server, not here"));
                assert_eq!(local.fields, state.fields, "{what} differs");
                assert_eq!(
                    local.server_version, state.version,
                    "{what}: versions differ"
                );
            }
        }
        store.close();
    }
}
