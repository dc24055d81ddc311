//! Terminal credentials in the PostgreSQL database (table `credentials`),
//! and pairing codes (table `pairing_codes`).

use super::{backend, PgStore};
use crate::context::TerminalContext;
use crate::storage::sql::{from_sql_int, to_sql_int};
use crate::storage::{
    Credential, CredentialStore, MakeCredential, PairFailure, PairingCode, StorageError,
};

fn insert_credential(
    client: &mut impl postgres::GenericClient,
    c: &Credential,
) -> Result<(), StorageError> {
    client
        .execute(
            "INSERT INTO credentials (key_hash, key_id, tenant, branch, terminal,
                 created_at_ms, expires_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &c.key_hash,
                &c.key_id,
                &c.context.tenant,
                &c.context.branch,
                &c.context.terminal,
                &to_sql_int(c.created_at_ms),
                &c.expires_at_ms.map(to_sql_int),
                &c.revoked_at_ms.map(to_sql_int),
            ],
        )
        .map_err(backend)?;
    Ok(())
}

fn credential_row(r: &postgres::Row) -> Credential {
    Credential {
        key_hash: r.get(0),
        key_id: r.get(1),
        context: TerminalContext::new(
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, String>(4),
        ),
        created_at_ms: from_sql_int(r.get(5)),
        expires_at_ms: r.get::<_, Option<i64>>(6).map(from_sql_int),
        revoked_at_ms: r.get::<_, Option<i64>>(7).map(from_sql_int),
    }
}

impl CredentialStore for PgStore {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.conn(|conn| insert_credential(&mut conn.client, c))
    }

    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        self.conn(|conn| {
            let row = conn
                .client
                .query_opt(
                    "SELECT key_hash, key_id, tenant, branch, terminal, created_at_ms,
                            expires_at_ms, revoked_at_ms
                     FROM credentials WHERE key_hash = $1",
                    &[&key_hash],
                )
                .map_err(backend)?;
            Ok(row.as_ref().map(credential_row))
        })
    }

    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        self.conn(|conn| {
            let n = conn
                .client
                .execute(
                    "UPDATE credentials SET revoked_at_ms = $2
                     WHERE key_id = $1 AND revoked_at_ms IS NULL",
                    &[&key_id, &to_sql_int(at_ms)],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        self.conn(|conn| {
            conn.client
                .execute(
                    "UPDATE credentials SET revoked_at_ms = $4
                     WHERE tenant = $1 AND branch = $2 AND terminal = $3
                       AND revoked_at_ms IS NULL",
                    &[&ctx.tenant, &ctx.branch, &ctx.terminal, &to_sql_int(at_ms)],
                )
                .map_err(backend)
        })
    }

    fn put_pairing_code(&self, p: &PairingCode) -> Result<(), StorageError> {
        self.conn(|conn| {
            conn.client
                .execute(
                    "INSERT INTO pairing_codes (code_hash, code_id, tenant, branch, terminal,
                         created_at_ms, expires_at_ms, redeemed_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &p.code_hash,
                        &p.code_id,
                        &p.context.tenant,
                        &p.context.branch,
                        &p.context.terminal,
                        &to_sql_int(p.created_at_ms),
                        &to_sql_int(p.expires_at_ms),
                        &p.redeemed_at_ms.map(to_sql_int),
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
            let mut tx = conn.client.transaction().map_err(backend)?;
            // The conditional UPDATE takes the row lock: a concurrent
            // redeem waits for this transaction, then (READ COMMITTED)
            // re-checks the condition on the committed row and matches
            // nothing.
            let now = to_sql_int(now_ms);
            let row = tx
                .query_opt(
                    "UPDATE pairing_codes SET redeemed_at_ms = $2
                     WHERE code_hash = $1 AND redeemed_at_ms IS NULL AND expires_at_ms > $2
                     RETURNING tenant, branch, terminal",
                    &[&code_hash, &now],
                )
                .map_err(backend)?;
            let Some(row) = row else {
                // Why not, for the log (a read of what is committed).
                let why = tx
                    .query_opt(
                        "SELECT redeemed_at_ms FROM pairing_codes WHERE code_hash = $1",
                        &[&code_hash],
                    )
                    .map_err(backend)?;
                return Ok(Err(match why {
                    None => PairFailure::Unknown,
                    Some(r) if r.get::<_, Option<i64>>(0).is_some() => PairFailure::Used,
                    Some(_) => PairFailure::Expired,
                }));
            };
            let ctx = TerminalContext::new(
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
            );
            let credential = make(&ctx)?;
            insert_credential(&mut tx, &credential)?;
            tx.commit().map_err(backend)?;
            Ok(Ok(credential))
        })
    }
}
