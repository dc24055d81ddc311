//! Browser tests of the IndexedDB store (wasm-bindgen-test; scripts/test-web.sh
//! runs them in headless Chromium, Firefox and WebKitGTK).

use super::idb;
use super::keys::KeySource;
use super::store::{self, IdbStore, OpenError, ALL_STORES};
use super::tests_engines::spy_transactions;
use crate::crypto::KdfParams;
use crate::protocol::{EntityKey, EntityState};
use crate::store::*;
use crate::Hlc;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;
use zeroize::Zeroizing;

wasm_bindgen_test_configure!(run_in_browser);

pub(super) fn unique(prefix: &str) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    format!("{prefix}-{}", u64::from_le_bytes(b))
}

pub(super) fn passphrase(p: &str) -> KeySource {
    KeySource::Passphrase {
        passphrase: Zeroizing::new(p.to_string()),
        kdf: KdfParams::insecure_fast_for_tests(),
    }
}

async fn fresh(key: KeySource) -> IdbStore {
    IdbStore::open(&unique("conformance"), key)
        .await
        .expect("open")
}

mod plain {
    use super::*;
    crate::store_conformance_tests!(wasm: fresh(KeySource::Plain));
}

mod encrypted_passphrase {
    use super::*;
    crate::store_conformance_tests!(wasm: fresh(passphrase("conformance pass")));
}

mod encrypted_host_key {
    use super::*;
    crate::store_conformance_tests!(wasm: fresh(KeySource::HostKey(Zeroizing::new(vec![7u8; 32]))));
}

mod encrypted_webcrypto {
    use super::*;
    crate::store_conformance_tests!(wasm: fresh(KeySource::WebCrypto));
}

const SECRET_ID: &str = "room-1204-zoe-lambert";
const SECRET_VALUE: &str = "Guest Zoë Lambert, passport X9981234";

pub(super) fn secret_record(id: &str) -> EntityRecord {
    let mut fields = crate::protocol::Fields::new();
    fields.insert("guest".into(), SECRET_VALUE.into());
    let state = EntityState {
        collection: "guests".into(),
        id: id.into(),
        version: 3,
        fields,
        deleted: false,
        last_op: None,
        updated_at: Hlc {
            wall_ms: 1,
            counter: 0,
            node: 1,
        },
    };
    EntityRecord {
        key: EntityKey::new("guests", id),
        server: Some(state),
        chain_base: None,
        view: None,
    }
}

pub(super) async fn put(store: &IdbStore, ops: Vec<WriteOp>) {
    store.commit(WriteBatch { ops }).await.expect("commit");
}

/// Opens the database without the store, as a raw IndexedDB connection.
pub(super) async fn raw(name: &str) -> web_sys::IdbDatabase {
    idb::open(name, store::DB_VERSION, |db, old| {
        store::upgrade(db, old, store::DB_VERSION)
    })
    .await
    .unwrap()
}

/// Every (store, key, value) of the raw database.
pub(super) async fn dump(db: &web_sys::IdbDatabase) -> Vec<(String, JsValue, JsValue)> {
    let mut out = Vec::new();
    for s in ALL_STORES {
        let tx = idb::transaction(db, &[s], false, false).unwrap();
        let os = tx.object_store(s).unwrap();
        let kr = os.get_all_keys().unwrap();
        let vr = os.get_all().unwrap();
        let keys: Array = idb::request(&kr).await.unwrap().unchecked_into();
        let values: Array = idb::request(&vr).await.unwrap().unchecked_into();
        for (k, v) in keys.iter().zip(values.iter()) {
            out.push((s.to_string(), k, v));
        }
    }
    out
}

