//! The store's schema migrations: the numbered SQL files of
//! `migrations/sqlcipher/`, compiled in with `include_str!`.
//!
//! Each file is applied in its own transaction, together with its row in
//! `schema_migrations` (version, name, SHA-256 of the SQL text, when). At
//! every open the applied rows are checked against the files of this build:
//! - a row whose version this build does not have: the database was written
//!   by a newer build, and is refused ([`MigrationError::NewerThanCode`]);
//! - a row whose checksum differs from the file of the same version: the
//!   file was edited after it had been applied somewhere
//!   ([`MigrationError::Edited`]). Write a new file instead.

use crate::store::sqlite_error;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use tidesync::store::StoreError;

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: 1, 2, ... without gaps.
    pub version: u32,
    /// The file name, e.g. `0001_init.sql`.
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL text, hex.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.sql.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Every migration of this build, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../migrations/sqlcipher/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_collections.sql",
        sql: include_str!("../../migrations/sqlcipher/0002_collections.sql"),
    },
    Migration {
        version: 3,
        name: "0003_credential.sql",
        sql: include_str!("../../migrations/sqlcipher/0003_credential.sql"),
    },
];

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The database was migrated by a newer build than this one.
    #[error(
        "the database is at schema {found}, newer than this build's {known}: \
         open it with a newer tidesync (nothing was changed)"
    )]
    NewerThanCode {
        /// The highest version recorded in the database.
        found: u32,
        /// The highest version this build knows.
        known: u32,
    },
    /// An applied migration's file was edited afterwards.
    #[error(
        "migration {version} ({name}) was edited after it was applied to this \
         database (checksum {recorded} recorded, {current} in this build): \
         add a new migration instead of editing an applied one"
    )]
    Edited {
        /// Its version.
        version: u32,
        /// Its file.
        name: String,
        /// The checksum recorded when it was applied.
        recorded: String,
        /// The checksum of the file in this build.
        current: String,
    },
    /// A migration (or reading the recorded ones, version 0) failed; its
    /// transaction was rolled back.
    #[error("migration {version} failed: {error}")]
    Failed {
        /// Its version.
        version: u32,
        /// What SQLite said, as a store error (a damaged page is `Corrupt`).
        error: StoreError,
    },
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version       INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
)";

/// The migrations recorded in a database: (version, name, checksum).
pub fn applied(conn: &Connection) -> rusqlite::Result<Vec<(u32, String, String)>> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt =
        conn.prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Checks the recorded migrations against `migrations` and applies the
/// missing ones, each in its own transaction. Returns the schema version.
pub fn migrate(
    conn: &mut Connection,
    migrations: &[Migration],
    now_ms: u64,
) -> Result<u32, MigrationError> {
    let failed = |version: u32| {
        move |e: rusqlite::Error| MigrationError::Failed {
            version,
            error: sqlite_error(e),
        }
    };
    let known = migrations.last().map_or(0, |m| m.version);
    let recorded = applied(conn).map_err(failed(0))?;
    if let Some(found) = recorded.iter().map(|r| r.0).max().filter(|&v| v > known) {
        return Err(MigrationError::NewerThanCode { found, known });
    }
    for (version, name, checksum) in &recorded {
        let Some(m) = migrations.iter().find(|m| m.version == *version) else {
            continue;
        };
        let current = m.checksum();
        if *checksum != current {
            return Err(MigrationError::Edited {
                version: *version,
                name: name.clone(),
                recorded: checksum.clone(),
                current,
            });
        }
    }
    let from = recorded.iter().map(|r| r.0).max().unwrap_or(0);
    let mut version = from;
    for m in migrations.iter().filter(|m| m.version > from) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed(m.version))?;
        tx.execute_batch(LEDGER).map_err(failed(m.version))?;
        tx.execute_batch(m.sql).map_err(failed(m.version))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), now_ms as i64],
        )
        .map_err(failed(m.version))?;
        tx.commit().map_err(failed(m.version))?;
        version = m.version;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_numbered_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} is named after its number",
                m.name
            );
            assert!(m.name.ends_with(".sql"));
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlcipher");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(on_disk, listed, "every file in {dir} is compiled in");
    }

    #[test]
    fn a_failing_migration_leaves_the_schema_where_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [
            MIGRATIONS[0],
            Migration {
                version: 2,
                name: "0002_broken.sql",
                sql: "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);",
            },
        ];
        let err = migrate(&mut conn, &broken, 1).unwrap_err();
        assert!(
            matches!(err, MigrationError::Failed { version: 2, .. }),
            "{err}"
        );
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!tables.contains(&"half".to_string()), "{tables:?}");
        assert_eq!(applied(&conn).unwrap().len(), 1);
        assert_eq!(migrate(&mut conn, MIGRATIONS, 2).unwrap(), latest_version());
    }
}
