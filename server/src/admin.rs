//! The administrative write path: cloud-owned data (e.g. a read-only
//! catalog) loaded into a partition, bypassing terminal rules.
//!
//! Admin writes go through the same change log as terminal mutations (so
//! terminals receive them through changes and snapshots) and are audited
//! with no terminal and no op id. They have no base version: an admin write
//! always wins and bumps the version by one.

use tidesync::{valid_collection_name, EntityKey, EntityState, Fields, Hlc};

use crate::error::ServiceError;
use crate::service::SyncService;
use crate::storage::{AuditRow, Partition, ServerStore, StorageError, StoreTx, StoredEntity};

/// Writes `fields` to `key` (`None`: delete) in `tx`. Returns the new state,
/// or `None` for the delete of an entity that is not live (nothing written).
fn admin_write(
    tx: &mut dyn StoreTx,
    key: &EntityKey,
    fields: Option<&Fields>,
    hlc: Hlc,
    applied_at_ms: u64,
) -> Result<Option<EntityState>, StorageError> {
    let current = tx.entity(key)?;
    let live = current.as_ref().is_some_and(|c| !c.state.deleted);
    if fields.is_none() && !live {
        return Ok(None);
    }
    let state = EntityState {
        collection: key.collection.clone(),
        id: key.id.clone(),
        version: current.map_or(0, |c| c.state.version) + 1,
        fields: fields.cloned().unwrap_or_default(),
        deleted: fields.is_none(),
        updated_at: hlc,
        last_op: None,
    };
    let cursor = tx.append_change(&state)?;
    tx.put_entity(&StoredEntity {
        state: state.clone(),
        cursor,
    })?;
    tx.put_audit(&AuditRow {
        op_id: None,
        terminal: None,
        key: key.clone(),
        version: state.version,
        cursor,
        hlc,
        originated_offline: false,
        anomaly: None,
        applied_at_ms,
    })?;
    Ok(Some(state))
}

impl<S: ServerStore> SyncService<S> {
    fn check_key(&self, key: &EntityKey) -> Result<(), ServiceError> {
        let limits = &self.config().limits;
        if !valid_collection_name(&key.collection, limits.max_collection_len) {
            return Err(ServiceError::invalid(
                "collection",
                "must be a valid collection name",
            ));
        }
        if key.id.is_empty()
            || key.id.len() > limits.max_id_len
            || key.id.chars().any(char::is_control)
        {
            return Err(ServiceError::invalid(
                "entity_id",
                format_args!(
                    "must be 1 to {} bytes (UTF-8) without control characters",
                    limits.max_id_len
                ),
            ));
        }
        Ok(())
    }

    /// Creates or replaces an entity as an administrator (any policy).
    pub fn admin_put(
        &self,
        partition: &Partition,
        key: &EntityKey,
        fields: Fields,
        hlc: Hlc,
    ) -> Result<EntityState, ServiceError> {
        self.check_key(key)?;
        let now = self.now_ms();
        let state = self.storage(self.store().transaction(partition, |tx| {
            admin_write(tx, key, Some(&fields), hlc, now)
        }))?;
        Ok(state.expect("a put always writes"))
    }

    /// Deletes an entity as an administrator (leaves a tombstone). Returns
    /// the tombstone, or `None` if the entity was not live.
    pub fn admin_delete(
        &self,
        partition: &Partition,
        key: &EntityKey,
        hlc: Hlc,
    ) -> Result<Option<EntityState>, ServiceError> {
        self.check_key(key)?;
        let now = self.now_ms();
        self.storage(
            self.store()
                .transaction(partition, |tx| admin_write(tx, key, None, hlc, now)),
        )
    }

    /// Loads many entities at once, all in one transaction (all or none), as
    /// [`SyncService::admin_put`] would.
    pub fn seed(
        &self,
        partition: &Partition,
        hlc: Hlc,
        entities: impl IntoIterator<Item = (EntityKey, Fields)>,
    ) -> Result<Vec<EntityState>, ServiceError> {
        let entities: Vec<(EntityKey, Fields)> = entities.into_iter().collect();
        for (key, _) in &entities {
            self.check_key(key)?;
        }
        let now = self.now_ms();
        self.storage(self.store().transaction(partition, |tx| {
            entities
                .iter()
                .map(|(key, fields)| {
                    admin_write(tx, key, Some(fields), hlc, now)
                        .map(|s| s.expect("a put always writes"))
                })
                .collect()
        }))
    }
}
