//! Pull, cursor, staleness and reconcile.

use crate::common::*;
use tidesync::store::EntityRecord;

#[test]
fn status_goes_stale_after_a_day_without_a_complete_pull() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    assert!(block_on(engine.status()).stale, "no snapshot yet");
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
    net.set_offline(true);
    w.env.advance(23 * 3_600_000);
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
    w.env.advance(2 * 3_600_000);
    let s = block_on(engine.status());
    assert!(s.stale);
    assert_eq!(s.code(), Some(ErrorCode::OfflinePrimerStale));
    assert!(s.drift_age_ms.unwrap() >= 25 * 3_600_000);
    net.set_offline(false);
    block_on(engine.set_online(true));
    block_on(engine.sync_now()).unwrap();
    assert!(!block_on(engine.status()).stale);
}

#[test]
fn reconcile_repairs_drift_without_touching_pending_mutations() {
    let w = World::new();
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-1", f(json!({"status": "clean"})))).unwrap();
    // Drift: the local copy of room-2 is corrupted to an old version and
    // room-3 vanished locally (say, a restored backup).
    let mut rec = block_on(store.get(&room(2))).unwrap().unwrap();
    rec.server.as_mut().unwrap().version = 0;
    let mut gone = block_on(store.get(&room(3))).unwrap().unwrap();
    gone.server = None;
    gone.view = None;
    block_on(store.commit(tidesync::store::WriteBatch {
        ops: vec![
            tidesync::store::WriteOp::PutEntity(rec),
            tidesync::store::WriteOp::DeleteEntity(gone.key.clone()),
        ],
    }))
    .unwrap();
    let runs = block_on(engine.metrics()).reconcile_runs;
    let r = block_on(engine.reconcile(Some(vec!["rooms".into()]))).unwrap();
    assert_eq!(r.pulled, 2, "{r:?}");
    assert_eq!(
        block_on(engine.outbox()).len(),
        1,
        "the pending patch is untouched"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-3"))
            .unwrap()
            .unwrap()
            .fields["floor"],
        3
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "clean"
    );
    assert_eq!(block_on(engine.metrics()).reconcile_runs, runs + 1);
    let again = block_on(engine.reconcile(Some(vec!["rooms".into()]))).unwrap();
    assert_eq!(again.pulled, 0);
}

#[test]
fn cursor_commits_with_the_changes_it_covers() {
    let w = World::new();
    let net = w.net("t1");
    let store = FailingStore::new(MemoryStore::new());
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    let before = block_on(engine.meta()).cursor;
    w.admin(room(1), f(json!({"status": "ooo"})));
    store.fail_nth_commit(1);
    assert!(block_on(engine.pull()).is_err());
    assert_eq!(
        block_on(engine.meta()).cursor,
        before,
        "no cursor without its changes"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "dirty"
    );
    block_on(engine.pull()).unwrap();
    assert!(block_on(engine.meta()).cursor > before);
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "ooo"
    );
}

#[test]
fn a_server_that_forgot_the_cursor_triggers_a_new_snapshot_and_keeps_pending_work() {
    let w = World::new();
    for k in 0..5 {
        w.admin(room(1), f(json!({"status": "dirty", "floor": 1, "n": k})));
    }
    let net = w.net("t1");
    let store = MemoryStore::new();
    let engine = w.open(store.clone(), net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.meta()).cursor.unwrap().0 > 4);
    drop(engine);
    // The server is restored from an older backup: same ids, a shorter log.
    let restored = World::new();
    let net = Net {
        server: restored.server.clone(),
        ..net
    };
    let engine = w.open(store, net, "t1");
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "clean"})))).unwrap();
    block_on(engine.sync_now()).unwrap();
    let meta = block_on(engine.meta());
    assert_eq!(meta.snapshot, tidesync::store::SnapshotProgress::Done);
    assert!(
        meta.cursor.unwrap().0 <= 4,
        "cursor restarted from the restored log: {meta:?}"
    );
    assert_eq!(
        block_on(engine.get("rooms", "room-1"))
            .unwrap()
            .unwrap()
            .fields,
        f(json!({"status": "dirty", "notes": "", "floor": 1})),
        "state follows the restored server"
    );
    assert!(
        block_on(engine.outbox()).is_empty(),
        "the pending patch was pushed, not dropped"
    );
    assert_eq!(
        restored.server_state(&room(2)).unwrap().fields["status"],
        "clean"
    );
}

