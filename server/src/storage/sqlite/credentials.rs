//! Terminal credentials in the SQLite database (table `credentials`), and
//! pairing codes (table `pairing_codes`).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{backend, SqliteStore};
use crate::context::TerminalContext;
use crate::storage::sql::{from_sql_int, to_sql_int};
use crate::storage::{
    Credential, CredentialStore, MakeCredential, PairFailure, PairingCode, StorageError,
};

const INSERT_CREDENTIAL: &str = "INSERT INTO credentials (key_hash, key_id, tenant, branch,
     terminal, created_at_ms, expires_at_ms, revoked_at_ms)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

fn insert_credential(conn: &rusqlite::Connection, c: &Credential) -> Result<(), StorageError> {
    conn.prepare_cached(INSERT_CREDENTIAL)
        .map_err(backend)?
        .execute(params![
            c.key_hash,
            c.key_id,
            c.context.tenant,
            c.context.branch,
            c.context.terminal,
            to_sql_int(c.created_at_ms),
            c.expires_at_ms.map(to_sql_int),
            c.revoked_at_ms.map(to_sql_int)
        ])
        .map_err(backend)?;
    Ok(())
}

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
        self.conn(|conn| insert_credential(conn, c))
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

    fn put_pairing_code(&self, p: &PairingCode) -> Result<(), StorageError> {
        self.conn(|conn| {
            conn.execute(
                "INSERT INTO pairing_codes (code_hash, code_id, tenant, branch, terminal,
                     created_at_ms, expires_at_ms, redeemed_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.code_hash,
                    p.code_id,
                    p.context.tenant,
                    p.context.branch,
                    p.context.terminal,
                    to_sql_int(p.created_at_ms),
                    to_sql_int(p.expires_at_ms),
                    p.redeemed_at_ms.map(to_sql_int)
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn redeem_pairing_code(
        &self,
        code_hash: &str,
        now_ms: u64,
        make: &mut MakeCredential<'_>,
    ) -> Result<Result<Credential, PairFailure>, StorageError> {
        self.conn(|conn| {
            // BEGIN IMMEDIATE: the write lock up front, so that of two
            // redeems of one code the second reads the first's mark.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let row: Option<(String, String, String, i64, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT tenant, branch, terminal, expires_at_ms, redeemed_at_ms
                     FROM pairing_codes WHERE code_hash = ?1",
                )
                .map_err(backend)?
                .query_row([code_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
                .map_err(backend)?;
            let Some((tenant, branch, terminal, expires, redeemed)) = row else {
                return Ok(Err(PairFailure::Unknown));
            };
            if redeemed.is_some() {
                return Ok(Err(PairFailure::Used));
            }
            if now_ms >= from_sql_int(expires) {
                return Ok(Err(PairFailure::Expired));
            }
            let credential = make(&TerminalContext::new(tenant, branch, terminal))?;
            let marked = tx
                .execute(
                    "UPDATE pairing_codes SET redeemed_at_ms = ?2
                     WHERE code_hash = ?1 AND redeemed_at_ms IS NULL",
                    params![code_hash, to_sql_int(now_ms)],
                )
                .map_err(backend)?;
            if marked != 1 {
                // Cannot happen under the write lock; refuse rather than
                // hand out a second key.
                return Ok(Err(PairFailure::Used));
            }
            insert_credential(&tx, &credential)?;
            tx.commit().map_err(backend)?;
            Ok(Ok(credential))
        })
    }
}
