//! The store conformance suite: every [`Store`] backend must pass it.
//!
//! Each scenario is a public async function taking a fresh, empty store.
//! [`store_conformance_tests!`](crate::store_conformance_tests) generates one
//! test per scenario for a backend:
//!
//! ```text
//! tidesync::store_conformance_tests!(async { tidesync::store::MemoryStore::new() });
//! ```

use super::*;
use crate::protocol::{payload_checksum, MutationKind, OpId};
use serde_json::json;

fn fields(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap_or_default()
}

fn state(collection: &str, id: &str, version: u64) -> EntityState {
    EntityState {
        collection: collection.into(),
        id: id.into(),
        version,
        fields: fields(json!({"status": "dirty", "n": version, "name": "Zoë ✓"})),
        deleted: false,
        updated_at: Hlc {
            wall_ms: 1000 + version,
            counter: 0,
            node: 1,
        },
        last_op: Some(OpId::from_parts(version, 7)),
    }
}

fn record(collection: &str, id: &str, version: u64) -> EntityRecord {
    let s = state(collection, id, version);
    EntityRecord {
        key: s.key(),
        view: Some(LocalEntity {
            collection: collection.into(),
            id: id.into(),
            fields: s.fields.clone(),
            deleted: false,
            server_version: version,
            updated_at: s.updated_at,
            pending: 1,
            conflicted: false,
        }),
        chain_base: Some(ChainBase::State(s.clone())),
        server: Some(s),
    }
}

fn mutation(id: &str, seq: u64) -> Mutation {
    let payload = fields(json!({"status": "clean", "seq": seq}));
    Mutation {
        op_id: OpId::from_parts(seq, u128::from(seq)),
        client_id: "client-a".into(),
        terminal_id: "t1".into(),
        branch_id: "b1".into(),
        collection: "rooms".into(),
        entity_id: id.into(),
        kind: MutationKind::Patch,
        checksum: payload_checksum("rooms", id, MutationKind::Patch, Some(&payload)),
        payload: Some(payload),
        base_version: 3,
        hlc: Hlc {
            wall_ms: seq,
            counter: 1,
            node: 2,
        },
        schema_version: 1,
        offline: true,
        anomaly: None,
    }
}

fn outbox_entry(seq: u64) -> OutboxEntry {
    OutboxEntry {
        seq,
        mutation: mutation(&format!("r{}", seq % 3), seq),
        state: OutboxState::Pending,
        attempts: 0,
        next_attempt_at: 0,
        sent: false,
        last_error: None,
        enqueued_at: seq,
    }
}

/// A sample pending outbox entry (for backend-specific tests).
#[doc(hidden)]
pub fn sample_outbox_entry(seq: u64) -> OutboxEntry {
    outbox_entry(seq)
}

/// A sample sync state (for backend-specific tests).
#[doc(hidden)]
pub fn sample_meta() -> SyncMeta {
    meta()
}

fn audit(seq: u64) -> AuditEntry {
    AuditEntry {
        seq,
        at_ms: seq * 10,
        op_id: Some(OpId::from_parts(seq, 1)),
        key: EntityKey::new("rooms", "r1"),
        event: AuditEvent::Queued,
    }
}

fn meta() -> SyncMeta {
    SyncMeta {
        client_id: "client-a".into(),
        schema_version: 1,
        cursor: Some(Cursor(42)),
        snapshot: SnapshotProgress::Done,
        snapshot_at_ms: Some(5),
        last_sync_at_ms: Some(6),
        hlc: Hlc {
            wall_ms: 9,
            counter: 2,
            node: 3,
        },
        next_seq: 10,
        next_audit_seq: 11,
        verify_pending: true,
        generation: 12,
        owner: Some(StoreOwner {
            terminal_id: "desk-1".into(),
            branch_id: "hotel-1".into(),
        }),
    }
}

