//! Versioned schema migrations: numbered SQL files under `migrations/`,
//! compiled in with `include_str!`.
//!
//! Each backend records what it applied in a `schema_migrations` table
//! (version, name, SHA-256 of the SQL). On open it checks that every applied
//! step is one this build knows, with the same checksum (a changed file is
//! refused, not silently skipped), refuses a database newer than the code,
//! and applies the missing steps in order, each in its own transaction.

use sha2::{Digest, Sha256};

use crate::storage::StorageError;

/// One migration step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The step number (1, 2, 3, …).
    pub version: i64,
    /// The file name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

impl Migration {
    /// The SHA-256 of the SQL, hex.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// The SQLite steps.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_ledger_by_branch.sql",
        sql: include_str!("../../../migrations/sqlite/0002_ledger_by_branch.sql"),
    },
    Migration {
        version: 3,
        name: "0003_pairing_codes.sql",
        sql: include_str!("../../../migrations/sqlite/0003_pairing_codes.sql"),
    },
];

/// The PostgreSQL steps.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_ledger_by_branch.sql",
        sql: include_str!("../../../migrations/postgres/0002_ledger_by_branch.sql"),
    },
    Migration {
        version: 3,
        name: "0003_pairing_codes.sql",
        sql: include_str!("../../../migrations/postgres/0003_pairing_codes.sql"),
    },
];

/// Checks what a database has applied (`(version, checksum)` pairs) against
/// `known` and returns the steps still to apply, in order.
pub fn pending<'a>(
    known: &'a [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'a Migration>, StorageError> {
    let newest_known = known.last().map_or(0, |m| m.version);
    for (version, checksum) in applied {
        let Some(m) = known.iter().find(|m| m.version == *version) else {
            return Err(StorageError::Corrupt(format!(
                "the database schema is at version {version}, newer than this server \
                 (which knows up to {newest_known}); upgrade the server"
            )));
        };
        if m.checksum() != *checksum {
            return Err(StorageError::Corrupt(format!(
                "migration {} ({}) applied to this database differs from the one in this \
                 build (checksum mismatch)",
                m.version, m.name
            )));
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order() {
        for set in [SQLITE, POSTGRES] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            }
        }
    }

    #[test]
    fn newer_or_changed_databases_are_refused() {
        let m = SQLITE[0];
        assert_eq!(pending(SQLITE, &[]).unwrap().len(), SQLITE.len());
        assert!(pending(SQLITE, &[(1, m.checksum())]).unwrap().len() < SQLITE.len());
        let newer = pending(SQLITE, &[(1, m.checksum()), (999, "x".into())]).unwrap_err();
        assert!(newer.to_string().contains("newer than this server"));
        let changed = pending(SQLITE, &[(1, "0000".into())]).unwrap_err();
        assert!(changed.to_string().contains("checksum mismatch"));
    }
}
