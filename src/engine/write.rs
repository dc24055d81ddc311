//! Local writes, and what a person does with a dead letter or a conflict
//! (retry, discard, resolve). Each is one store transaction: the new view,
//! its outbox entry and its audit entry commit together.

use super::state::{State, Txn};
use super::view::compute_view;
use super::{Engine, EngineError};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::policy::ConflictPolicy;
use crate::protocol::*;
use crate::scoring::{ReviewPolicy, ScoreInput, WriteOptions};
use crate::store::*;
use crate::transport::Transport;
use serde::{Deserialize, Serialize};

/// How a person resolves a conflict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "choice", content = "fields", rename_all = "snake_case")]
pub enum Resolution {
    /// Keep the local intent: it is sent as a new mutation on the server's version.
    Local,
    /// Keep the server's state; the local mutations are dropped (audited).
    Server,
    /// Use these fields: sent as a new mutation on the server's version.
    Edited(Fields),
}

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Creates an entity; `id` defaults to a new ULID.
    pub async fn create(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
    ) -> Result<LocalEntity, EngineError> {
        self.create_with(collection, id, fields, &WriteOptions::default())
            .await
    }

    /// [`create`](Self::create) with write options (hold for review).
    pub async fn create_with(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
        options: &WriteOptions,
    ) -> Result<LocalEntity, EngineError> {
        let id = self.id_or_new(id);
        self.local_write(collection, &id, MutationKind::Create, Some(fields), options)
            .await
    }

    pub(super) fn id_or_new(&self, id: Option<&str>) -> String {
        match id {
            Some(id) => id.to_string(),
            None => self.new_ulid(self.env.now_ms()).0,
        }
    }

    /// Applies a JSON merge patch to an entity.
    pub async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: Fields,
    ) -> Result<LocalEntity, EngineError> {
        self.patch_with(collection, id, patch, &WriteOptions::default())
            .await
    }

    /// [`patch`](Self::patch) with write options.
    pub async fn patch_with(
        &self,
        collection: &str,
        id: &str,
        patch: Fields,
        options: &WriteOptions,
    ) -> Result<LocalEntity, EngineError> {
        self.local_write(collection, id, MutationKind::Patch, Some(patch), options)
            .await
    }

    /// Deletes an entity.
    pub async fn delete(&self, collection: &str, id: &str) -> Result<LocalEntity, EngineError> {
        self.delete_with(collection, id, &WriteOptions::default())
            .await
    }

    /// [`delete`](Self::delete) with write options.
    pub async fn delete_with(
        &self,
        collection: &str,
        id: &str,
        options: &WriteOptions,
    ) -> Result<LocalEntity, EngineError> {
        self.local_write(collection, id, MutationKind::Delete, None, options)
            .await
    }

    /// Appends a record to an append-only collection; `id` defaults to a new ULID.
    pub async fn append(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
    ) -> Result<LocalEntity, EngineError> {
        self.append_with(collection, id, fields, &WriteOptions::default())
            .await
    }

    /// [`append`](Self::append) with write options.
    pub async fn append_with(
        &self,
        collection: &str,
        id: Option<&str>,
        fields: Fields,
        options: &WriteOptions,
    ) -> Result<LocalEntity, EngineError> {
        let id = self.id_or_new(id);
        self.local_write(collection, &id, MutationKind::Append, Some(fields), options)
            .await
    }

    /// A new mutation of this terminal, stamped and validated.
    pub(super) fn new_mutation(
        &self,
        st: &mut State,
        key: &EntityKey,
        kind: MutationKind,
        payload: Option<Fields>,
        base_version: u64,
        now: u64,
    ) -> Result<Mutation, EngineError> {
        let m = Mutation {
            op_id: self.new_ulid(now),
            client_id: st.meta.client_id.clone(),
            terminal_id: self.config.terminal_id.clone(),
            branch_id: self.config.branch_id.clone(),
            collection: key.collection.clone(),
            entity_id: key.id.clone(),
            kind,
            checksum: payload_checksum(&key.collection, &key.id, kind, payload.as_ref()),
            payload,
            base_version,
            hlc: st.clock.tick(now),
            schema_version: self.config.schema_version,
            offline: !st.online,
            anomaly: None,
        };
        self.validate_new(&m)?;
        Ok(m)
    }

    /// What every new mutation (a write, an edited dead letter, a
    /// resolution) must pass before it is queued: the envelope limits, and
    /// the server's rules when the engine was given them.
    fn validate_new(&self, m: &Mutation) -> Result<(), EngineError> {
        validate_mutation(m, &self.config.limits)?;
        crate::rules::check_write(
            &self.config.rules,
            &m.collection,
            m.kind,
            m.payload.as_ref(),
        )?;
        Ok(())
    }

    /// Queues `m` at the end of the outbox, with its audit entry.
    pub(super) fn enqueue(&self, st: &mut State, tx: &mut Txn, m: Mutation, now: u64) {
        self.enqueue_as(st, tx, m, OutboxState::Pending, now)
    }

    /// Queues `m` at the end of the outbox in `state` (pending, or held for
    /// review), with its audit entries.
    fn enqueue_as(&self, st: &mut State, tx: &mut Txn, m: Mutation, state: OutboxState, now: u64) {
        let seq = st.meta.next_seq;
        st.meta.next_seq += 1;
        tx.audit(Some(&m.op_id), &m.key(), AuditEvent::Queued);
        if let Some(anomaly) = &m.anomaly {
            tx.audit(
                Some(&m.op_id),
                &m.key(),
                AuditEvent::Scored {
                    anomaly: anomaly.clone(),
                },
            );
        }
        if let OutboxState::Held { reason, .. } = &state {
            tx.audit(
                Some(&m.op_id),
                &m.key(),
                AuditEvent::Held { reason: *reason },
            );
        }
        st.put_entry(
            tx,
            OutboxEntry {
                seq,
                mutation: m,
                state,
                attempts: 0,
                next_attempt_at: now,
                sent: false,
                last_error: None,
                enqueued_at: now,
            },
        );
    }

    pub(super) async fn local_write(
        &self,
        collection: &str,
        id: &str,
        kind: MutationKind,
        payload: Option<Fields>,
        options: &WriteOptions,
    ) -> Result<LocalEntity, EngineError> {
        // What the server would refuse (its rules file) is refused at once,
        // with the server's own code and message.
        crate::rules::check_write(&self.config.rules, collection, kind, payload.as_ref())?;
        let policy = self.policy(collection);
        match (policy, kind) {
            (ConflictPolicy::AppendOnly, MutationKind::Append) => {}
            (ConflictPolicy::AppendOnly, _) => {
                // As the server says it.
                crate::rules::CollectionAccess::AppendOnly.check(collection, kind)?;
            }
            (_, MutationKind::Append) => {
                return Err(EngineError::rejected(
                    ErrorCode::PolicyViolation,
                    format!("kind: collection {collection} is not append-only: use create"),
                ))
            }
            _ => {}
        }
        let key = EntityKey::new(collection, id);
        let mut st = self.lock_fresh().await?;
        if st.conflicts.contains_key(&key) {
            return Err(EngineError::rejected(
                ErrorCode::InvalidState,
                format!("{key} has an open conflict: resolve it first"),
            ));
        }
        let now = self.env.now_ms();
        let mut m = self.new_mutation(&mut st, &key, kind, payload, 0, now)?;

        let mut tx = Txn::default();
        let mut rec = tx.record(&self.store, &key).await?;
        let chain: Vec<Mutation> = st
            .outbox
            .chain(&key)
            .iter()
            .map(|e| e.mutation.clone())
            .collect();
        // The view the user is changing must accept the change.
        let view = compute_view(&key, rec.server.as_ref(), &chain, 0, false);
        let view_state = view.as_ref().map(|v| EntityState {
            collection: v.collection.clone(),
            id: v.id.clone(),
            version: v.server_version,
            fields: v.fields.clone(),
            deleted: v.deleted,
            updated_at: v.updated_at,
            last_op: None,
        });
        let after = apply_mutation(view_state.as_ref(), &m, 0)?;
        let (anomaly, score_failed) = self.score_write(&m, view.as_ref(), &after, now);
        m.anomaly = anomaly;
        let held = match options.hold {
            Some(true) => Some(HoldReason::Requested),
            Some(false) => None,
            None => m
                .anomaly
                .as_ref()
                .filter(|a| {
                    a.flagged
                        && self
                            .config
                            .review
                            .get(collection)
                            .copied()
                            .unwrap_or_default()
                            == ReviewPolicy::HoldFlagged
                })
                .map(|_| HoldReason::Flagged),
        };

        m.base_version = match chain.last() {
            Some(prev) => prev.base_version,
            None => rec.server.as_ref().map(|s| s.version).unwrap_or(0),
        };
        if rec.chain_base.is_none() {
            rec.chain_base = Some(match &rec.server {
                Some(s) => ChainBase::State(s.clone()),
                None => ChainBase::Absent,
            });
        }
        if let Some(code) = score_failed {
            tx.audit(Some(&m.op_id), &key, AuditEvent::ScoreFailed { code });
        }
        let state = match held {
            Some(reason) => OutboxState::Held { reason, at_ms: now },
            None => OutboxState::Pending,
        };
        self.enqueue_as(&mut st, &mut tx, m, state, now);
        tx.put_record(rec);
        self.finish(&mut st, tx).await?;
        st.metrics.queued += 1;
        drop(st);
        self.get_view(&key).await
    }

    /// Attaches (or, with `None`, detaches) the anomaly model called on
    /// local writes; writes already queued keep what they were given.
    pub fn set_scorer(&self, scorer: Option<std::sync::Arc<dyn crate::scoring::Scorer>>) {
        *self.scorer.write().unwrap_or_else(|e| e.into_inner()) = scorer;
    }

    /// The score of a new local write (none when no model is attached or
    /// it does not score this collection), or the code of the scorer's
    /// failure. Never fails the write.
    fn score_write(
        &self,
        m: &Mutation,
        before: Option<&LocalEntity>,
        after: &EntityState,
        now: u64,
    ) -> (Option<AnomalyScore>, Option<String>) {
        let scorer = self
            .scorer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(scorer) = scorer else {
            return (None, None);
        };
        let input = ScoreInput {
            collection: &m.collection,
            entity_id: &m.entity_id,
            kind: m.kind,
            before: before.filter(|v| !v.deleted).map(|v| &v.fields),
            after: (!after.deleted).then_some(&after.fields),
            at_ms: now,
        };
        match scorer.score(&input) {
            Ok(None) => (None, None),
            Ok(Some(score))
                if score.score.is_finite()
                    && score.score >= 0.0
                    && crate::protocol::valid_model_id(scorer.model()) =>
            {
                (
                    Some(AnomalyScore {
                        score: score.score,
                        flagged: score.flagged,
                        model: scorer.model().to_string(),
                    }),
                    None,
                )
            }
            Ok(Some(_)) => (None, Some("SCORE_INVALID".to_string())),
            Err(e) => (None, Some(e.code)),
        }
    }

    /// Mutations held for review, in queue order.
    pub async fn held(&self) -> Vec<OutboxEntry> {
        self.lock_read()
            .await
            .outbox
            .iter()
            .filter(|e| matches!(e.state, OutboxState::Held { .. }))
            .cloned()
            .collect()
    }

    /// Releases a held mutation: it is sent like any other, in its place of
    /// its entity's chain (audited).
    pub async fn release(&self, seq: u64) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let mut e = st
            .outbox
            .get(seq)
            .filter(|e| matches!(e.state, OutboxState::Held { .. }))
            .cloned()
            .ok_or_else(|| {
                EngineError::rejected(ErrorCode::NotFound, format!("no held mutation {seq}"))
            })?;
        let mut tx = Txn::default();
        let key = e.mutation.key();
        let rec = tx.record(&self.store, &key).await?;
        e.state = OutboxState::Pending;
        e.next_attempt_at = self.env.now_ms();
        tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::Released);
        st.put_entry(&mut tx, e);
        tx.put_record(rec);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Puts a dead letter back in the queue, due now, with its attempts reset.
    pub async fn retry(&self, seq: u64) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let mut e = st
            .outbox
            .get(seq)
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .ok_or_else(|| {
                EngineError::rejected(ErrorCode::NotFound, format!("no dead letter {seq}"))
            })?;
        let mut tx = Txn::default();
        crate::outbox::reset_for_retry(&mut e, self.env.now_ms());
        tx.audit(
            Some(&e.mutation.op_id),
            &e.mutation.key(),
            AuditEvent::Retried,
        );
        st.put_entry(&mut tx, e);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Edits a dead letter and sends it again: its payload becomes `payload`
    /// (for a delete, none), under a NEW op id, due now with its attempts
    /// reset, in the same place of its entity's chain. The old op id is
    /// audited as replaced by the new one, so nothing is lost silently.
    pub async fn retry_edited(&self, seq: u64, payload: Option<Fields>) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let mut e = self.dead_letter_entry(&st, seq)?;
        let now = self.env.now_ms();
        let old = e.mutation.op_id.clone();
        let mut m = e.mutation.clone();
        if (m.kind == MutationKind::Delete) != payload.is_none() {
            return Err(EngineError::rejected(
                ErrorCode::BadArgument,
                "a delete carries no payload; every other mutation needs one",
            ));
        }
        m.op_id = self.new_ulid(now);
        m.checksum = payload_checksum(&m.collection, &m.entity_id, m.kind, payload.as_ref());
        m.payload = payload;
        m.hlc = st.clock.tick(now);
        m.schema_version = self.config.schema_version;
        self.validate_new(&m)?;
        let key = m.key();
        let mut tx = Txn::default();
        let rec = tx.record(&self.store, &key).await?;
        tx.audit(
            Some(&old),
            &key,
            AuditEvent::ReplacedBy {
                op_id: m.op_id.clone(),
            },
        );
        tx.audit(Some(&m.op_id), &key, AuditEvent::Queued);
        e.mutation = m;
        e.sent = false;
        e.last_error = None;
        crate::outbox::reset_for_retry(&mut e, now);
        st.put_entry(&mut tx, e);
        tx.put_record(rec);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Retries every dead letter (in one transaction); how many.
    pub async fn retry_all(&self) -> Result<usize, EngineError> {
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let dead: Vec<OutboxEntry> = st
            .outbox
            .iter()
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .collect();
        let mut tx = Txn::default();
        // Each entity's view is replayed at the commit (its pending count
        // grows): read their records in one call.
        let keys: Vec<EntityKey> = dead.iter().map(|e| e.mutation.key()).collect();
        tx.prefetch(&self.store, &keys, false).await?;
        for mut e in dead.iter().cloned() {
            crate::outbox::reset_for_retry(&mut e, now);
            tx.audit(
                Some(&e.mutation.op_id),
                &e.mutation.key(),
                AuditEvent::Retried,
            );
            st.put_entry(&mut tx, e);
        }
        self.finish(&mut st, tx).await.map(|_| dead.len())
    }

    /// Discards every dead letter (in one transaction, each audited); how many.
    pub async fn discard_all(&self) -> Result<usize, EngineError> {
        let mut st = self.lock_fresh().await?;
        let dead: Vec<OutboxEntry> = st
            .outbox
            .iter()
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .collect();
        let mut tx = Txn::default();
        let keys: Vec<EntityKey> = dead.iter().map(|e| e.mutation.key()).collect();
        tx.prefetch(&self.store, &keys, false).await?;
        for e in &dead {
            let key = e.mutation.key();
            let rec = tx.record(&self.store, &key).await?;
            st.remove_entry(&mut tx, e.seq);
            tx.put_record(rec);
            tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::Discarded);
        }
        self.finish(&mut st, tx).await.map(|_| dead.len())
    }

    fn dead_letter_entry(&self, st: &State, seq: u64) -> Result<OutboxEntry, EngineError> {
        st.outbox
            .get(seq)
            .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
            .cloned()
            .ok_or_else(|| {
                EngineError::rejected(ErrorCode::NotFound, format!("no dead letter {seq}"))
            })
    }

    /// Drops a dead letter or a held mutation; the entity's view is
    /// replayed without it.
    pub async fn discard(&self, seq: u64) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let e = st
            .outbox
            .get(seq)
            .filter(|e| e.state != OutboxState::Pending)
            .cloned()
            .ok_or_else(|| {
                EngineError::rejected(
                    ErrorCode::NotFound,
                    format!("no dead letter or held mutation {seq}"),
                )
            })?;
        let mut tx = Txn::default();
        let key = e.mutation.key();
        let rec = tx.record(&self.store, &key).await?;
        st.remove_entry(&mut tx, seq);
        tx.put_record(rec);
        tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::Discarded);
        self.finish(&mut st, tx).await.map(|_| ())
    }

    /// Resolves an open conflict. `Local` and `Edited` queue one new mutation
    /// that turns the server's current state into the chosen one.
    pub async fn resolve(
        &self,
        key: &EntityKey,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        let mut st = self.lock_fresh().await?;
        let conflict = st.conflicts.get(key).cloned().ok_or_else(|| {
            EngineError::rejected(ErrorCode::NotFound, format!("no conflict on {key}"))
        })?;
        let mut tx = Txn::default();
        let mut rec = tx.record(&self.store, key).await?;
        let (choice, target): (&str, Option<Option<Fields>>) = match resolution {
            Resolution::Local => (
                "local",
                Some(
                    conflict
                        .local
                        .clone()
                        .filter(|l| !l.deleted)
                        .map(|l| l.fields),
                ),
            ),
            Resolution::Server => ("server", None),
            Resolution::Edited(f) => ("edited", Some(Some(f))),
        };
        let server = rec.server.clone().filter(|s| !s.deleted);
        let now = self.env.now_ms();
        let new = match target {
            None => None,
            Some(target) => match (&server, target) {
                (Some(s), Some(t)) if s.fields == t => None,
                (Some(s), Some(t)) => Some((MutationKind::Patch, Some(diff_patch(&s.fields, &t)))),
                (Some(_), None) => Some((MutationKind::Delete, None)),
                (None, Some(t)) => Some((MutationKind::Create, Some(t))),
                (None, None) => None,
            },
        };
        st.conflicts.remove(key);
        tx.batch.push(WriteOp::DeleteConflict(key.clone()));
        rec.chain_base = None;
        if let Some((kind, payload)) = new {
            let base_version = rec.server.as_ref().map(|s| s.version).unwrap_or(0);
            let m = match self.new_mutation(&mut st, key, kind, payload, base_version, now) {
                Ok(m) => m,
                Err(e) => {
                    st.conflicts.insert(key.clone(), conflict);
                    return Err(e);
                }
            };
            rec.chain_base = Some(match &rec.server {
                Some(s) => ChainBase::State(s.clone()),
                None => ChainBase::Absent,
            });
            self.enqueue(&mut st, &mut tx, m, now);
        }
        for m in &conflict.mutations {
            tx.audit(
                Some(&m.op_id),
                key,
                AuditEvent::ConflictResolved {
                    choice: choice.to_string(),
                },
            );
        }
        tx.put_record(rec);
        self.finish(&mut st, tx).await.map(|_| ())
    }
}
