//! The local view (the server state with the pending mutations replayed)
//! and the engine's reads.

use super::{Engine, EngineError};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::protocol::*;
use crate::store::*;
use crate::transport::Transport;

/// One page of a query.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryPage {
    /// Live entities, ordered by id.
    pub entities: Vec<LocalEntity>,
    /// Where the next page starts (`after`), `None` at the end.
    pub next: Option<String>,
}

/// Replays `mutations` on `server` to give the local view. `pending` is the
/// number of them waiting to be sent: the same count as
/// [`Status::pending`](crate::status::Status::pending), so dead letters and
/// the mutations of an open conflict are not pending (they wait for a
/// person, and show as `conflicted` or in the dead-letter queue).
pub fn compute_view<'a>(
    key: &EntityKey,
    server: Option<&EntityState>,
    mutations: impl IntoIterator<Item = &'a Mutation>,
    pending: u32,
    conflicted: bool,
) -> Option<LocalEntity> {
    let mut cur = server.cloned();
    let base_version = server.map(|s| s.version).unwrap_or(0);
    for m in mutations {
        // A mutation that no longer applies (e.g. a patch of an entity deleted
        // on the server) is left out of the view; the push will surface it.
        if let Ok(next) = apply_mutation(cur.as_ref(), m, base_version) {
            cur = Some(next);
        }
    }
    let cur = cur?;
    Some(LocalEntity {
        collection: key.collection.clone(),
        id: key.id.clone(),
        fields: cur.fields,
        deleted: cur.deleted,
        server_version: base_version,
        updated_at: cur.updated_at,
        pending,
        conflicted,
    })
}

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// One entity's local view (`None` if absent or deleted).
    pub async fn get(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<LocalEntity>, EngineError> {
        Ok(self
            .store
            .get(&EntityKey::new(collection, id))
            .await?
            .and_then(|r| r.view)
            .filter(|v| !v.deleted))
    }

    /// Every live entity of a collection, ordered by id.
    pub async fn query(&self, collection: &str) -> Result<Vec<LocalEntity>, EngineError> {
        Ok(self
            .store
            .scan(collection)
            .await?
            .into_iter()
            .filter_map(|r| r.view)
            .filter(|v| !v.deleted)
            .collect())
    }

    /// One page of a collection's live entities, ordered by id: those with an
    /// id after `after`, at most `limit` records read (deleted ones are
    /// skipped, so a page may hold fewer). The next page starts after the
    /// returned `next`, `None` at the end.
    pub async fn query_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<QueryPage, EngineError> {
        let limit = limit.max(1);
        let records = self.store.scan_page(collection, after, limit).await?;
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| r.key.id.clone()))
            .flatten();
        let entities = records
            .into_iter()
            .filter_map(|r| r.view)
            .filter(|v| !v.deleted)
            .collect();
        Ok(QueryPage { entities, next })
    }

    /// The outbox: pending mutations and dead letters, in order.
    pub async fn outbox(&self) -> Vec<OutboxEntry> {
        self.lock_read().await.outbox.iter().cloned().collect()
    }

    /// Dead letters only.
    pub async fn dead_letters(&self) -> Vec<OutboxEntry> {
        self.lock_read()
            .await
            .outbox
            .iter()
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .collect()
    }

    /// Open conflicts.
    pub async fn conflicts(&self) -> Vec<ConflictRecord> {
        self.lock_read().await.conflicts.values().cloned().collect()
    }

    /// Local audit entries after `after`.
    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.store.audit(after, limit).await?)
    }

    pub(super) async fn get_view(&self, key: &EntityKey) -> Result<LocalEntity, EngineError> {
        self.store
            .get(key)
            .await?
            .and_then(|r| r.view)
            .ok_or_else(|| EngineError::rejected(ErrorCode::Internal, "view missing after write"))
    }
}
