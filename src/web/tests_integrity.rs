//! In every browser of scripts/test-web.sh: rollback of sealed records (the
//! integrity mark in the key ring), the key ring merged inside each commit
//! across connections (tabs), a plaintext database offered where a key is
//! expected, and the master key's JS copies cleared.

use super::keys::KeySource;
use super::store::{IdbStore, OpenError};
use super::tests::{put, raw, unique, write_raw};
use crate::protocol::{EntityKey, EntityState};
use crate::store::*;
use crate::Hlc;
use js_sys::Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

fn passphrase() -> KeySource {
    super::tests::passphrase("integrity")
}

fn entity(id: &str, version: u64, note: &str) -> EntityRecord {
    let mut fields = crate::protocol::Fields::new();
    fields.insert("note".into(), note.into());
    EntityRecord {
        key: EntityKey::new("rooms", id),
        server: Some(EntityState {
            collection: "rooms".into(),
            id: id.into(),
            version,
            fields,
            deleted: false,
            last_op: None,
            updated_at: Hlc {
                wall_ms: version,
                counter: 0,
                node: 1,
            },
        }),
        chain_base: None,
        view: None,
    }
}

fn meta(next_seq: u64) -> SyncMeta {
    let mut m = crate::store::conformance::sample_meta();
    m.next_seq = next_seq;
    m
}

fn outbox(seq: u64, attempts: u32) -> OutboxEntry {
    let mut e = crate::store::conformance::sample_outbox_entry(seq);
    e.attempts = attempts;
    e
}

fn audit(seq: u64) -> AuditEntry {
    AuditEntry {
        seq,
        at_ms: seq,
        op_id: None,
        key: EntityKey::new("rooms", "101"),
        event: AuditEvent::Queued,
    }
}

/// Every (store, key, value bytes) of the raw database, in order.
async fn dump(db: &web_sys::IdbDatabase) -> Vec<(String, String, Vec<u8>)> {
    super::tests::dump(db)
        .await
        .into_iter()
        .map(|(s, k, v)| (s, format!("{k:?}"), super::tests::as_bytes(&v)))
        .collect()
}

/// The raw (key, value) pairs of one object store.
async fn raw_record(db: &web_sys::IdbDatabase, store: &str) -> Vec<(JsValue, JsValue)> {
    super::tests::dump(db)
        .await
        .into_iter()
        .filter(|(s, ..)| s == store)
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// Opens `name`, expects STORE_CORRUPT naming the mark, and checks that the
/// failed open changed no byte of the database.
async fn assert_rollback_detected(name: &str, what: &str) {
    let db = raw(name).await;
    let before = dump(&db).await;
    db.close();
    for _ in 0..2 {
        let err = IdbStore::open(name, passphrase()).await.unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::StoreCorrupt, "{what}: {err}");
        assert!(err.to_string().contains("integrity mark"), "{what}: {err}");
    }
    let db = raw(name).await;
    assert_eq!(
        dump(&db).await,
        before,
        "{what}: the failed open changed nothing"
    );
    db.close();
}

/// A store with history: meta, two entities, an outbox entry, audit entries.
async fn store_with_history(name: &str) -> IdbStore {
    let s = IdbStore::open(name, passphrase()).await.unwrap();
    put(
        &s,
        vec![
            WriteOp::PutMeta(meta(2)),
            WriteOp::PutEntity(entity("101", 1, "dirty")),
            WriteOp::PutEntity(entity("102", 1, "dirty")),
            WriteOp::PutOutbox(outbox(1, 0)),
            WriteOp::AppendAudit(audit(1)),
        ],
    )
    .await;
    s
}