/// Counts the per-key reads an engine makes of its store.
struct CountingStore {
    inner: MemoryStore,
    per_key: Arc<Mutex<usize>>,
    scans: Arc<Mutex<usize>>,
    /// Calls of the range read (`get_sorted`).
    spans: Arc<Mutex<usize>>,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn load_meta(&self) -> Result<Option<tidesync::store::SyncMeta>, StoreError> {
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
        *self.per_key.lock().unwrap() += 1;
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        *self.per_key.lock().unwrap() += keys.len();
        self.inner.get_many(keys).await
    }
    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        *self.spans.lock().unwrap() += 1;
        self.inner.get_sorted(keys).await
    }
    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        *self.scans.lock().unwrap() += 1;
        self.inner.scan(collection).await
    }
    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.inner.collections().await
    }
    async fn outbox(&self) -> Result<Vec<tidesync::store::OutboxEntry>, StoreError> {
        self.inner.outbox().await
    }
    async fn conflicts(&self) -> Result<Vec<tidesync::store::ConflictRecord>, StoreError> {
        self.inner.conflicts().await
    }
    async fn audit(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<tidesync::store::AuditEntry>, StoreError> {
        self.inner.audit(after, limit).await
    }
    async fn commit(&self, batch: tidesync::store::WriteBatch) -> Result<(), StoreError> {
        self.inner.commit(batch).await
    }
}

/// The shared world with `n` more entities (`tasks/t0000`, ...) on the server.
fn with_tasks(n: u32) -> World {
    let w = World::new();
    w.server
        .seed(
            &Partition::new("hotel", "b1"),
            Hlc::default(),
            (0..n).map(|i| {
                (
                    EntityKey::new("tasks", format!("t{i:04}")),
                    f(json!({"n": i})),
                )
            }),
        )
        .unwrap();
    w
}

type Count = Arc<Mutex<usize>>;

/// A counting store and its per-key reads, scans and range reads.
fn counting() -> (CountingStore, Count, Count, Count) {
    let (per_key, scans, spans) = (Arc::default(), Arc::default(), Arc::default());
    let store = CountingStore {
        inner: MemoryStore::new(),
        per_key: Arc::clone(&per_key),
        scans: Arc::clone(&scans),
        spans: Arc::clone(&spans),
    };
    (store, per_key, scans, spans)
}

/// A first sync into an empty store reads no record key by key (snapshot
/// pages are read as key ranges) and needs no verifying reconcile: every
/// entity it ends with came from the snapshot.
#[test]
fn a_first_sync_into_an_empty_store_reads_no_key_and_verifies_nothing() {
    let w = with_tasks(230);
    let (store, per_key, scans, spans) = counting();
    let config = EngineConfig {
        snapshot_page: 40,
        ..w.config("t1")
    };
    let engine = block_on(Engine::open(store, w.net("t1"), w.env.clone(), config)).unwrap();
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.status()).first_sync_done);
    assert_eq!(block_on(engine.query("tasks")).unwrap().len(), 230);
    let reads_during_sync = *per_key.lock().unwrap();
    assert_eq!(reads_during_sync, 0, "per-key reads during a first sync");
    assert_eq!(block_on(engine.metrics()).reconcile_runs, 0);
    assert_eq!(*scans.lock().unwrap(), 1, "only the query above scanned");
    // One range read a snapshot page: 233 keys (3 rooms, 230 tasks) by 40.
    assert_eq!(block_on(engine.metrics()).snapshot_pages, 6);
    assert_eq!(*spans.lock().unwrap(), 6, "one range read a page");
}

/// A snapshot that begins over entities the store already holds verifies
/// its copy with a reconcile once it is complete.
#[test]
fn a_snapshot_over_held_entities_is_verified() {
    let w = World::new();
    let (store, _, _, _) = counting();
    let net = w.net("t1");
    let engine = w.open(store, net.clone(), "t1");
    net.set_offline(true);
    block_on(engine.create("tasks", None, f(json!({"what": "towels"})))).unwrap();
    net.set_offline(false);
    block_on(engine.set_online(true));
    block_on(engine.sync_now()).unwrap();
    assert!(block_on(engine.status()).first_sync_done);
    assert!(
        block_on(engine.metrics()).reconcile_runs > 0,
        "the snapshot was verified"
    );
}