pub(super) fn as_bytes(v: &JsValue) -> Vec<u8> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return a.to_vec();
    }
    if let Some(s) = v.as_string() {
        return s.into_bytes();
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
        .into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn put_raw(db: &web_sys::IdbDatabase, store: &str, key: &JsValue, value: &JsValue) {
    write_raw(db, store, key, Some(value)).await
}

/// Puts (`Some`) or deletes a record of the raw database, behind the store.
pub(super) async fn write_raw(
    db: &web_sys::IdbDatabase,
    store: &str,
    key: &JsValue,
    value: Option<&JsValue>,
) {
    let tx = idb::transaction(db, &[store], true, true).unwrap();
    let done = idb::completion(&tx);
    let os = tx.object_store(store).unwrap();
    match value {
        Some(v) => os.put_with_key(v, key).unwrap(),
        None => os.delete(key).unwrap(),
    };
    done.await.unwrap();
}

#[wasm_bindgen_test]
async fn a_raw_scan_of_every_object_store_finds_no_plaintext_ids_or_key() {
    for key in [passphrase("scan pass"), KeySource::WebCrypto] {
        let name = unique("rawscan");
        let s = IdbStore::open(&name, key).await.unwrap();
        let master = s.master_key_for_tests().expect("encrypted");
        let data_key = s.data_key_for_tests().expect("encrypted");
        let mut outbox = crate::store::conformance::sample_outbox_entry(1);
        outbox.mutation.entity_id = SECRET_ID.into();
        put(
            &s,
            vec![
                WriteOp::PutEntity(secret_record(SECRET_ID)),
                WriteOp::PutOutbox(outbox),
                WriteOp::PutConflict(ConflictRecord {
                    key: EntityKey::new("guests", SECRET_ID),
                    base: None,
                    local: None,
                    server: secret_record(SECRET_ID).server,
                    mutations: vec![],
                    fields: vec!["guest".into()],
                    detected_at: 1,
                }),
            ],
        )
        .await;
        let db = raw(&name).await;
        let rows = dump(&db).await;
        assert!(
            rows.len() >= 6,
            "entities, outbox, conflicts, mode, envelope, ring"
        );
        for (store, k, v) in &rows {
            for blob in [as_bytes(k), as_bytes(v)] {
                for needle in [
                    SECRET_ID.as_bytes(),
                    "Lambert".as_bytes(),
                    "X9981234".as_bytes(),
                    "guests".as_bytes(),
                    &master[..],
                    &data_key[..],
                ] {
                    assert!(
                        !contains(&blob, needle),
                        "plaintext {:?} found in {store}",
                        String::from_utf8_lossy(needle)
                    );
                }
            }
        }
        // The WebCrypto key is stored as a non-extractable CryptoKey.
        for (store, k, v) in &rows {
            if store == "keyring" && k.as_string().as_deref() == Some("kek") {
                let key: web_sys::CryptoKey = v.clone().unchecked_into();
                assert!(!key.extractable());
            }
        }
        db.close();
        s.close();
        IdbStore::destroy(&name).await.unwrap();
    }
}

#[wasm_bindgen_test]
async fn a_tampered_ciphertext_fails_with_a_clear_error() {
    let name = unique("tamper");
    let s = IdbStore::open(&name, passphrase("p")).await.unwrap();
    put(&s, vec![WriteOp::PutEntity(secret_record("a"))]).await;
    let db = raw(&name).await;
    let rows = dump(&db).await;
    let (_, k, v) = rows.iter().find(|(s, ..)| s == "entities").unwrap();
    let mut bytes = as_bytes(v);
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    put_raw(&db, "entities", k, &Uint8Array::from(&bytes[..]).into()).await;
    let err = s.get(&EntityKey::new("guests", "a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(err.code(), crate::ErrorCode::StoreCorrupt);
    assert!(s.scan("guests").await.is_err());
    db.close();
}

#[wasm_bindgen_test]
async fn a_record_swapped_onto_another_key_fails_to_open() {
    let name = unique("swap");
    let s = IdbStore::open(&name, passphrase("p")).await.unwrap();
    put(
        &s,
        vec![
            WriteOp::PutEntity(secret_record("a")),
            WriteOp::PutEntity(secret_record("b")),
        ],
    )
    .await;
    let db = raw(&name).await;
    let rows: Vec<_> = dump(&db)
        .await
        .into_iter()
        .filter(|(s, ..)| s == "entities")
        .collect();
    assert_eq!(rows.len(), 2);
    // b's value under a's key.
    put_raw(&db, "entities", &rows[0].1, &rows[1].2).await;
    let a = s.get(&EntityKey::new("guests", "a")).await;
    let b = s.get(&EntityKey::new("guests", "b")).await;
    assert!(
        matches!(a, Err(StoreError::Corrupt(_))) || matches!(b, Err(StoreError::Corrupt(_))),
        "the swapped record must not open"
    );
    db.close();
}

#[wasm_bindgen_test]
async fn a_wrong_passphrase_fails_clearly_and_destroys_nothing() {
    let name = unique("wrongpw");
    let s = IdbStore::open(&name, passphrase("right")).await.unwrap();
    put(&s, vec![WriteOp::PutEntity(secret_record("a"))]).await;
    s.close();
    drop(s);
    let err = IdbStore::open(&name, passphrase("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::WrongKey), "{err}");
    let err = IdbStore::open(&name, KeySource::HostKey(Zeroizing::new(vec![1; 32])))
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::KeyMismatch(_)), "{err}");
    let err = IdbStore::open(&name, KeySource::Plain).await.unwrap_err();
    assert!(matches!(err, OpenError::KeyMismatch(_)), "{err}");
    let s = IdbStore::open(&name, passphrase("right")).await.unwrap();
    assert_eq!(
        s.get(&EntityKey::new("guests", "a")).await.unwrap(),
        Some(secret_record("a"))
    );
}

#[wasm_bindgen_test]
async fn the_key_survives_a_reopen_for_every_key_source() {
    let sources: [fn() -> KeySource; 3] = [
        || passphrase("again"),
        || KeySource::HostKey(Zeroizing::new(vec![9u8; 32])),
        || KeySource::WebCrypto,
    ];
    for make in sources {
        let name = unique("reopen");
        let s = IdbStore::open(&name, make()).await.unwrap();
        put(&s, vec![WriteOp::PutEntity(secret_record("a"))]).await;
        s.close();
        drop(s);
        let s = IdbStore::open(&name, make()).await.unwrap();
        assert_eq!(
            s.get(&EntityKey::new("guests", "a")).await.unwrap(),
            Some(secret_record("a"))
        );
    }
}

#[wasm_bindgen_test]
async fn a_version_1_database_upgrades_and_keeps_its_data() {
    let name = unique("upgrade");
    // Write a database as schema version 1 wrote it (plain JSON bytes, no
    // keyring store).
    let db = idb::open(&name, 1, |db, old| store::upgrade(db, old, 1))
        .await
        .unwrap();
    assert_eq!(db.version() as u32, 1);
    let entry = crate::store::conformance::sample_outbox_entry(7);
    let rec = secret_record("a");
    let enc = |v: Vec<u8>| JsValue::from(Uint8Array::from(&v[..]));
    put_raw(
        &db,
        "outbox",
        &JsValue::from_f64(7.0),
        &enc(serde_json::to_vec(&entry).unwrap()),
    )
    .await;
    let k: Array = ["guests", "a"]
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect();
    put_raw(&db, "entities", &k, &enc(serde_json::to_vec(&rec).unwrap())).await;
    db.close();

    let s = IdbStore::open(&name, KeySource::Plain).await.unwrap();
    assert_eq!(s.database().version() as u32, store::DB_VERSION);
    assert_eq!(s.outbox().await.unwrap(), vec![entry]);
    assert_eq!(s.get(&rec.key).await.unwrap(), Some(rec));
    // A plain version-1 store refuses a key rather than mixing plain and sealed.
    s.close();
    drop(s);
    assert!(IdbStore::open(&name, passphrase("x")).await.is_err());
}

#[wasm_bindgen_test]
async fn a_closed_or_deleted_database_is_gone() {
    let s = fresh(KeySource::Plain).await;
    s.close();
    let err = s
        .commit(WriteBatch {
            ops: vec![WriteOp::PutEntity(secret_record("a"))],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Gone(_)), "{err}");

    let name = unique("deleted");
    let s = IdbStore::open(&name, KeySource::Plain).await.unwrap();
    IdbStore::destroy(&name).await.unwrap();
    assert!(s.is_gone());
    let err = s.load_meta().await.unwrap_err();
    assert!(matches!(err, StoreError::Gone(_)), "{err}");
}

#[wasm_bindgen_test]
async fn the_counter_reservation_is_stored_with_the_values() {
    let name = unique("ring");
    let s = IdbStore::open(&name, passphrase("p")).await.unwrap();
    put(&s, vec![WriteOp::PutEntity(secret_record("a"))]).await;
    let uses = s.key_uses_for_tests().unwrap();
    s.close();
    drop(s);
    let s = IdbStore::open(&name, passphrase("p")).await.unwrap();
    assert!(s.key_uses_for_tests().unwrap() >= uses);
}

#[wasm_bindgen_test]
async fn a_commit_is_one_strict_readwrite_transaction_over_every_store_it_touches() {
    let s = fresh(passphrase("p")).await;
    let spy = spy_transactions();
    let mut entry = crate::store::conformance::sample_outbox_entry(1);
    entry.mutation.entity_id = "a".into();
    let result = s
        .commit(WriteBatch {
            ops: vec![
                WriteOp::PutEntity(secret_record("a")),
                WriteOp::PutOutbox(entry),
                WriteOp::AppendAudit(AuditEntry {
                    seq: 1,
                    at_ms: 1,
                    op_id: None,
                    key: EntityKey::new("guests", "a"),
                    event: AuditEvent::Queued,
                }),
                WriteOp::DeleteConflict(EntityKey::new("guests", "a")),
            ],
        })
        .await;
    let seen: Vec<serde_json::Value> = serde_json::from_str(&spy.seen()).unwrap();
    spy.restore();
    result.unwrap();
    let writes: Vec<_> = seen.iter().filter(|t| t["mode"] == "readwrite").collect();
    assert_eq!(writes.len(), 1, "one transaction per batch: {seen:?}");
    assert_eq!(writes[0]["durability"], "strict");
    assert_eq!(
        writes[0]["reported"], "strict",
        "the engine honours durability \"strict\": {seen:?}"
    );
    let reads: Vec<_> = seen.iter().filter(|t| t["mode"] == "readonly").collect();
    assert!(
        reads.iter().all(|t| t["reported"] == "default"),
        "reads keep the default durability: {seen:?}"
    );
    let stores = writes[0]["stores"].as_str().unwrap();
    for s in ["entities", "outbox", "audit", "conflicts"] {
        assert!(stores.contains(s), "{s} in {stores}");
    }
}

/// Collects garbage and reads the JS heap in use, where the engine can:
/// Chromium has `performance.memory` (precise with
/// `--enable-precise-memory-info`) and `gc()` (with `--js-flags=--expose-gc`,
/// both in webdriver.json). Firefox and WebKit have neither (and no other
/// heap figure a page can read): `None`.
async fn heap_after_gc() -> Option<f64> {
    let global = js_sys::global();
    let perf = js_sys::Reflect::get(&global, &"performance".into()).unwrap();
    // A snapshot: read `performance.memory` again after collecting.
    let memory = || js_sys::Reflect::get(&perf, &"memory".into()).unwrap();
    if !memory().is_object() {
        return None;
    }
    let gc: js_sys::Function = js_sys::Reflect::get(&global, &"gc".into())
        .unwrap()
        .dyn_into()
        .expect("gc() is exposed where performance.memory is (webdriver.json)");
    for _ in 0..3 {
        gc.call0(&JsValue::NULL).unwrap();
        gloo_timers::future::TimeoutFuture::new(50).await;
    }
    Some(
        js_sys::Reflect::get(&memory(), &"usedJSHeapSize".into())
            .unwrap()
            .as_f64()
            .unwrap(),
    )
}

/// Every request and transaction handler is released once it fired (the
/// one-shot Rust closures of the other outcome used to keep each request
/// and its sealed value alive: ~0.6 MB per 1k entities). Where the heap can
/// be read (Chromium), after 20k requests and `close()` the JS heap is back
/// near where it started. Where it cannot (Firefox, WebKit), the test checks
/// the cause instead: each of the 20k requests and every transaction was
/// left with no handler once it fired.
#[wasm_bindgen_test]
async fn twenty_thousand_requests_leave_no_handlers_or_results_behind() {
    let name = unique("heap");
    let key = KeySource::HostKey(Zeroizing::new(vec![9u8; 32]));
    // Warm up (code, caches) before the baseline.
    let warm = IdbStore::open(&unique("heap-warm"), KeySource::Plain)
        .await
        .unwrap();
    put(&warm, vec![WriteOp::PutEntity(secret_record("w"))]).await;
    warm.close();
    let before = heap_after_gc().await;
    // Without a heap figure, watch every request instead (holding them
    // would itself grow the heap, so not where the heap is measured).
    let spy = before
        .is_none()
        .then(super::tests_engines::spy_idb_handlers);
    let store = IdbStore::open(&name, key).await.unwrap();
    let keys: Vec<EntityKey> = (0..100)
        .map(|i| EntityKey::new("guests", format!("g{i}")))
        .collect();
    // Packed pages hold many entities per record, so a round issues
    // about a hundred requests: 250 rounds make the twenty thousand.
    for round in 0..250 {
        let ops = keys
            .iter()
            .map(|k| WriteOp::PutEntity(secret_record(&format!("{}-{round}", k.id))))
            .collect();
        put(&store, ops).await;
        let got = store.get_many(&keys).await.unwrap();
        assert_eq!(got.len(), 100);
    }
    store.close();
    drop(store);
    match (before, spy) {
        (Some(before), _) => {
            let after = heap_after_gc().await.expect("still measurable");
            let grown = after - before;
            web_sys::console::log_1(
                &format!("heap before {before}, after {after}, grown {grown}").into(),
            );
            assert!(
                grown < 2_000_000.0,
                "the JS heap grew {grown} bytes over 20k requests and close()"
            );
        }
        (None, Some(spy)) => {
            let (requests, transactions) = (spy.requests(), spy.transactions());
            let unreleased = spy.unreleased();
            spy.restore();
            web_sys::console::log_1(
                &format!(
                    "no performance.memory/gc() in this engine: checked instead that \
                     {requests} requests and {transactions} transactions released their handlers"
                )
                .into(),
            );
            assert!(requests >= 20_000, "{requests} requests watched");
            assert!(transactions >= 200, "{transactions} transactions watched");
            assert_eq!(unreleased, "[]", "handlers left behind");
        }
        (None, None) => unreachable!("the spy is set where the heap is not measured"),
    }
    IdbStore::destroy(&name).await.unwrap();
}
