//! Push: the due head of each entity's chain, batched; then what each ack
//! means for its entry (applied, duplicate, conflict, rejected) and what a
//! failed request means for the batch.

use super::state::{State, Txn};
use super::view::compute_view;
use super::{Engine, EngineError, SyncReport};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::outbox::{self, Delivery, Failure};
use crate::policy::{decide, Decision};
use crate::protocol::*;
use crate::status::Event;
use crate::store::*;
use crate::transport::{Transport, TransportError};
use std::collections::{BTreeMap, BTreeSet};

/// One request of a push round and what came back.
pub(super) struct Sent {
    batch: Vec<OutboxEntry>,
    result: Result<PushResponse, TransportError>,
    bytes: u64,
    started: u64,
}

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Push rounds until nothing is due. Each round is sent while the
    /// answers of the one before it are committed: it holds heads of other
    /// entities only (an entity's head stays in its chain, in flight, until
    /// its ack is applied), so the order within an entity is kept, and the
    /// client's commit and the server's work overlap. A bandwidth cap must
    /// see each round's bytes before the next is planned: then rounds go
    /// one after another.
    pub(super) async fn push_rounds(&self) -> Result<SyncReport, EngineError> {
        let mut report = SyncReport::default();
        let mut landed: Vec<Sent> = Vec::new();
        for _ in 0..self.config.max_push_rounds {
            let batches = if landed.is_empty() || !self.lock_read().await.throttle.capped() {
                let in_flight: BTreeSet<u64> = landed
                    .iter()
                    .flat_map(|s| s.batch.iter().map(|e| e.seq))
                    .collect();
                self.plan_round(&in_flight).await?
            } else {
                Vec::new()
            };
            if batches.is_empty() && landed.is_empty() {
                break;
            }
            let last = std::mem::take(&mut landed);
            let (applied, sent) =
                futures::future::join(self.apply_round(last), self.send_round(batches)).await;
            report.absorb(applied?);
            landed = sent;
        }
        report.absorb(self.apply_round(landed).await?);
        Ok(report)
    }

    /// One push round: sends the due heads in up to `concurrency` batches.
    pub async fn push(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        let batches = self.plan_round(&BTreeSet::new()).await?;
        let sent = self.send_round(batches).await;
        self.apply_round(sent).await
    }

    /// The batches of the next round: due heads, except the entries of
    /// `in_flight`.
    async fn plan_round(
        &self,
        in_flight: &BTreeSet<u64>,
    ) -> Result<Vec<Vec<OutboxEntry>>, EngineError> {
        let st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        if now < st.paused_until
            || now < st.throttle.next_allowed_at()
            || (!st.online && now < st.offline_until)
        {
            return Ok(Vec::new());
        }
        let plan = st.throttle.plan();
        let batch_size = st
            .batch_cap
            .map_or(plan.batch_size, |c| c.min(plan.batch_size))
            .max(1);
        let limit = batch_size * plan.concurrency;
        let due: Vec<OutboxEntry> = st
            .outbox
            .due_heads(now, &st.conflicts, limit + in_flight.len())
            .into_iter()
            .filter(|e| !in_flight.contains(&e.seq))
            .take(limit)
            .cloned()
            .collect();
        Ok(due.chunks(batch_size).map(|c| c.to_vec()).collect())
    }

    /// Sends `batches`, concurrently.
    async fn send_round(&self, batches: Vec<Vec<OutboxEntry>>) -> Vec<Sent> {
        let sends = batches.into_iter().map(|batch| async move {
            let attempt = batch.iter().map(|e| e.attempts).max().unwrap_or(0) + 1;
            let request = PushRequest {
                protocol: PROTOCOL_VERSION,
                attempt,
                mutations: batch.iter().map(|e| e.mutation.clone()).collect(),
            };
            let bytes = serde_json::to_vec(&request)
                .map(|v| v.len() as u64)
                .unwrap_or(0);
            let started = self.env.now_ms();
            let result = self.transport.push(request).await;
            Sent {
                batch,
                result,
                bytes,
                started,
            }
        });
        futures::future::join_all(sends).await
    }

    /// Applies the answers of one round, in one transaction.
    async fn apply_round(&self, sent: Vec<Sent>) -> Result<SyncReport, EngineError> {
        if sent.is_empty() {
            return Ok(SyncReport::default());
        }
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let mut tx = Txn::default();
        let keys: Vec<EntityKey> = sent
            .iter()
            .filter(|s| s.result.is_ok())
            .flat_map(|s| s.batch.iter().map(|e| e.mutation.key()))
            .collect();
        tx.prefetch(&self.store, &keys, false).await?;
        for s in sent {
            self.apply_push_result(&mut st, &mut tx, s, now).await?;
        }
        self.finish(&mut st, tx).await
    }

    async fn apply_push_result(
        &self,
        st: &mut State,
        tx: &mut Txn,
        sent: Sent,
        now: u64,
    ) -> Result<(), EngineError> {
        let Sent {
            batch,
            result,
            bytes,
            started,
        } = sent;
        tx.report.sent += batch.len();
        st.metrics.push_requests += 1;
        match result {
            Err(err) => self.on_push_failure(st, tx, &batch, err, now),
            Ok(resp) => {
                st.online = true;
                st.last_error = None;
                st.batch_cap = None;
                st.meta.last_sync_at_ms = Some(now);
                st.metrics.last_push_latency_ms = now.saturating_sub(started);
                st.throttle
                    .record(batch.len(), bytes, now.saturating_sub(started), now);
                let mut acks: BTreeMap<OpId, AckResult> =
                    resp.acks.into_iter().map(|a| (a.op_id, a.result)).collect();
                for entry in batch {
                    // The entry may have changed since it was sent (never
                    // removed: only dead letters are discarded).
                    let Some(current) = st.outbox.get(entry.seq).cloned() else {
                        continue;
                    };
                    match acks.remove(&entry.mutation.op_id) {
                        Some(result) => self.on_ack(st, tx, current, result, now).await?,
                        None => self.schedule_retry(
                            st,
                            tx,
                            current,
                            Failure {
                                code: ErrorCode::SyncServerError,
                                message: "the server's answer had no ack for this mutation".into(),
                                retry_after_ms: 0,
                                counts: true,
                            },
                            now,
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    /// A failed delivery of `e`: retried later, or dead-lettered once its
    /// attempts are used up.
    pub(super) fn schedule_retry(
        &self,
        st: &mut State,
        tx: &mut Txn,
        mut e: OutboxEntry,
        failure: Failure,
        now: u64,
    ) {
        if failure.counts {
            st.metrics.retries += 1;
        }
        let random = || self.env.random_u64();
        match outbox::record_failure(&mut e, &self.config.retry, &failure, random, now) {
            Delivery::Exhausted { code, message } => {
                self.dead_letter(st, tx, e, code, message, now)
            }
            Delivery::RetryAt(at) => {
                tracing::info!(
                    terminal_id = %self.config.terminal_id,
                    branch_id = %self.config.branch_id,
                    event_id = %e.mutation.op_id,
                    sync_attempt = e.attempts,
                    error_code = %failure.code,
                    retry_at_ms = at,
                    "delivery failed, retry scheduled"
                );
                st.put_entry(tx, e);
            }
        }
    }

    /// Moves `e` to the dead-letter queue, with its audit entry and an alert.
    pub(super) fn dead_letter(
        &self,
        st: &mut State,
        tx: &mut Txn,
        mut e: OutboxEntry,
        code: ErrorCode,
        message: String,
        now: u64,
    ) {
        let key = e.mutation.key();
        tracing::warn!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %e.mutation.op_id,
            sync_attempt = e.attempts,
            error_code = %code,
            "mutation moved to the dead-letter queue"
        );
        tx.audit(
            Some(&e.mutation.op_id),
            &key,
            AuditEvent::DeadLettered { code },
        );
        tx.alerts.push(Event::Alert {
            code,
            key,
            op_id: Some(e.mutation.op_id.clone()),
            message: message.clone(),
        });
        outbox::mark_dead_letter(&mut e, code, message, now);
        st.metrics.dead_letters += 1;
        tx.report.dead_lettered += 1;
        st.put_entry(tx, e);
    }

    pub(super) fn on_push_failure(
        &self,
        st: &mut State,
        tx: &mut Txn,
        batch: &[OutboxEntry],
        err: TransportError,
        now: u64,
    ) {
        let code = err.code();
        let message = err.to_string();
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            batch = batch.len(),
            sync_attempt = batch.iter().map(|e| e.attempts).max().unwrap_or(0) + 1,
            error_code = %code,
            "push failed"
        );
        tx.report.error.get_or_insert(code);
        match err {
            TransportError::Unreachable(_) => {
                st.online = false;
                st.offline_until = now
                    + self
                        .config
                        .retry
                        .backoff_ms(
                            1,
                            self.env.random_u64(),
                            self.config.retry.offline_probe_ms / 2,
                        )
                        .min(self.config.retry.offline_probe_ms);
            }
            TransportError::Timeout | TransportError::Server { .. } => {
                st.online = true;
                st.last_error = Some((code, message.clone()));
                st.throttle.record_failure();
                for e in batch {
                    if let Some(cur) = st.outbox.get(e.seq).cloned() {
                        let failure = Failure {
                            code,
                            message: message.clone(),
                            retry_after_ms: 0,
                            counts: true,
                        };
                        self.schedule_retry(st, tx, cur, failure, now);
                    }
                }
            }
            TransportError::RateLimited { retry_after_ms } => {
                st.online = true;
                st.last_error = Some((code, message.clone()));
                st.paused_until = now + retry_after_ms;
                for e in batch {
                    if let Some(cur) = st.outbox.get(e.seq).cloned() {
                        let failure = Failure {
                            code,
                            message: message.clone(),
                            retry_after_ms,
                            counts: false,
                        };
                        self.schedule_retry(st, tx, cur, failure, now);
                    }
                }
            }
            TransportError::Unauthorized { .. } | TransportError::NoServer(_) => {
                st.online = true;
                st.last_error = Some((code, message));
                st.paused_until = now + self.config.retry.offline_probe_ms;
            }
            TransportError::Refused { code, message } => {
                st.online = true;
                if batch.len() > 1 {
                    // The batch as a whole was refused (too large, say): split it.
                    st.batch_cap = Some((batch.len() / 2).max(1));
                } else if let Some(cur) = batch.first().and_then(|e| st.outbox.get(e.seq).cloned())
                {
                    self.dead_letter(st, tx, cur, code, message.clone(), now);
                }
                st.last_error = Some((code, message));
            }
        }
    }

    pub(super) async fn on_ack(
        &self,
        st: &mut State,
        tx: &mut Txn,
        entry: OutboxEntry,
        result: AckResult,
        now: u64,
    ) -> Result<(), EngineError> {
        match result {
            AckResult::Applied { version, .. } => {
                self.on_applied(st, tx, entry, version, None, false).await
            }
            AckResult::Duplicate { version, .. } => {
                self.on_applied(st, tx, entry, version, None, true).await
            }
            AckResult::Conflict { server } => {
                tx.report.conflicts += 1;
                self.on_conflict(st, tx, entry, server, now).await
            }
            AckResult::Rejected { code, message } => {
                if code.is_permanent() {
                    self.dead_letter(st, tx, entry, code, message, now);
                } else {
                    let failure = Failure {
                        code,
                        message,
                        retry_after_ms: 0,
                        counts: true,
                    };
                    self.schedule_retry(st, tx, entry, failure, now);
                }
                Ok(())
            }
        }
    }

    /// The head `entry` took effect on the server at `version` (`state`:
    /// the resulting state if known, e.g. from the change feed).
    pub(super) async fn on_applied(
        &self,
        st: &mut State,
        tx: &mut Txn,
        entry: OutboxEntry,
        version: u64,
        state: Option<EntityState>,
        duplicate: bool,
    ) -> Result<(), EngineError> {
        let key = entry.mutation.key();
        let mut rec = tx.record(&self.store, &key).await?;
        let new_state = match state {
            Some(s) => Some(s),
            None => {
                let base = rec.chain_base.as_ref().and_then(|b| b.state());
                apply_mutation(base, &entry.mutation, version).ok()
            }
        };
        if let Some(s) = &new_state {
            keep_newer(&mut rec, s);
        }
        st.remove_entry(tx, entry.seq);
        let rest: Vec<OutboxEntry> = st.outbox.chain(&key).into_iter().cloned().collect();
        for mut e in rest {
            e.mutation.base_version = version;
            st.put_entry(tx, e);
        }
        rec.chain_base = new_state.map(ChainBase::State).or(rec.chain_base);
        if rec.server.as_ref().is_some_and(|s| s.version >= version) {
            tx.acked.push((key.clone(), version));
        }
        tx.put_record(rec);
        tx.audit(
            Some(&entry.mutation.op_id),
            &key,
            if duplicate {
                AuditEvent::Duplicate { version }
            } else {
                AuditEvent::Applied { version }
            },
        );
        tracing::debug!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %entry.mutation.op_id,
            sync_attempt = entry.attempts + 1,
            version,
            duplicate,
            "mutation acknowledged"
        );
        st.metrics.synced += 1;
        tx.report.acknowledged += 1;
        Ok(())
    }

    /// The head met a newer server state: the collection's policy decides
    /// (in [`decide`]) and [`apply_decision`](Self::apply_decision) carries it out.
    pub(super) async fn on_conflict(
        &self,
        st: &mut State,
        tx: &mut Txn,
        head: OutboxEntry,
        server: Option<EntityState>,
        now: u64,
    ) -> Result<(), EngineError> {
        let key = head.mutation.key();
        let mut rec = tx.record(&self.store, &key).await?;
        if let Some(s) = &server {
            st.clock.observe(s.updated_at, now);
            keep_newer(&mut rec, s);
        }
        st.metrics.conflicts += 1;
        let chain: Vec<OutboxEntry> = st.outbox.chain(&key).into_iter().cloned().collect();
        let base = rec.chain_base.as_ref().and_then(|b| b.state()).cloned();
        let muts: Vec<&Mutation> = chain.iter().map(|e| &e.mutation).collect();
        let policy = self.policy(&key.collection);
        let decision = decide(policy, base.as_ref(), &muts, server.as_ref());
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            event_id = %head.mutation.op_id,
            sync_attempt = head.attempts,
            error_code = %ErrorCode::Conflict,
            policy = ?policy,
            decision = decision.name(),
            "conflict"
        );
        let clash = Clash {
            key,
            head,
            chain,
            base,
            server,
            now,
        };
        self.apply_decision(st, tx, &mut rec, clash, decision);
        tx.put_record(rec);
        Ok(())
    }

    /// Carries out a policy's decision on the entity's chain.
    fn apply_decision(
        &self,
        st: &mut State,
        tx: &mut Txn,
        rec: &mut EntityRecord,
        clash: Clash,
        decision: Decision,
    ) {
        let Clash {
            key,
            head,
            chain,
            base,
            server,
            now,
        } = clash;
        let server_version = server.as_ref().map(|s| s.version).unwrap_or(0);
        let on_server = || Some(server.clone().map_or(ChainBase::Absent, ChainBase::State));
        match decision {
            Decision::Rebase => {
                rebase(st, tx, &chain, server_version, now);
                rec.chain_base = on_server();
            }
            Decision::SupersedeHead => {
                supersede(st, tx, &chain[..1], server_version);
                rebase(st, tx, &chain[1..], server_version, now);
                rec.chain_base = on_server();
            }
            Decision::SupersedeAll => {
                supersede(st, tx, &chain, server_version);
                rec.chain_base = None;
            }
            Decision::Manual { fields } => {
                let muts = chain.iter().map(|e| &e.mutation);
                let local = compute_view(&key, base.as_ref(), muts, 0, true);
                let record = ConflictRecord {
                    key: key.clone(),
                    base,
                    local,
                    server,
                    mutations: chain.iter().map(|e| e.mutation.clone()).collect(),
                    fields,
                    detected_at: now,
                };
                for e in &chain {
                    st.remove_entry(tx, e.seq);
                    tx.audit(Some(&e.mutation.op_id), &key, AuditEvent::ConflictOpened);
                }
                tx.alerts.push(Event::Alert {
                    code: ErrorCode::Conflict,
                    key: key.clone(),
                    op_id: Some(head.mutation.op_id.clone()),
                    message: format!("{key} changed on the server and here: choose a version"),
                });
                tx.batch.push(WriteOp::PutConflict(record.clone()));
                st.conflicts.insert(key, record);
                rec.chain_base = None;
            }
        }
    }
}

/// A head that met a newer server state, and what the decision needs.
struct Clash {
    key: EntityKey,
    head: OutboxEntry,
    /// The whole chain, head first.
    chain: Vec<OutboxEntry>,
    /// The server state the chain was built on.
    base: Option<EntityState>,
    /// The server's state now.
    server: Option<EntityState>,
    now: u64,
}

/// Stores `s` as the entity's server state unless a newer one is held.
pub(super) fn keep_newer(rec: &mut EntityRecord, s: &EntityState) {
    if rec
        .server
        .as_ref()
        .is_none_or(|cur| cur.version < s.version)
    {
        rec.server = Some(s.clone());
    }
}

/// Rebases `entries` onto the server's `version`, due at once.
fn rebase(st: &mut State, tx: &mut Txn, entries: &[OutboxEntry], version: u64, now: u64) {
    for e in entries {
        let mut e = e.clone();
        e.mutation.base_version = version;
        e.next_attempt_at = now;
        tx.audit(
            Some(&e.mutation.op_id),
            &e.mutation.key(),
            AuditEvent::Rebased { onto: version },
        );
        st.put_entry(tx, e);
    }
}

/// Drops `entries`: the server's `version` superseded them (audited).
fn supersede(st: &mut State, tx: &mut Txn, entries: &[OutboxEntry], version: u64) {
    for e in entries {
        st.remove_entry(tx, e.seq);
        tx.audit(
            Some(&e.mutation.op_id),
            &e.mutation.key(),
            AuditEvent::Superseded {
                by_version: version,
            },
        );
    }
}
