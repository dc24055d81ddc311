//! How the server decides a terminal's write: the per-collection
//! [`ServerPolicy`], and the decision for one pushed mutation, made and
//! recorded inside one storage transaction.
//!
//! The envelope checks that need no storage (validation, terminal and branch
//! binding) happen before, in [`crate::SyncService::push`]; what is left
//! here reads and writes the store, in this order:
//!
//! 1. the idempotency ledger: an op already applied is answered with its
//!    original result (`Duplicate`), or rejected with `EVENT_DUPLICATE` if
//!    the payload differs;
//! 2. the collection's [`ServerPolicy`];
//! 3. for versioned collections, the base version (`Conflict` if stale);
//! 4. [`apply_mutation`], then entity + change + ledger + audit rows.
//!
//! Only step 4 writes anything. A conflict or a rejection leaves the store
//! as it was (the ledger included), so the client may send the same op id
//! again, rebased.

use serde::{Deserialize, Serialize};
use tidesync::rules::CollectionAccess;
use tidesync::{apply_mutation, AckResult, ErrorCode, Mutation};

use crate::storage::{AuditRow, LedgerEntry, StorageError, StoreTx, StoredEntity};

/// How the server treats terminal writes to a collection.
///
/// The client-side conflict policies (`last-write-wins`, `merge-three-way`,
/// `manual-resolve`, `server-wins`) all look the same on the server: it
/// applies a mutation made against the current version and answers a
/// conflict otherwise; the client resolves. Only two collection kinds need
/// different server rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPolicy {
    /// Optimistic concurrency on `base_version`; every mutation kind allowed.
    #[default]
    Versioned,
    /// Insert-only records deduplicated by id (e.g. sales): only `append` is
    /// accepted, `base_version` is ignored, a second insert of an id is a
    /// duplicate (same fields) or rejected (different fields), never an update.
    AppendOnly,
    /// Owned by the cloud (e.g. a catalog): terminals cannot write at all;
    /// data comes in through the admin API.
    ReadOnly,
}

impl ServerPolicy {
    /// The writes this policy allows terminals.
    pub fn access(self) -> CollectionAccess {
        match self {
            ServerPolicy::Versioned => CollectionAccess::ReadWrite,
            ServerPolicy::AppendOnly => CollectionAccess::AppendOnly,
            ServerPolicy::ReadOnly => CollectionAccess::ReadOnly,
        }
    }

    /// The policy of a collection with `access` in the rules file.
    pub fn of_access(access: CollectionAccess) -> Self {
        match access {
            CollectionAccess::ReadWrite => ServerPolicy::Versioned,
            CollectionAccess::AppendOnly => ServerPolicy::AppendOnly,
            CollectionAccess::ReadOnly => ServerPolicy::ReadOnly,
        }
    }
}

fn rejected(code: ErrorCode, message: String) -> AckResult {
    AckResult::Rejected { code, message }
}

/// Decides and, if it applies, records one mutation of `terminal` in `tx`.
pub(crate) fn decide_mutation(
    tx: &mut dyn StoreTx,
    terminal: &str,
    m: &Mutation,
    policy: ServerPolicy,
    applied_at_ms: u64,
    expired_before: Option<u64>,
) -> Result<AckResult, StorageError> {
    if let Some(entry) = tx.ledger(terminal, &m.op_id)? {
        return Ok(if entry.fingerprint == m.checksum {
            AckResult::Duplicate {
                version: entry.version,
                cursor: entry.cursor,
            }
        } else {
            rejected(
                ErrorCode::EventDuplicate,
                format!(
                    "op_id: {} was already applied with a different payload",
                    m.op_id
                ),
            )
        });
    }

    // Made before the replay window and not in the ledger: it may have been
    // applied and its row pruned, so it is never applied now.
    if let (Some(before), Some(made)) = (expired_before, m.op_id.timestamp_ms()) {
        if made < before {
            return Ok(rejected(
                ErrorCode::OpExpired,
                format!(
                    "op_id: made {} s before the server's replay window; send the change again under a new op id",
                    (before - made).div_ceil(1000)
                ),
            ));
        }
    }

    let key = m.key();
    // The entity the mutation applies to; its version is the expected base.
    let current = match policy {
        ServerPolicy::ReadOnly | ServerPolicy::AppendOnly => {
            if let Err(e) = policy.access().check(&m.collection, m.kind) {
                return Ok(rejected(e.code, e.message));
            }
            // base_version is ignored: a record is inserted once, by id.
            if let Some(existing) = tx.entity(&key)? {
                let same =
                    !existing.state.deleted && m.payload.as_ref() == Some(&existing.state.fields);
                return Ok(if same {
                    AckResult::Duplicate {
                        version: existing.state.version,
                        cursor: existing.cursor,
                    }
                } else {
                    rejected(
                        ErrorCode::EventDuplicate,
                        format!(
                            "entity_id: {key} already exists in append-only collection {} \
                             with different fields",
                            m.collection
                        ),
                    )
                });
            }
            None
        }
        ServerPolicy::Versioned => {
            let current = tx.entity(&key)?;
            // A tombstone keeps its version: a revive must be based on it.
            let expected = current.as_ref().map_or(0, |c| c.state.version);
            if m.base_version != expected {
                return Ok(AckResult::Conflict {
                    server: current.map(|c| c.state),
                });
            }
            current
        }
    };
    let expected = current.as_ref().map_or(0, |c| c.state.version);

    let state = match apply_mutation(current.as_ref().map(|c| &c.state), m, expected + 1) {
        Ok(state) => state,
        Err(e) => return Ok(rejected(e.code, e.message)),
    };
    let version = state.version;
    let cursor = tx.append_change(&state)?;
    tx.put_entity(&StoredEntity { state, cursor })?;
    tx.put_ledger(
        terminal,
        &m.op_id,
        &LedgerEntry {
            fingerprint: m.checksum.clone(),
            key: key.clone(),
            version,
            cursor,
            applied_at_ms,
        },
    )?;
    tx.put_audit(&AuditRow {
        op_id: Some(m.op_id.clone()),
        terminal: Some(terminal.to_owned()),
        key,
        version,
        cursor,
        hlc: m.hlc,
        originated_offline: m.offline,
        applied_at_ms,
        anomaly: m.anomaly.clone(),
    })?;
    Ok(AckResult::Applied { version, cursor })
}