#[wasm_bindgen_test]
async fn a_store_with_deletes_and_overwrites_reopens_cleanly() {
    let name = unique("mark-clean");
    let s = store_with_history(&name).await;
    for i in 2..6 {
        put(
            &s,
            vec![
                WriteOp::PutMeta(meta(i + 1)),
                WriteOp::PutEntity(entity("101", i, "again")),
                WriteOp::PutEntity(entity("101", i + 10, "twice in one batch")),
                WriteOp::DeleteEntity(EntityKey::new("rooms", "102")),
                WriteOp::PutOutbox(outbox(i, 0)),
                WriteOp::DeleteOutbox(i - 1),
                WriteOp::AppendAudit(audit(i)),
            ],
        )
        .await;
    }
    // A delete of a record that does not exist changes nothing.
    put(
        &s,
        vec![WriteOp::DeleteEntity(EntityKey::new("rooms", "nope"))],
    )
    .await;
    s.close();
    drop(s);
    let s = IdbStore::open(&name, passphrase()).await.expect("reopens");
    assert_eq!(
        s.get(&EntityKey::new("rooms", "101")).await.unwrap(),
        Some(entity("101", 15, "twice in one batch"))
    );
    assert_eq!(s.outbox().await.unwrap(), vec![outbox(5, 0)]);
}

#[wasm_bindgen_test]
async fn an_older_meta_restored_from_a_raw_copy_is_store_corrupt() {
    let name = unique("mark-meta");
    let s = store_with_history(&name).await;
    let db = raw(&name).await;
    let (k, old) = raw_record(&db, "meta").await.remove(0);
    put(&s, vec![WriteOp::PutMeta(meta(7))]).await;
    s.close();
    drop(s);
    // The older sealed meta opens under its own key (its AAD still
    // matches): only the mark can tell.
    write_raw(&db, "meta", &k, Some(&old)).await;
    db.close();
    assert_rollback_detected(&name, "older meta").await;
}

#[wasm_bindgen_test]
async fn an_older_or_removed_outbox_entry_restored_is_store_corrupt() {
    let name = unique("mark-outbox");
    let s = store_with_history(&name).await;
    let db = raw(&name).await;
    let (k, old) = raw_record(&db, "outbox").await.remove(0);
    put(&s, vec![WriteOp::PutOutbox(outbox(1, 3))]).await;
    s.close();
    drop(s);
    write_raw(&db, "outbox", &k, Some(&old)).await;
    db.close();
    assert_rollback_detected(&name, "older outbox entry").await;

    // An acknowledged (deleted) entry put back.
    let name = unique("mark-outbox-acked");
    let s = store_with_history(&name).await;
    let db = raw(&name).await;
    let (k, old) = raw_record(&db, "outbox").await.remove(0);
    put(&s, vec![WriteOp::DeleteOutbox(1)]).await;
    s.close();
    drop(s);
    write_raw(&db, "outbox", &k, Some(&old)).await;
    db.close();
    assert_rollback_detected(&name, "acknowledged outbox entry put back").await;
}

#[wasm_bindgen_test]
async fn an_older_entity_record_restored_is_store_corrupt() {
    let name = unique("mark-entity");
    let s = store_with_history(&name).await;
    let db = raw(&name).await;
    let rows = raw_record(&db, "entities").await;
    put(&s, vec![WriteOp::PutEntity(entity("101", 2, "clean"))]).await;
    put(&s, vec![WriteOp::PutEntity(entity("102", 2, "clean"))]).await;
    s.close();
    drop(s);
    let (k, old) = &rows[0];
    write_raw(&db, "entities", k, Some(old)).await;
    db.close();
    assert_rollback_detected(&name, "older entity").await;
}

#[wasm_bindgen_test]
async fn a_deleted_audit_entry_is_store_corrupt() {
    let name = unique("mark-audit");
    let s = store_with_history(&name).await;
    put(&s, vec![WriteOp::AppendAudit(audit(2))]).await;
    s.close();
    drop(s);
    let db = raw(&name).await;
    write_raw(&db, "audit", &JsValue::from_f64(2.0), None).await;
    db.close();
    assert_rollback_detected(&name, "deleted audit entry").await;
}

