//! What SQLCipher must guarantee for the store: a wrong key is
//! `STORE_WRONG_KEY` and changes nothing, the files on disk hold no
//! plaintext (database and -wal), a flipped byte reads as `STORE_CORRUPT`,
//! and the pragmas the design asks for are in force.

mod common;

use common::*;
use futures::executor::block_on;
use serde_json::json;
use tidesync::hlc::Hlc;
use tidesync::protocol::{EntityKey, EntityState, OpId};
use tidesync::store::*;
use tidesync::ErrorCode;
use tidesync_sqlcipher::{OpenError, SqlCipherStore, StoreKey};

const SECRET_VALUE: &str = "guest-name-Zoë-Quillfeather";
const SECRET_ID: &str = "room-id-4711-penthouse";
const SECRET_COLLECTION: &str = "collection-vipguests";

fn record(collection: &str, id: &str, n: u64) -> EntityRecord {
    let fields = json!({"guest": SECRET_VALUE, "n": n, "note": "x".repeat(200)})
        .as_object()
        .cloned()
        .unwrap();
    let state = EntityState {
        collection: collection.into(),
        id: id.into(),
        version: n,
        fields: fields.clone(),
        deleted: false,
        updated_at: Hlc {
            wall_ms: n,
            counter: 0,
            node: 1,
        },
        last_op: Some(OpId::from_parts(n, 1)),
    };
    EntityRecord {
        key: EntityKey::new(collection, id),
        server: Some(state),
        chain_base: None,
        view: Some(LocalEntity {
            collection: collection.into(),
            id: id.into(),
            fields,
            deleted: false,
            server_version: n,
            updated_at: Hlc::default(),
            pending: 0,
            conflicted: false,
        }),
    }
}

/// A store with enough entities to span many pages.
fn filled(path: &std::path::Path, key: StoreKey, n: u64) -> SqlCipherStore {
    let store = SqlCipherStore::open(path, key).unwrap();
    let mut ops: Vec<WriteOp> = (0..n)
        .map(|i| WriteOp::PutEntity(record(SECRET_COLLECTION, &format!("{SECRET_ID}-{i}"), i)))
        .collect();
    ops.push(WriteOp::PutOutbox(
        tidesync::store::conformance::sample_outbox_entry(1),
    ));
    // The terminal's API key, where a store may keep it (encrypted only).
    if store.keeps_secrets() {
        ops.push(WriteOp::PutCredential(Some(
            tidesync::store::conformance::sample_credential(),
        )));
    }
    block_on(store.commit(WriteBatch { ops })).unwrap();
    store
}

/// Reads every record through the trait; the first error, if any.
fn read_all(store: &SqlCipherStore) -> Result<usize, StoreError> {
    block_on(async {
        let mut n = 0;
        store.load_meta().await?;
        for c in store.collections().await? {
            n += store.scan(&c).await?.len();
        }
        n += store.outbox().await?.len();
        store.conflicts().await?;
        store.audit(0, usize::MAX).await?;
        Ok(n)
    })
}

fn digest_of_files(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    raw_files(path)
}

#[test]
fn sqlcipher_is_linked_and_the_pragmas_hold() {
    let path = fresh_path("pragmas");
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    store
        .with_conn(|c| {
            let get = |sql: &str| -> String {
                c.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
                    .map(|v| match v {
                        rusqlite::types::Value::Text(s) => s,
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    })
                    .unwrap()
            };
            assert!(
                !get("PRAGMA cipher_version").is_empty(),
                "SQLCipher is linked"
            );
            assert_eq!(get("PRAGMA journal_mode"), "wal");
            assert_eq!(get("PRAGMA synchronous"), "2", "synchronous = FULL");
            assert_eq!(get("PRAGMA temp_store"), "2", "temp_store = MEMORY");
            Ok(())
        })
        .unwrap();
    assert!(store.is_encrypted());
}

#[test]
fn a_wrong_key_is_store_wrong_key_and_changes_nothing() {
    let path = fresh_path("wrong-key");
    filled(&path, raw_key(), 20).close();
    let before = digest_of_files(&path);
    for wrong in [
        StoreKey::raw([9u8; 32]),
        passphrase("not the key"),
        passphrase(std::str::from_utf8(&KEY).unwrap()),
    ] {
        let err = SqlCipherStore::open(&path, wrong).unwrap_err();
        assert_eq!(err, OpenError::WrongKey);
        assert_eq!(err.code(), ErrorCode::StoreWrongKey);
        assert_eq!(digest_of_files(&path), before, "a wrong key wrote nothing");
    }
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    assert_eq!(
        read_all(&store),
        Ok(21),
        "the right key still opens everything"
    );
}

#[test]
fn a_wrong_passphrase_is_store_wrong_key() {
    let path = fresh_path("wrong-pass");
    filled(&path, passphrase("open sesame"), 3).close();
    let err = SqlCipherStore::open(&path, passphrase("open sesame!")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreWrongKey);
    let store = SqlCipherStore::open(&path, passphrase("open sesame")).unwrap();
    assert_eq!(read_all(&store), Ok(4));
}

