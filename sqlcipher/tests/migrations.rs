//! The schema migrations of `migrations/sqlcipher/`: recorded with their
//! checksums, a newer database refused, an edited migration detected, and
//! a file written at schema 1 upgraded.

mod common;

use common::*;
use futures::executor::block_on;
use serde_json::json;
use tidesync::hlc::Hlc;
use tidesync::protocol::EntityKey;
use tidesync::store::*;
use tidesync::ErrorCode;
use tidesync_sqlcipher::migrations::{self, Migration, MigrationError, MIGRATIONS};
use tidesync_sqlcipher::{OpenError, SqlCipherStore};

fn recorded(store: &SqlCipherStore) -> Vec<(u32, String, String)> {
    store
        .with_conn(|c| Ok(migrations::applied(c).unwrap()))
        .unwrap()
}

#[test]
fn every_migration_is_recorded_once_with_its_checksum() {
    let path = fresh_path("recorded");
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    let expected: Vec<(u32, String, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_string(), m.checksum()))
        .collect();
    assert_eq!(recorded(&store), expected);
    assert_eq!(store.schema_version(), Ok(migrations::latest_version()));
    store.close();
    // A second open applies nothing again.
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    assert_eq!(recorded(&store), expected);
}

#[test]
fn a_database_newer_than_the_code_is_refused_untouched() {
    let path = fresh_path("newer");
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    store
        .with_conn(|c| {
            c.execute(
                "INSERT INTO schema_migrations VALUES (99, '0099_future.sql', 'abc', 0)",
                [],
            )
            .unwrap();
            Ok(())
        })
        .unwrap();
    store.close();
    let before = std::fs::read(&path).unwrap();
    let err = SqlCipherStore::open(&path, raw_key()).unwrap_err();
    assert_eq!(
        err,
        OpenError::Schema(MigrationError::NewerThanCode {
            found: 99,
            known: migrations::latest_version()
        })
    );
    assert_eq!(err.code(), ErrorCode::SchemaUnsupported);
    assert!(err.to_string().contains("newer tidesync"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn an_edited_applied_migration_is_detected() {
    let path = fresh_path("edited");
    SqlCipherStore::open(&path, raw_key()).unwrap().close();
    let mut edited: Vec<Migration> = MIGRATIONS.to_vec();
    edited[1].sql = "CREATE TABLE collections (name TEXT PRIMARY KEY) WITHOUT ROWID;";
    let err = SqlCipherStore::open_with_migrations(&path, raw_key(), &edited).unwrap_err();
    match &err {
        OpenError::Schema(MigrationError::Edited { version, name, .. }) => {
            assert_eq!((*version, name.as_str()), (2, "0002_collections.sql"));
        }
        other => panic!("expected an edited migration, got {other}"),
    }
    assert_eq!(err.code(), ErrorCode::SchemaUnsupported);
    // The unedited list still opens it.
    SqlCipherStore::open(&path, raw_key()).unwrap();
}

/// What the schema-1 fixture holds (written by `write_v1_fixture`).
fn fixture_batch() -> WriteBatch {
    let mut ops = Vec::new();
    for (collection, n) in [("rooms", 5u64), ("sales", 3)] {
        for i in 0..n {
            let id = format!("{collection}-{i}");
            let fields = json!({"n": i, "status": "dirty"})
                .as_object()
                .cloned()
                .unwrap();
            ops.push(WriteOp::PutEntity(EntityRecord {
                key: EntityKey::new(collection, &id),
                server: None,
                chain_base: Some(ChainBase::Absent),
                view: Some(LocalEntity {
                    collection: collection.into(),
                    id,
                    fields,
                    deleted: false,
                    server_version: 0,
                    updated_at: Hlc {
                        wall_ms: 1_700_000_000_000 + i,
                        counter: 0,
                        node: 7,
                    },
                    pending: 1,
                    conflicted: false,
                }),
            }));
        }
    }
    for seq in 1..=4 {
        ops.push(WriteOp::PutOutbox(conformance::sample_outbox_entry(seq)));
    }
    WriteBatch { ops }
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema1.db");

/// Regenerates the schema-1 fixture: the store with only `0001_init.sql`,
/// as the first version of this store wrote it.
/// `cargo test -p tidesync-sqlcipher --test migrations -- --ignored write_v1_fixture`
#[test]
#[ignore = "regenerates tests/fixtures/schema1.db"]
fn write_v1_fixture() {
    SqlCipherStore::destroy(FIXTURE).unwrap();
    let store = SqlCipherStore::open_with_migrations(FIXTURE, raw_key(), &MIGRATIONS[..1]).unwrap();
    block_on(store.commit(fixture_batch())).unwrap();
    store
        .with_conn(|c| {
            c.execute_batch("VACUUM").unwrap();
            Ok(())
        })
        .unwrap();
    store.close();
}

#[test]
fn a_file_written_at_schema_1_upgrades() {
    let path = fresh_path("upgrade");
    std::fs::copy(FIXTURE, &path).unwrap();
    {
        // It really is at schema 1.
        let old = SqlCipherStore::open_with_migrations(&path, raw_key(), &MIGRATIONS[..1]).unwrap();
        assert_eq!(old.schema_version(), Ok(1));
        old.close();
    }
    let store = SqlCipherStore::open(&path, raw_key()).unwrap();
    assert_eq!(store.schema_version(), Ok(migrations::latest_version()));
    block_on(async {
        // Migration 2 counted the collections that were already there.
        assert_eq!(store.collections().await.unwrap(), vec!["rooms", "sales"]);
        let counts: Vec<(String, i64)> = store
            .with_conn(|c| {
                let mut s = c
                    .prepare("SELECT name, entities FROM collections ORDER BY name")
                    .unwrap();
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
                Ok(rows.map(Result::unwrap).collect())
            })
            .unwrap();
        assert_eq!(counts, vec![("rooms".into(), 5), ("sales".into(), 3)]);
        // Every record reads back as written.
        let expected = fixture_batch();
        for op in &expected.ops {
            match op {
                WriteOp::PutEntity(r) => {
                    assert_eq!(store.get(&r.key).await.unwrap().as_ref(), Some(r))
                }
                WriteOp::PutOutbox(_) => {}
                _ => unreachable!(),
            }
        }
        assert_eq!(store.outbox().await.unwrap().len(), 4);
        // And the triggers keep the counts from here on.
        store
            .commit(WriteBatch {
                ops: (0..3)
                    .map(|i| WriteOp::DeleteEntity(EntityKey::new("sales", format!("sales-{i}"))))
                    .collect(),
            })
            .await
            .unwrap();
        assert_eq!(store.collections().await.unwrap(), vec!["rooms"]);
        // Migration 3: the upgraded file has room for the credential.
        assert_eq!(store.load_credential().await.unwrap(), None);
        let credential = conformance::sample_credential();
        store
            .commit(WriteBatch {
                ops: vec![WriteOp::PutCredential(Some(credential.clone()))],
            })
            .await
            .unwrap();
        assert_eq!(store.load_credential().await.unwrap(), Some(credential));
    });
}