/// A sample stored credential (for backend-specific tests: its key is a
/// value no store may write in clear).
#[doc(hidden)]
pub fn sample_credential() -> StoredCredential {
    StoredCredential {
        api_key: "ts_00112233deadbeef_sEcReT-kEy-never-in-clear-0123456789abcdefgh".into(),
        identity: Some(crate::protocol::KeyIdentity {
            tenant: "demo".into(),
            branch: "hotel-1".into(),
            terminal: "desk-1".into(),
            key_id: "00112233deadbeef".into(),
            expires_at_ms: None,
        }),
        stored_at_ms: 99,
    }
}

async fn commit<S: Store>(store: &S, ops: Vec<WriteOp>) {
    store
        .commit(WriteBatch { ops })
        .await
        .expect("commit must succeed");
}

/// A new store is empty.
pub async fn empty_store_reads_nothing<S: Store>(store: S) {
    assert_eq!(store.load_meta().await.unwrap(), None);
    assert_eq!(
        store.get(&EntityKey::new("rooms", "r1")).await.unwrap(),
        None
    );
    assert!(store.scan("rooms").await.unwrap().is_empty());
    assert!(store.outbox().await.unwrap().is_empty());
    assert!(store.conflicts().await.unwrap().is_empty());
    assert!(store.audit(0, 10).await.unwrap().is_empty());
}

/// Every record kind reads back exactly as written, in one batch.
pub async fn every_record_kind_round_trips<S: Store>(store: S) {
    let rec = record("rooms", "r1", 3);
    let entry = outbox_entry(1);
    let conflict = ConflictRecord {
        key: EntityKey::new("rooms", "r2"),
        base: Some(state("rooms", "r2", 1)),
        local: rec.view.clone(),
        server: Some(state("rooms", "r2", 2)),
        mutations: vec![mutation("r2", 5)],
        fields: vec!["status".into()],
        detected_at: 77,
    };
    commit(
        &store,
        vec![
            WriteOp::PutEntity(rec.clone()),
            WriteOp::PutOutbox(entry.clone()),
            WriteOp::PutConflict(conflict.clone()),
            WriteOp::AppendAudit(audit(1)),
            WriteOp::PutMeta(meta()),
        ],
    )
    .await;
    assert_eq!(store.get(&rec.key).await.unwrap(), Some(rec.clone()));
    let missing = EntityKey::new("rooms", "nope");
    assert_eq!(
        store
            .get_many(&[missing.clone(), rec.key.clone(), missing])
            .await
            .unwrap(),
        vec![None, Some(rec), None]
    );
    assert_eq!(store.outbox().await.unwrap(), vec![entry]);
    assert_eq!(store.conflicts().await.unwrap(), vec![conflict]);
    assert_eq!(store.audit(0, 10).await.unwrap(), vec![audit(1)]);
    assert_eq!(store.load_meta().await.unwrap(), Some(meta()));
    // Settled records (nothing pending: the view is the server state, stored
    // once), live and deleted, and a record with no view.
    let live = settled("rooms", "s1", 4, false);
    let gone = settled("rooms", "s2", 5, true);
    let mut bare = settled("rooms", "s3", 6, false);
    bare.view = None;
    let mut unusual = settled("rooms", "s4", 7, false);
    unusual.view.as_mut().unwrap().conflicted = true;
    let all = [live, gone, bare, unusual];
    commit(
        &store,
        all.iter().cloned().map(WriteOp::PutEntity).collect(),
    )
    .await;
    for r in &all {
        assert_eq!(store.get(&r.key).await.unwrap().as_ref(), Some(r));
    }
}

fn settled(collection: &str, id: &str, version: u64, deleted: bool) -> EntityRecord {
    let mut s = state(collection, id, version);
    s.deleted = deleted;
    EntityRecord {
        key: s.key(),
        view: Some(EntityRecord::settled_view(&s.key(), &s)),
        chain_base: None,
        server: Some(s),
    }
}

