//! Browser tests of the packed pages (schema 3): what a bulk write stores,
//! that pages are sealed and covered by the integrity mark like every other
//! record, and that a schema-2 database written by an earlier build opens
//! and reads as it did.

use super::keys::KeySource;
use super::store::IdbStore;
use super::tests::{as_bytes, dump, passphrase, put, raw, unique, write_raw};
use crate::protocol::{EntityKey, EntityState};
use crate::store::*;
use crate::Hlc;
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

const SECRET: &str = "Guest Zoë Lambert, passport X9981234";

fn guest(i: u64, version: u64) -> EntityRecord {
    let id = format!("zoe-lambert-{i:04}");
    let mut fields = crate::protocol::Fields::new();
    fields.insert("guest".into(), SECRET.into());
    let st = EntityState {
        collection: "guests".into(),
        id: id.clone(),
        version,
        fields,
        deleted: false,
        last_op: None,
        updated_at: Hlc {
            wall_ms: version,
            counter: 0,
            node: 1,
        },
    };
    let key = EntityKey::new("guests", id);
    EntityRecord {
        view: Some(EntityRecord::settled_view(&key, &st)),
        key,
        server: Some(st),
        chain_base: None,
    }
}

fn bulk(n: u64, version: u64) -> Vec<WriteOp> {
    (0..n)
        .map(|i| WriteOp::PutEntity(guest(i, version)))
        .collect()
}

