//! Terminal credentials in the SQLite database (table `credentials`).

use rusqlite::{params, OptionalExtension};

use super::{backend, SqliteStore};
use crate::context::TerminalContext;
use crate::storage::sql::{from_sql_int, to_sql_int};
use crate::storage::{Credential, CredentialStore, StorageError};

fn credential_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Credential> {
    Ok(Credential {
        key_hash: r.get(0)?,
        key_id: r.get(1)?,
        context: TerminalContext::new(
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ),
        created_at_ms: from_sql_int(r.get(5)?),
        expires_at_ms: r.get::<_, Option<i64>>(6)?.map(from_sql_int),
        revoked_at_ms: r.get::<_, Option<i64>>(7)?.map(from_sql_int),
    })
}

impl CredentialStore for SqliteStore {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.conn(|conn| {
            conn.execute(
                "INSERT INTO credentials (key_hash, key_id, tenant, branch, terminal,
                     created_at_ms, expires_at_ms, revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.key_hash,
                    c.key_id,
                    c.context.tenant,
                    c.context.branch,
                    c.context.terminal,
                    to_sql_int(c.created_at_ms),
                    c.expires_at_ms.map(to_sql_int),
                    c.revoked_at_ms.map(to_sql_int)
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        self.conn(|conn| {
            conn.prepare_cached(
                "SELECT key_hash, key_id, tenant, branch, terminal, created_at_ms,
                        expires_at_ms, revoked_at_ms
                 FROM credentials WHERE key_hash = ?1",
            )
            .map_err(backend)?
            .query_row([key_hash], credential_row)
            .optional()
            .map_err(backend)
        })
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        self.conn(|conn| {
            let n = conn
                .execute(
                    "UPDATE credentials SET revoked_at_ms = ?2
                     WHERE key_id = ?1 AND revoked_at_ms IS NULL",
                    params![key_id, to_sql_int(at_ms)],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        self.conn(|conn| {
            let n = conn
                .execute(
                    "UPDATE credentials SET revoked_at_ms = ?4
                     WHERE tenant = ?1 AND branch = ?2 AND terminal = ?3
                       AND revoked_at_ms IS NULL",
                    params![ctx.tenant, ctx.branch, ctx.terminal, to_sql_int(at_ms)],
                )
                .map_err(backend)?;
            Ok(n as u64)
        })
    }
}