#[test]
fn a_key_where_none_was_used_and_the_reverse_are_key_mismatch() {
    let enc = fresh_path("mismatch-enc");
    filled(&enc, raw_key(), 2).close();
    let err = SqlCipherStore::open(&enc, StoreKey::Plain).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch, "{err}");

    let plain = fresh_path("mismatch-plain");
    filled(&plain, StoreKey::Plain, 2).close();
    let before = digest_of_files(&plain);
    let err = SqlCipherStore::open(&plain, raw_key()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch, "{err}");
    assert_eq!(digest_of_files(&plain), before);
}

fn needles() -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("value", SECRET_VALUE.as_bytes().to_vec()),
        ("id", SECRET_ID.as_bytes().to_vec()),
        ("collection", SECRET_COLLECTION.as_bytes().to_vec()),
        ("client id", b"client-a".to_vec()),
        ("key", KEY.to_vec()),
        ("key hex", hex.into_bytes()),
        (
            "API key",
            tidesync::store::conformance::sample_credential()
                .api_key
                .clone()
                .into_bytes(),
        ),
    ]
}

#[test]
fn the_file_and_its_wal_hold_no_plaintext() {
    let path = fresh_path("raw-scan");
    // Still open: the writes sit in the -wal, not yet checkpointed.
    let store = filled(&path, raw_key(), 200);
    let files = raw_files(&path);
    let wal = files.iter().find(|(n, _)| n == "file-wal").expect("a -wal");
    assert!(
        wal.1.len() > 4096,
        "the writes are in the -wal ({} bytes)",
        wal.1.len()
    );
    for (file, bytes) in &files {
        for (what, needle) in needles() {
            assert!(
                !contains(bytes, &needle),
                "{file} holds the {what} in clear"
            );
        }
    }
    store.close();
    for (file, bytes) in raw_files(&path) {
        assert!(bytes.len() > 4096 || file != "file");
        for (what, needle) in needles() {
            assert!(
                !contains(&bytes, &needle),
                "{file} holds the {what} in clear"
            );
        }
    }
}

#[test]
fn the_plaintext_scan_would_see_a_plain_store() {
    // The control for the test above: the same scan finds the values in a
    // plain store, in its -wal.
    let path = fresh_path("raw-scan-plain");
    let _store = filled(&path, StoreKey::Plain, 200);
    let files = raw_files(&path);
    let wal = &files.iter().find(|(n, _)| n == "file-wal").unwrap().1;
    assert!(contains(wal, SECRET_VALUE.as_bytes()));
    assert!(contains(wal, SECRET_ID.as_bytes()));
}

#[test]
fn a_flipped_byte_in_any_page_is_store_corrupt() {
    let path = fresh_path("flip");
    filled(&path, raw_key(), 300).close();
    let original = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = original.len() / page;
    assert!(pages >= 20, "the store spans many pages ({pages})");
    for p in 0..pages {
        // A byte in the middle of the page's encrypted content.
        let at = p * page + page / 2;
        let mut bytes = original.clone();
        bytes[at] ^= 0x20;
        let copy = fresh_path("flipped");
        std::fs::write(&copy, &bytes).unwrap();
        let outcome = SqlCipherStore::open(&copy, raw_key()).map(|s| read_all(&s));
        match (p, outcome) {
            // Page 1 holds the schema: its HMAC failing is indistinguishable
            // from a wrong key (SQLCipher checks the key on page 1).
            (0, Err(e)) => assert_eq!(e.code(), ErrorCode::StoreWrongKey, "page 1: {e}"),
            (_, Err(e)) => assert_eq!(e.code(), ErrorCode::StoreCorrupt, "page {}: {e}", p + 1),
            (_, Ok(Err(e))) => assert_eq!(e.code(), ErrorCode::StoreCorrupt, "page {}: {e}", p + 1),
            (_, Ok(Ok(n))) => {
                // The flipped page is one no read touches (a freelist page):
                // SQLite must still refuse it when it reads it.
                let s = SqlCipherStore::open(&copy, raw_key()).unwrap();
                let check = s
                    .with_conn(|c| {
                        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                            .map_err(|e| StoreError::Corrupt(e.to_string()))
                    })
                    .map(|v| v == "ok");
                assert!(
                    !matches!(check, Ok(true)),
                    "page {} flipped, {n} records read and the integrity check passed",
                    p + 1
                );
            }
        }
        SqlCipherStore::destroy(&copy).unwrap();
    }
}

#[test]
fn a_deleted_or_closed_store_is_gone() {
    let path = fresh_path("gone");
    let store = filled(&path, raw_key(), 1);
    assert_eq!(store.health(), Ok(()));
    SqlCipherStore::destroy(&path).unwrap();
    assert_eq!(store.health().unwrap_err().code(), ErrorCode::StoreGone);

    let path = fresh_path("closed");
    let store = filled(&path, raw_key(), 1);
    let clone = store.clone();
    store.close();
    assert_eq!(clone.health().unwrap_err().code(), ErrorCode::StoreGone);
    let err = block_on(clone.load_meta()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreGone);
}
