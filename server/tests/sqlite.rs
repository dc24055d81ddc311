//! The service test suite on the SQLite backend, plus SQLite-only checks.

mod common;
mod suite;

const BACKEND: common::Kind = common::Kind::Sqlite;

mod sqlite_only {
    use tidesync_server::storage::migrate;
    use tidesync_server::{Backend, SqliteStore, SqliteSync, SyncService};

    use crate::common::{
        database_at_0001_with_ledger_rows, old_ops_are_still_duplicates_after_the_migration,
    };

    fn path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tidesync_{name}_{}.db", std::process::id()))
    }

    #[test]
    fn migrations_are_recorded_and_reopening_is_idempotent() {
        let p = path("reopen");
        let _ = std::fs::remove_file(&p);
        let first = SqliteStore::open(&p, SqliteSync::Normal).unwrap();
        let all: Vec<i64> = migrate::SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(first.schema_versions().unwrap(), all);
        drop(first);
        let again = SqliteStore::open(&p, SqliteSync::Normal).unwrap();
        assert_eq!(again.schema_versions().unwrap(), all);
        drop(again);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_database_newer_than_the_code_is_refused() {
        let p = path("newer");
        let _ = std::fs::remove_file(&p);
        drop(SqliteStore::open(&p, SqliteSync::Normal).unwrap());
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) \
             VALUES (999, '0999_future.sql', 'x', 0)",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqliteStore::open(&p, SqliteSync::Normal).unwrap_err();
        assert!(err.to_string().contains("newer than this server"), "{err}");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let p = path("edited");
        let _ = std::fs::remove_file(&p);
        drop(SqliteStore::open(&p, SqliteSync::Normal).unwrap());
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.execute(
            "UPDATE schema_migrations SET checksum = 'abc' WHERE version = 1",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqliteStore::open(&p, SqliteSync::Normal).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        let _ = std::fs::remove_file(&p);
    }

    /// A database written by schema 0001 (ledger keyed by tenant, terminal,
    /// op id) migrates to 0002 (the branch in the key), and a retry of an
    /// op applied before the upgrade is still a duplicate.
    #[test]
    fn a_0001_database_with_ledger_rows_migrates_and_old_ops_stay_duplicates() {
        let p = path("ledger_v1");
        let _ = std::fs::remove_file(&p);
        let conn = rusqlite::Connection::open(&p).unwrap();
        let old = database_at_0001_with_ledger_rows(
            &mut |sql| conn.execute_batch(sql).unwrap(),
            &migrate::SQLITE[0],
            "INTEGER",
        );
        drop(conn);
        let store = SqliteStore::open(&p, SqliteSync::Normal).unwrap();
        let all: Vec<i64> = migrate::SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(store.schema_versions().unwrap(), all);
        assert!(all.contains(&2));
        let s = SyncService::new(Backend::new(store));
        old_ops_are_still_duplicates_after_the_migration(&s, &old);
        drop(s);
        let _ = std::fs::remove_file(&p);
    }
}