/// The outbox comes back ordered by `seq`, whatever order it was written in,
/// including numbers that sort differently as text (9 < 10).
pub async fn outbox_is_ordered_by_seq<S: Store>(store: S) {
    let seqs = [10u64, 2, 9, 1, 100, 11];
    for s in seqs {
        commit(&store, vec![WriteOp::PutOutbox(outbox_entry(s))]).await;
    }
    let got: Vec<u64> = store
        .outbox()
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, vec![1, 2, 9, 10, 11, 100]);
}

/// Within a batch, the later write to a record wins, deletes included.
pub async fn later_writes_in_a_batch_win<S: Store>(store: S) {
    let a = record("rooms", "r1", 1);
    let b = record("rooms", "r1", 2);
    let mut e2 = outbox_entry(2);
    commit(
        &store,
        vec![
            WriteOp::PutEntity(a),
            WriteOp::PutEntity(b.clone()),
            WriteOp::PutOutbox(outbox_entry(1)),
            WriteOp::DeleteOutbox(1),
            WriteOp::PutOutbox(e2.clone()),
        ],
    )
    .await;
    assert_eq!(store.get(&b.key).await.unwrap(), Some(b.clone()));
    assert_eq!(store.outbox().await.unwrap(), vec![e2.clone()]);
    e2.attempts = 4;
    e2.state = OutboxState::DeadLetter {
        code: crate::ErrorCode::EventInvalid,
        message: "patch: bad".into(),
        at_ms: 9,
    };
    commit(
        &store,
        vec![
            WriteOp::PutOutbox(e2.clone()),
            WriteOp::DeleteEntity(b.key.clone()),
        ],
    )
    .await;
    assert_eq!(store.outbox().await.unwrap(), vec![e2]);
    assert_eq!(store.get(&b.key).await.unwrap(), None);
}

/// `scan` returns one collection only, ordered by id, and does not mix
/// collections whose names share a prefix.
pub async fn scan_is_per_collection_and_ordered<S: Store>(store: S) {
    let ids = ["b", "a", "c10", "c9", "ä"];
    let mut ops = Vec::new();
    for id in ids {
        ops.push(WriteOp::PutEntity(record("rooms", id, 1)));
        ops.push(WriteOp::PutEntity(record("room", id, 1)));
        ops.push(WriteOp::PutEntity(record("roomsx", id, 1)));
    }
    commit(&store, ops).await;
    let got: Vec<String> = store
        .scan("rooms")
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.key.collection, "rooms");
            r.key.id
        })
        .collect();
    assert_eq!(got, vec!["a", "b", "c10", "c9", "ä"]);
    assert_eq!(store.scan("room").await.unwrap().len(), 5);
    assert!(store.scan("roo").await.unwrap().is_empty());
    assert_eq!(
        store.collections().await.unwrap(),
        vec!["room", "rooms", "roomsx"]
    );
    let ops = ["room", "roomsx"]
        .iter()
        .flat_map(|c| {
            ids.iter()
                .map(move |id| WriteOp::DeleteEntity(EntityKey::new(*c, *id)))
        })
        .collect();
    commit(&store, ops).await;
    assert_eq!(store.collections().await.unwrap(), vec!["rooms"]);
}