fn count(rows: &[(String, JsValue, JsValue)], store: &str) -> usize {
    rows.iter().filter(|(s, ..)| s == store).count()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[wasm_bindgen_test]
async fn a_bulk_write_is_packed_into_sealed_pages_that_hold_no_plaintext() {
    let name = unique("pages");
    let s = IdbStore::open(&name, passphrase("pages")).await.unwrap();
    put(&s, bulk(2000, 1)).await;
    let db = raw(&name).await;
    let rows = dump(&db).await;
    assert_eq!(count(&rows, "entities"), 0, "no record written one by one");
    let pages = count(&rows, "pages");
    assert!((3..=40).contains(&pages), "{pages} pages for 2000 records");
    assert_eq!(count(&rows, "dirs"), 1);
    for (store, k, v) in &rows {
        for blob in [as_bytes(k), as_bytes(v)] {
            for needle in ["zoe-lambert", "Lambert", "X9981234", "guests"] {
                assert!(
                    !contains(&blob, needle.as_bytes()),
                    "plaintext {needle:?} in {store}"
                );
            }
        }
    }
    db.close();
    // Read back, one by one, in runs and by page; then after a reopen,
    // which checks every page against the integrity mark.
    let k = |i: u64| EntityKey::new("guests", format!("zoe-lambert-{i:04}"));
    assert_eq!(s.get(&k(1234)).await.unwrap(), Some(guest(1234, 1)));
    assert_eq!(s.get(&k(5000)).await.unwrap(), None);
    s.close();
    let s = IdbStore::open(&name, passphrase("pages")).await.unwrap();
    let keys: Vec<EntityKey> = (0..2100).step_by(3).map(k).collect();
    let got = s.get_sorted(&keys).await.unwrap();
    for (key, g) in keys.iter().zip(&got) {
        let i: u64 = key.id[12..].parse().unwrap();
        assert_eq!(
            g.as_ref().map(|r| r.key.clone()),
            (i < 2000).then(|| key.clone())
        );
    }
    let page = s
        .scan_page("guests", Some("zoe-lambert-0999"), 5)
        .await
        .unwrap();
    assert_eq!(page.first(), Some(&guest(1000, 1)));
    assert_eq!(page.len(), 5);
    assert_eq!(s.scan("guests").await.unwrap().len(), 2000);
    assert_eq!(s.collections().await.unwrap(), vec!["guests".to_string()]);
    // A local write lands beside the pages, and the next bulk write folds
    // it in.
    put(&s, vec![WriteOp::PutEntity(guest(7, 2))]).await;
    put(&s, vec![WriteOp::DeleteEntity(k(8))]).await;
    let db = raw(&name).await;
    assert_eq!(
        count(&dump(&db).await, "entities"),
        2,
        "a record and a tombstone"
    );
    db.close();
    assert_eq!(s.get(&k(7)).await.unwrap(), Some(guest(7, 2)));
    assert_eq!(s.get(&k(8)).await.unwrap(), None);
    put(
        &s,
        (100..200)
            .map(|i| WriteOp::PutEntity(guest(i, 3)))
            .collect(),
    )
    .await;
    let db = raw(&name).await;
    assert_eq!(
        count(&dump(&db).await, "entities"),
        0,
        "folded into the pages"
    );
    db.close();
    assert_eq!(s.get(&k(7)).await.unwrap(), Some(guest(7, 2)));
    assert_eq!(s.get(&k(8)).await.unwrap(), None);
    assert_eq!(s.get(&k(150)).await.unwrap(), Some(guest(150, 3)));
    assert_eq!(s.scan("guests").await.unwrap().len(), 1999);
    s.close();
    IdbStore::open(&name, passphrase("pages"))
        .await
        .expect("the mark covers the pages");
}

#[wasm_bindgen_test]
async fn a_tampered_swapped_or_rolled_back_page_is_store_corrupt() {
    let name = unique("pages-tamper");
    let s = IdbStore::open(&name, passphrase("pages")).await.unwrap();
    put(&s, bulk(1500, 1)).await;
    s.close();
    let db = raw(&name).await;
    let original: Vec<_> = dump(&db)
        .await
        .into_iter()
        .filter(|(s, ..)| s == "pages")
        .collect();
    assert!(original.len() >= 2);
    // A flipped byte inside the first page (the lowest ids): the GCM tag
    // the mark binds is intact, so the store opens, and a read of that page
    // fails while the others work.
    let (_, k0, v0) = &original[0];
    let mut bytes = as_bytes(v0);
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    write_raw(&db, "pages", k0, Some(&Uint8Array::from(&bytes[..]).into())).await;
    db.close();
    let s = IdbStore::open(&name, passphrase("pages")).await.unwrap();
    let err = s
        .get(&EntityKey::new("guests", "zoe-lambert-0000"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), crate::ErrorCode::StoreCorrupt, "{err}");
    assert!(s.scan("guests").await.is_err());
    assert_eq!(
        s.get(&EntityKey::new("guests", "zoe-lambert-1499"))
            .await
            .unwrap(),
        Some(guest(1499, 1))
    );
    s.close();
    // One page's value under another page's key.
    let db = raw(&name).await;
    write_raw(&db, "pages", k0, Some(&original[1].2)).await;
    db.close();
    let err = IdbStore::open(&name, passphrase("pages"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), crate::ErrorCode::StoreCorrupt, "{err}");
    // Restored: it opens again. A later bulk write replaces pages; the old
    // page put back beside them is caught by the mark.
    let db = raw(&name).await;
    write_raw(&db, "pages", k0, Some(v0)).await;
    db.close();
    let s = IdbStore::open(&name, passphrase("pages")).await.unwrap();
    put(&s, bulk(1500, 2)).await;
    assert_eq!(
        s.get(&EntityKey::new("guests", "zoe-lambert-0003"))
            .await
            .unwrap(),
        Some(guest(3, 2))
    );
    s.close();
    let db = raw(&name).await;
    let now: Vec<_> = dump(&db)
        .await
        .into_iter()
        .filter(|(s, ..)| s == "pages")
        .collect();
    assert!(now.iter().all(|(_, k, _)| !original
        .iter()
        .any(|(_, ok, _)| as_bytes(ok) == as_bytes(k))));
    write_raw(&db, "pages", k0, Some(v0)).await;
    db.close();
    let err = IdbStore::open(&name, passphrase("pages"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("integrity mark"), "{err}");
}

/// The fixture: databases written by the schema-2 code (d5e9c7f,
/// `src/web/fixtures/README.md` says how), as raw rows and the contents
/// they hold.
const FIXTURE: &str = include_str!("fixtures/schema2.json");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[wasm_bindgen_test]
async fn a_schema_2_database_from_the_previous_build_upgrades_in_place() {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    for db in fixture["databases"].as_array().unwrap() {
        assert_eq!(db["db_version"], 2);
        let name = unique("schema2");
        // Recreate the database as that build left it.
        let raw_db = super::idb::open(&name, 2, |d, old| super::store::upgrade(d, old, 2))
            .await
            .unwrap();
        for row in db["rows"].as_array().unwrap() {
            let key: JsValue = js_sys::JSON::parse(&row["key"].to_string()).unwrap();
            let value: JsValue = match row["value"].get("bytes") {
                Some(h) => Uint8Array::from(&unhex(h.as_str().unwrap())[..]).into(),
                None => row["value"]["string"].as_str().unwrap().into(),
            };
            write_raw(&raw_db, row["store"].as_str().unwrap(), &key, Some(&value)).await;
        }
        raw_db.close();
        let key = match db["mode"].as_str().unwrap() {
            "plain" => KeySource::Plain,
            _ => passphrase("fixture pass"),
        };
        let s = IdbStore::open(&name, key)
            .await
            .expect("opens after the upgrade");
        let c = &db["contents"];
        let want: Vec<EntityRecord> = serde_json::from_value(c["entities"].clone()).unwrap();
        let got = s.scan("rooms").await.unwrap();
        assert_eq!(got, want, "{}: the entities read as written", db["mode"]);
        assert_eq!(
            s.outbox().await.unwrap(),
            serde_json::from_value::<Vec<OutboxEntry>>(c["outbox"].clone()).unwrap()
        );
        assert_eq!(
            s.conflicts().await.unwrap(),
            serde_json::from_value::<Vec<ConflictRecord>>(c["conflicts"].clone()).unwrap()
        );
        assert_eq!(
            s.audit(0, 100).await.unwrap(),
            serde_json::from_value::<Vec<AuditEntry>>(c["audit"].clone()).unwrap()
        );
        assert_eq!(
            s.load_meta().await.unwrap(),
            Some(serde_json::from_value::<SyncMeta>(c["meta"].clone()).unwrap())
        );
        // A bulk write folds the old records into pages; all still read.
        let mut more: Vec<WriteOp> = (0..100u64)
            .map(|i| {
                let mut r = want[0].clone();
                r.key.id = format!("s{i:03}");
                let st = r.server.as_mut().unwrap();
                st.id = r.key.id.clone();
                r.view = Some(EntityRecord::settled_view(&r.key, st));
                WriteOp::PutEntity(r)
            })
            .collect();
        more.push(WriteOp::PutMeta(s.load_meta().await.unwrap().unwrap()));
        put(&s, more).await;
        let all = s.scan("rooms").await.unwrap();
        assert_eq!(all.len(), want.len() + 100);
        assert!(want.iter().all(|w| all.contains(w)));
        s.close();
        let raw_db = raw(&name).await;
        let rows = dump(&raw_db).await;
        assert_eq!(count(&rows, "entities"), 0, "folded");
        raw_db.close();
        IdbStore::open(
            &name,
            match db["mode"].as_str().unwrap() {
                "plain" => KeySource::Plain,
                _ => passphrase("fixture pass"),
            },
        )
        .await
        .expect("reopens");
    }
}