/// A pulled page sends one `changes` event per collection with its ids, not
/// one event per entity; a local write of one entity still sends `changed`
/// with its view. An entity filter passes a `changes` event holding its id.
#[test]
fn a_pulled_page_is_one_changes_event_per_collection() {
    let w = with_tasks(100);
    let config = EngineConfig {
        snapshot_page: 40,
        ..w.config("t1")
    };
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        w.net("t1"),
        w.env.clone(),
        config,
    ))
    .unwrap();
    let mut all = engine.subscribe(Filter::All);
    let mut one = engine.subscribe(Filter::Entity {
        key: EntityKey::new("tasks", "t0041"),
    });
    let mut other = engine.subscribe(Filter::Collection {
        collection: "sales".into(),
    });
    block_on(engine.sync_now()).unwrap();
    let mut pages = Vec::new();
    while let Ok(ev) = all.try_recv() {
        match ev {
            Event::Changes { collection, ids } if collection == "tasks" => pages.push(ids),
            Event::Changed { key, .. } => {
                assert_ne!(key.collection, "tasks", "one event per entity")
            }
            _ => {}
        }
    }
    // Pages of 40 keys in (collection, id) order: the first holds the
    // world's 3 rooms and 37 tasks.
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![37, 40, 23]
    );
    let ids: Vec<String> = pages.concat();
    let want: Vec<String> = (0..100).map(|i| format!("t{i:04}")).collect();
    assert_eq!(ids, want);
    let mut for_one = Vec::new();
    while let Ok(ev) = one.try_recv() {
        if let Event::Changes { ids, .. } = ev {
            for_one.push(ids);
        }
    }
    assert_eq!(for_one.len(), 1, "only the page holding t0041");
    assert!(for_one[0].contains(&"t0041".to_string()));
    while let Ok(ev) = other.try_recv() {
        assert!(
            !matches!(ev, Event::Changes { .. } | Event::Changed { .. }),
            "{ev:?}"
        );
    }

    block_on(engine.patch("tasks", "t0007", f(json!({"n": -1})))).unwrap();
    let mut local = Vec::new();
    while let Ok(ev) = all.try_recv() {
        if let Event::Changed { key, entity } = ev {
            local.push((key, entity));
        }
    }
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].0, EntityKey::new("tasks", "t0007"));
    assert_eq!(local[0].1.as_ref().unwrap().fields["n"], json!(-1));
}

/// The change feed after a push brings this terminal's acknowledged writes
/// back; the pull does not read their records again (they would be ignored),
/// and still applies what other terminals changed in the same pages.
#[test]
fn the_pull_after_a_push_does_not_reread_its_own_acknowledged_writes() {
    let w = World::new();
    let (store, per_key, _, _) = counting();
    let net = w.net("t1");
    let engine = w.open(store, net.clone(), "t1");
    block_on(engine.sync_now()).unwrap();
    net.set_offline(true);
    for i in 0..50 {
        block_on(engine.create("tasks", Some(&format!("k{i:03}")), f(json!({"n": i})))).unwrap();
    }
    net.set_offline(false);
    block_on(engine.set_online(true));
    w.admin(room(1), f(json!({"status": "ooo"})));
    let before = *per_key.lock().unwrap();
    block_on(engine.sync_now()).unwrap();
    let reads = *per_key.lock().unwrap() - before;
    assert_eq!(block_on(engine.status()).pending, 0);
    // The push reads the 50 records it acknowledges; the pull reads only
    // room-1, changed by someone else.
    assert_eq!(
        reads, 51,
        "per-key reads of a push of 50 and the pull after it"
    );
    let r1 = block_on(engine.get("rooms", "room-1")).unwrap().unwrap();
    assert_eq!(r1.fields["status"], json!("ooo"));
    let t = block_on(engine.get("tasks", "k007")).unwrap().unwrap();
    assert!(t.server_version > 0 && t.pending == 0);
}