/// `scan_page` pages a collection by id: every record once, in order, and
/// nothing of another collection.
pub async fn scan_pages_a_collection_by_id<S: Store>(store: S) {
    let ids: Vec<String> = (0..57).map(|i| format!("r{i:03}")).collect();
    let mut ops: Vec<WriteOp> = ids
        .iter()
        .rev()
        .map(|id| WriteOp::PutEntity(record("rooms", id, 1)))
        .collect();
    ops.push(WriteOp::PutEntity(record("roomsx", "a", 1)));
    ops.push(WriteOp::PutEntity(record("room", "z", 1)));
    commit(&store, ops).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_page("rooms", after.as_deref(), 10)
            .await
            .unwrap();
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        for r in &page {
            assert_eq!(r.key.collection, "rooms");
            seen.push(r.key.id.clone());
        }
        after = page.last().map(|r| r.key.id.clone());
    }
    assert_eq!(seen, ids);
    let tail = store.scan_page("rooms", Some("r050"), 100).await.unwrap();
    assert_eq!(tail.len(), 6);
    assert!(store
        .scan_page("nothing", None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// `get_sorted` answers exactly what `get_many` does for sorted keys: held
/// keys, missing keys between and around them, and collections that hold
/// nothing or share a prefix; records in a span that were not asked for are
/// not returned.
pub async fn get_sorted_matches_get_many<S: Store>(store: S) {
    let mut ops: Vec<WriteOp> = (0..40)
        .step_by(2)
        .map(|i| WriteOp::PutEntity(record("rooms", &format!("r{i:03}"), 1)))
        .collect();
    ops.push(WriteOp::PutEntity(record("roomsx", "r001", 2)));
    ops.push(WriteOp::PutEntity(record("sales", "s1", 3)));
    commit(&store, ops).await;
    let k = |c: &str, id: &str| EntityKey::new(c, id);
    let asks: Vec<Vec<EntityKey>> = vec![
        vec![],
        vec![k("rooms", "r004")],
        vec![k("rooms", "r005")],
        vec![
            k("aaa", "x"),
            k("rooms", "r000"),
            k("rooms", "r001"),
            k("rooms", "r0015"),
            k("rooms", "r010"),
            k("rooms", "r038"),
            k("rooms", "r099"),
            k("roomsx", "r001"),
            k("roomsx", "r002"),
            k("sales", "s0"),
            k("sales", "s1"),
            k("zzz", "z"),
        ],
        (0..40).map(|i| k("rooms", &format!("r{i:03}"))).collect(),
    ];
    for keys in asks {
        let sorted = store.get_sorted(&keys).await.unwrap();
        let many = store.get_many(&keys).await.unwrap();
        assert_eq!(sorted.len(), keys.len());
        assert_eq!(sorted, many, "get_sorted({keys:?})");
        for (key, got) in keys.iter().zip(&sorted) {
            if let Some(r) = got {
                assert_eq!(&r.key, key);
            }
        }
    }
    let hits = store
        .get_sorted(&[k("rooms", "r001"), k("rooms", "r002"), k("rooms", "r039")])
        .await
        .unwrap();
    assert_eq!(hits[0], None);
    assert_eq!(hits[1], Some(record("rooms", "r002", 1)));
    assert_eq!(hits[2], None);
}

/// Audit entries page by `seq`.
pub async fn audit_pages_by_seq<S: Store>(store: S) {
    let ops = (1..=25)
        .rev()
        .map(|s| WriteOp::AppendAudit(audit(s)))
        .collect();
    commit(&store, ops).await;
    let first: Vec<u64> = store
        .audit(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    let rest: Vec<u64> = store
        .audit(20, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(rest, (21..=25).collect::<Vec<_>>());
}

/// Conflicts are replaced and removed by key.
pub async fn conflicts_are_keyed_by_entity<S: Store>(store: S) {
    let mk = |id: &str, at: u64| ConflictRecord {
        key: EntityKey::new("rooms", id),
        base: None,
        local: None,
        server: None,
        mutations: vec![],
        fields: vec![],
        detected_at: at,
    };
    commit(
        &store,
        vec![
            WriteOp::PutConflict(mk("a", 1)),
            WriteOp::PutConflict(mk("b", 1)),
        ],
    )
    .await;
    commit(
        &store,
        vec![
            WriteOp::PutConflict(mk("a", 2)),
            WriteOp::DeleteConflict(EntityKey::new("rooms", "b")),
        ],
    )
    .await;
    assert_eq!(store.conflicts().await.unwrap(), vec![mk("a", 2)]);
}

/// A thousand entities written in one batch all read back.
pub async fn large_batch_round_trips<S: Store>(store: S) {
    let ops = (0..1000)
        .map(|i| WriteOp::PutEntity(record("sales", &format!("s{i:05}"), i)))
        .collect();
    commit(&store, ops).await;
    let all = store.scan("sales").await.unwrap();
    assert_eq!(all.len(), 1000);
    assert_eq!(all[999], record("sales", "s00999", 999));
}

/// A small deterministic generator for the model-based scenarios.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn assert_reads_match<S: Store>(
    store: &S,
    model: &std::collections::BTreeMap<EntityKey, EntityRecord>,
    probe: &[EntityKey],
    round: usize,
) {
    for c in ["rooms", "sales"] {
        let want: Vec<&EntityRecord> = model.values().filter(|r| r.key.collection == c).collect();
        let got = store.scan(c).await.unwrap();
        assert_eq!(got.len(), want.len(), "round {round}: scan of {c}");
        assert!(
            got.iter().zip(&want).all(|(a, b)| a == *b),
            "round {round}: scan of {c} differs"
        );
        // Pages of 37 from a few starting points, as a paged reader goes.
        for start in [None, Some("e0100"), Some("e0777"), Some("zz")] {
            let page = store.scan_page(c, start, 37).await.unwrap();
            let want_page: Vec<&EntityRecord> = want
                .iter()
                .filter(|r| start.is_none_or(|s| r.key.id.as_str() > s))
                .take(37)
                .copied()
                .collect();
            assert_eq!(
                page.len(),
                want_page.len(),
                "round {round}: page of {c} after {start:?}"
            );
            assert!(page.iter().zip(&want_page).all(|(a, b)| a == *b));
        }
    }
    let got = store.get_many(probe).await.unwrap();
    let sorted = store.get_sorted(probe).await.unwrap();
    for ((k, g), s) in probe.iter().zip(&got).zip(&sorted) {
        assert_eq!(g.as_ref(), model.get(k), "round {round}: get_many of {k:?}");
        assert_eq!(
            s.as_ref(),
            model.get(k),
            "round {round}: get_sorted of {k:?}"
        );
    }
    for k in probe.iter().step_by(23) {
        assert_eq!(
            store.get(k).await.unwrap().as_ref(),
            model.get(k),
            "round {round}: get"
        );
    }
    let want_cols: std::collections::BTreeSet<&str> =
        model.keys().map(|k| k.collection.as_str()).collect();
    let got_cols = store.collections().await.unwrap();
    assert_eq!(
        got_cols.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        want_cols.into_iter().collect::<Vec<_>>(),
        "round {round}: collections"
    );
}

/// Bulk batches (a snapshot or change page: thousands of records) and
/// small ones (a local write) mixed, with overwrites and removals of ids
/// written either way: every read answers as a map of the writes would.
/// Backends that pack records into pages (IndexedDB) split, rewrite and
/// fold them here.
pub async fn bulk_and_small_writes_read_like_a_map<S: Store>(store: S) {
    use std::collections::BTreeMap;
    let mut model: BTreeMap<EntityKey, EntityRecord> = BTreeMap::new();
    let mut rng = Lcg(7);
    let key = |c: &str, i: u64| EntityKey::new(c, format!("e{i:04}"));
    let probe: Vec<EntityKey> = (0..1200)
        .step_by(7)
        .map(|i| key("rooms", i))
        .chain((0..50).map(|i| key("sales", i * 3)))
        .collect();
    let mut version = 1;
    // A bulk load in key order, then a mix.
    let plan: Vec<(&str, usize)> = vec![
        ("bulk", 1000),
        ("small", 30),
        ("bulk", 400),
        ("small", 40),
        ("delete-bulk", 300),
        ("small", 30),
        ("bulk", 800),
        ("delete-small", 20),
    ];
    for (round, (kind, n)) in plan.into_iter().enumerate() {
        version += 1;
        let mut ops = Vec::new();
        match kind {
            "bulk" if round == 0 => {
                for i in 0..n as u64 {
                    let r = record("rooms", &format!("e{i:04}"), version);
                    ops.push(WriteOp::PutEntity(r));
                }
            }
            "bulk" => {
                for _ in 0..n {
                    let c = if rng.next(4) == 0 { "sales" } else { "rooms" };
                    let r = record(c, &format!("e{:04}", rng.next(1200)), version);
                    ops.push(WriteOp::PutEntity(r));
                }
            }
            "small" => {
                // One commit per write, as local writes come.
                for _ in 0..n {
                    let r = record("rooms", &format!("e{:04}", rng.next(1300)), version);
                    model.insert(r.key.clone(), r.clone());
                    commit(&store, vec![WriteOp::PutEntity(r)]).await;
                }
            }
            "delete-bulk" => {
                for _ in 0..n {
                    ops.push(WriteOp::DeleteEntity(key("rooms", rng.next(1200))));
                }
                for i in 0..(pages_min() as u64) {
                    ops.push(WriteOp::PutEntity(record(
                        "rooms",
                        &format!("f{i:04}"),
                        version,
                    )));
                }
            }
            _ => {
                for _ in 0..n {
                    let k = key("rooms", rng.next(1200));
                    model.remove(&k);
                    commit(&store, vec![WriteOp::DeleteEntity(k)]).await;
                }
            }
        }
        for op in &ops {
            match op {
                WriteOp::PutEntity(r) => {
                    model.insert(r.key.clone(), r.clone());
                }
                WriteOp::DeleteEntity(k) => {
                    model.remove(k);
                }
                _ => {}
            }
        }
        if !ops.is_empty() {
            ops.push(WriteOp::PutMeta(meta()));
            commit(&store, ops).await;
        }
        assert_reads_match(&store, &model, &probe, round).await;
    }
}

/// Enough writes to one collection for a paging backend to write pages.
fn pages_min() -> usize {
    100
}

/// A bulk commit (many records of one collection, with removals and the
/// sync state) that fails part-way leaves nothing, over a store that
/// already holds records written both ways; the same batch then commits.
pub async fn a_failed_bulk_commit_leaves_nothing<S: Store + InjectFaults>(store: S) {
    let first: Vec<WriteOp> = (0..300)
        .map(|i| WriteOp::PutEntity(record("rooms", &format!("r{i:04}"), 1)))
        .collect();
    commit(&store, first).await;
    commit(
        &store,
        vec![WriteOp::PutEntity(record("rooms", "r0005", 2))],
    )
    .await;
    commit(
        &store,
        vec![WriteOp::DeleteEntity(EntityKey::new("rooms", "r0006"))],
    )
    .await;
    let before = contents(&store).await;
    let mut batch: Vec<WriteOp> = (0..300)
        .step_by(2)
        .map(|i| WriteOp::PutEntity(record("rooms", &format!("r{i:04}"), 3)))
        .collect();
    batch.extend(
        (0..40)
            .map(|i| WriteOp::DeleteEntity(EntityKey::new("rooms", format!("r{:04}", i * 5 + 1)))),
    );
    batch.push(WriteOp::PutOutbox(outbox_entry(9)));
    batch.push(WriteOp::PutMeta(meta()));
    for after in [0, 1, 3, 10, 1000] {
        store.fail_next_commit_after(after);
        let result = store.commit(WriteBatch { ops: batch.clone() }).await;
        // 1000: armed past the last write, so it aborts before it lands.
        assert!(result.is_err(), "armed after {after}");
        assert_eq!(
            contents(&store).await,
            before,
            "failed after {after}: nothing left"
        );
    }
    commit(&store, batch.clone()).await;
    let after = contents(&store).await;
    assert_eq!(after.outbox, vec![outbox_entry(9)]);
    let rooms: std::collections::BTreeMap<String, u64> = after
        .entities
        .iter()
        .map(|r| (r.key.id.clone(), r.server.as_ref().unwrap().version))
        .collect();
    assert_eq!(
        rooms.get("r0005"),
        Some(&2),
        "a small record no batch touched"
    );
    assert_eq!(rooms.get("r0004"), Some(&3));
    assert_eq!(rooms.get("r0006"), None, "removed by a small commit");
    assert_eq!(rooms.get("r0011"), None, "removed by the bulk commit");
    assert_eq!(rooms.get("r0003"), Some(&1));
    // The bulk commit removed 40 ids, r0006 among them (already removed).
    assert_eq!(rooms.len(), 300 - 40);
}

/// Everything a store holds, read back through the trait (also used by
/// backends' own crash tests to compare a reopened store with a reference).
#[derive(Debug, PartialEq, Clone)]
pub struct Contents {
    /// The sync state.
    pub meta: Option<SyncMeta>,
    /// Every entity record, by collection, then id.
    pub entities: Vec<EntityRecord>,
    /// The outbox, by seq.
    pub outbox: Vec<OutboxEntry>,
    /// Open conflicts.
    pub conflicts: Vec<ConflictRecord>,
    /// The audit log, by seq.
    pub audit: Vec<AuditEntry>,
}

/// Reads [`Contents`] of `store`; panics on a read error.
pub async fn contents<S: Store>(store: &S) -> Contents {
    let mut entities = Vec::new();
    for c in store.collections().await.unwrap() {
        entities.extend(store.scan(&c).await.unwrap());
    }
    Contents {
        meta: store.load_meta().await.unwrap(),
        entities,
        outbox: store.outbox().await.unwrap(),
        conflicts: store.conflicts().await.unwrap(),
        audit: store.audit(0, usize::MAX).await.unwrap(),
    }
}

/// A commit that fails part-way leaves nothing of its batch: whichever
/// write it failed at, every record kind reads back as it was before, and
/// the store goes on working (the same batch then commits whole).
pub async fn a_failed_commit_leaves_nothing<S: Store + InjectFaults>(store: S) {
    let conflict = |id: &str, at: u64| ConflictRecord {
        key: EntityKey::new("rooms", id),
        base: None,
        local: None,
        server: Some(state("rooms", id, at)),
        mutations: vec![mutation(id, at)],
        fields: vec!["status".into()],
        detected_at: at,
    };
    commit(
        &store,
        vec![
            WriteOp::PutEntity(record("rooms", "r1", 1)),
            WriteOp::PutEntity(record("rooms", "r2", 1)),
            WriteOp::PutOutbox(outbox_entry(1)),
            WriteOp::PutConflict(conflict("c1", 1)),
            WriteOp::AppendAudit(audit(1)),
            WriteOp::PutMeta(meta()),
        ],
    )
    .await;
    let before = contents(&store).await;
    let mut meta2 = meta();
    meta2.generation += 1;
    meta2.cursor = Some(Cursor(43));
    let batch = vec![
        WriteOp::PutEntity(record("rooms", "r1", 2)),
        WriteOp::PutEntity(record("sales", "s1", 1)),
        WriteOp::DeleteEntity(EntityKey::new("rooms", "r2")),
        WriteOp::PutOutbox(outbox_entry(2)),
        WriteOp::DeleteOutbox(1),
        WriteOp::PutConflict(conflict("c2", 2)),
        WriteOp::DeleteConflict(EntityKey::new("rooms", "c1")),
        WriteOp::AppendAudit(audit(2)),
        WriteOp::PutMeta(meta2),
    ];
    for after in [0, 1, 4, batch.len() - 1, batch.len()] {
        store.fail_next_commit_after(after);
        let result = store.commit(WriteBatch { ops: batch.clone() }).await;
        assert!(
            result.is_err(),
            "the commit armed to fail after {after} writes failed"
        );
        assert_eq!(
            contents(&store).await,
            before,
            "a commit that failed after {after} writes left nothing"
        );
    }
    commit(&store, batch).await;
    let after = contents(&store).await;
    assert_eq!(after.outbox, vec![outbox_entry(2)]);
    assert_eq!(after.conflicts, vec![conflict("c2", 2)]);
    assert_eq!(after.entities.len(), 2);
    assert_eq!(after.meta.and_then(|m| m.cursor), Some(Cursor(43)));
}

/// The credential is its own record: it reads back as written, a later
/// write of the sync state leaves it alone, and `None` removes it. A store
/// that does not keep secrets (not encrypted at rest) refuses it, and
/// nothing of that batch is committed.
pub async fn the_credential_is_kept_apart_and_only_where_secret<S: Store>(store: S) {
    assert_eq!(store.load_credential().await.unwrap(), None);
    let batch = vec![
        WriteOp::PutMeta(meta()),
        WriteOp::PutCredential(Some(sample_credential())),
    ];
    if !store.keeps_secrets() {
        let refused = store.commit(WriteBatch { ops: batch }).await;
        assert!(
            matches!(refused, Err(StoreError::Backend(_))),
            "a store that does not keep secrets refuses a key: {refused:?}"
        );
        assert_eq!(store.load_meta().await.unwrap(), None, "nothing committed");
        assert_eq!(store.load_credential().await.unwrap(), None);
        // Removing one that is not there is allowed (and changes nothing).
        commit(&store, vec![WriteOp::PutCredential(None)]).await;
        return;
    }
    commit(&store, batch).await;
    assert_eq!(
        store.load_credential().await.unwrap(),
        Some(sample_credential())
    );
    let mut later = meta();
    later.generation += 1;
    commit(&store, vec![WriteOp::PutMeta(later.clone())]).await;
    assert_eq!(store.load_meta().await.unwrap(), Some(later));
    assert_eq!(
        store.load_credential().await.unwrap(),
        Some(sample_credential()),
        "a write of the sync state leaves the credential alone"
    );
    let mut rotated = sample_credential();
    rotated.api_key = "ts_ffeeddccbbaa9988_another-key-0123456789abcdefghijklmnopq".into();
    commit(&store, vec![WriteOp::PutCredential(Some(rotated.clone()))]).await;
    assert_eq!(store.load_credential().await.unwrap(), Some(rotated));
    commit(&store, vec![WriteOp::PutCredential(None)]).await;
    assert_eq!(store.load_credential().await.unwrap(), None);
    assert!(store.load_meta().await.unwrap().is_some());
}

/// Generates one test per scenario for a backend. `$make` is an expression
/// that evaluates to a future yielding a fresh, empty store.
#[macro_export]
macro_rules! store_conformance_tests {
    // `wasm: ...` generates `#[wasm_bindgen_test] async fn` cases, for
    // backends that only run in a browser (the caller depends on
    // `wasm-bindgen-test`).
    (wasm: $make:expr) => {
        $crate::store_conformance_tests!(@all wasm_cases $make);
    };
    (@all $kind:ident $make:expr) => {
        $crate::store_conformance_tests!(@ $kind $make;
            empty_store_reads_nothing,
            every_record_kind_round_trips,
            outbox_is_ordered_by_seq,
            later_writes_in_a_batch_win,
            scan_is_per_collection_and_ordered,
            audit_pages_by_seq,
            conflicts_are_keyed_by_entity,
            large_batch_round_trips,
            scan_pages_a_collection_by_id,
            get_sorted_matches_get_many,
            the_credential_is_kept_apart_and_only_where_secret,
            bulk_and_small_writes_read_like_a_map,
            a_failed_bulk_commit_leaves_nothing,
            a_failed_commit_leaves_nothing
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::block_on(async {
                    let store = $make.await;
                    $crate::store::conformance::$case(store).await;
                });
            }
        )*
    };
    (@wasm_cases $make:expr; $($case:ident),*) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $case() {
                let store = $make.await;
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::store_conformance_tests!(@all cases $make);
    };
}
