//! Carrying queued mutations across schema versions at open (see
//! [`crate::migrate`]).

use super::state::Txn;
use super::{Engine, EngineError};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::migrate::{MigrationOutcome, QueuedMigration};
use crate::protocol::*;
use crate::store::*;
use crate::transport::Transport;

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Runs the schema steps from the store's version to the build's, each
    /// in its own batch with the new version.
    pub(super) async fn migrate_queued(
        &self,
        migrations: &[Box<dyn QueuedMigration>],
    ) -> Result<(), EngineError> {
        let mut st = self.state.lock().await;
        while st.meta.schema_version < self.config.schema_version {
            let from = st.meta.schema_version;
            let step = migrations.iter().find(|m| m.upgrades_from() == from);
            let now = self.env.now_ms();
            let mut tx = Txn::default();
            let carry = |m: &Mutation| -> Result<Mutation, (ErrorCode, String)> {
                let outcome = step.map_or(MigrationOutcome::Keep, |s| s.migrate(m));
                let mut m = m.clone();
                match outcome {
                    MigrationOutcome::Keep => {}
                    MigrationOutcome::Rewrite(payload) => m.payload = payload,
                    MigrationOutcome::Hold { code, message } => return Err((code, message)),
                }
                m.schema_version = from + 1;
                m.checksum =
                    payload_checksum(&m.collection, &m.entity_id, m.kind, m.payload.as_ref());
                Ok(m)
            };
            let entries: Vec<OutboxEntry> = st
                .outbox
                .iter()
                // Pending and held entries are sent later: both are carried
                // (a held one keeps its hold). Dead letters keep the version
                // they failed with; a retry sends them as they are.
                .filter(|e| {
                    e.mutation.schema_version == from
                        && matches!(e.state, OutboxState::Pending | OutboxState::Held { .. })
                })
                .cloned()
                .collect();
            for mut e in entries {
                let key = e.mutation.key();
                match carry(&e.mutation) {
                    Ok(m) => {
                        e.mutation = m;
                        st.put_entry(&mut tx, e);
                    }
                    Err((code, message)) => {
                        self.dead_letter(&mut st, &mut tx, e, code, message, now)
                    }
                }
                let rec = tx.record(&self.store, &key).await?;
                tx.put_record(rec);
            }
            let keys: Vec<EntityKey> = st.conflicts.keys().cloned().collect();
            for key in keys {
                let mut c = st.conflicts[&key].clone();
                // A conflict's mutations are only replayed for display and
                // resolved by a person: carry what can be carried, keep the rest.
                for m in c.mutations.iter_mut().filter(|m| m.schema_version == from) {
                    if let Ok(next) = carry(m) {
                        *m = next;
                    }
                }
                tx.batch.push(WriteOp::PutConflict(c.clone()));
                st.conflicts.insert(key.clone(), c);
                let rec = tx.record(&self.store, &key).await?;
                tx.put_record(rec);
            }
            st.meta.schema_version = from + 1;
            self.finish(&mut st, tx).await?;
        }
        Ok(())
    }
}