#[wasm_bindgen_test]
async fn two_connections_and_forced_rotations_lose_no_key() {
    let name = unique("ring-merge");
    let a = IdbStore::open(&name, passphrase()).await.unwrap();
    let b = IdbStore::open(&name, passphrase()).await.unwrap();
    a.rotate_after_for_tests(1);
    b.rotate_after_for_tests(1);
    // Each commit seals two values: each connection rotates while the
    // other holds an older ring in memory.
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..4u64 {
        put(
            &a,
            vec![
                WriteOp::PutEntity(entity(&format!("a{i}"), 1, "by a")),
                WriteOp::AppendAudit(audit(2 * i + 1)),
            ],
        )
        .await;
        ids.extend(a.key_id_for_tests());
        put(
            &b,
            vec![
                WriteOp::PutEntity(entity(&format!("b{i}"), 1, "by b")),
                WriteOp::AppendAudit(audit(2 * i + 2)),
            ],
        )
        .await;
        ids.extend(b.key_id_for_tests());
    }
    // B reads what A sealed with a key B's ring did not have.
    assert_eq!(
        b.get(&EntityKey::new("rooms", "a3")).await.unwrap(),
        Some(entity("a3", 1, "by a"))
    );
    // Each connection rotated on its own: many keys, all of them kept.
    assert!(ids.len() >= 4, "the test forces rotations: {ids:?}");
    a.close();
    b.close();
    drop((a, b));
    // A third connection opens (the mark matches what both wrote) and
    // reads every value, sealed by either.
    let c = IdbStore::open(&name, passphrase()).await.expect("reopens");
    for i in 0..4 {
        for who in ["a", "b"] {
            let id = format!("{who}{i}");
            assert_eq!(
                c.get(&EntityKey::new("rooms", &id)).await.unwrap(),
                Some(entity(&id, 1, &format!("by {who}"))),
                "{id}"
            );
        }
    }
    assert_eq!(c.audit(0, 100).await.unwrap().len(), 8);
}

#[wasm_bindgen_test]
async fn a_plain_database_offered_for_a_key_never_suggests_opening_without_one() {
    let name = unique("plain-swap");
    let s = IdbStore::open(&name, KeySource::Plain).await.unwrap();
    put(&s, vec![WriteOp::PutEntity(entity("101", 1, "x"))]).await;
    s.close();
    drop(s);
    let err = IdbStore::open(&name, passphrase()).await.unwrap_err();
    assert!(matches!(err, OpenError::KeyMismatch(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("refusing to open"), "{msg}");
    assert!(!msg.contains("without a key"), "no fallback advice: {msg}");
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function spy_subtle() {
  const p = SubtleCrypto.prototype;
  const enc = p.encrypt, dec = p.decrypt;
  const inputs = [], outputs = [];
  p.encrypt = function (alg, key, data) { inputs.push(data); return enc.call(this, alg, key, data); };
  p.decrypt = function (alg, key, data) {
    return dec.call(this, alg, key, data).then((r) => { outputs.push(r); return r; });
  };
  return {
    buffers: () => inputs.concat(outputs).map((b) => Array.from(new Uint8Array(b.buffer || b))),
    restore: () => { p.encrypt = enc; p.decrypt = dec; },
  };
}
"#)]
extern "C" {
    type SubtleSpy;
    fn spy_subtle() -> SubtleSpy;
    #[wasm_bindgen(method, structural)]
    fn buffers(this: &SubtleSpy) -> js_sys::Array;
    #[wasm_bindgen(method, structural)]
    fn restore(this: &SubtleSpy);
}

#[wasm_bindgen_test]
async fn the_master_keys_js_copies_are_cleared_after_webcrypto_wraps_and_unwraps_it() {
    let name = unique("js-buffers");
    let spy = spy_subtle();
    let s = IdbStore::open(&name, KeySource::WebCrypto).await.unwrap();
    s.close();
    drop(s);
    let s = IdbStore::open(&name, KeySource::WebCrypto).await.unwrap();
    let buffers = spy.buffers();
    spy.restore();
    assert!(buffers.length() >= 2, "one wrap and one unwrap were seen");
    for b in buffers.iter() {
        let bytes: Vec<f64> = Array::from(&b)
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(bytes.len(), 32);
        assert!(
            bytes.iter().all(|v| *v == 0.0),
            "a JS copy of the master key was left: {bytes:?}"
        );
    }
    assert!(s.master_key_for_tests().unwrap().iter().any(|b| *b != 0));
}
