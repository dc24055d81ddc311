//! The engine's cached state, the transaction a call builds, and the one
//! place a transaction is committed ([`Engine::finish`]). The caches are
//! reloaded when another engine on the same store committed, or when a
//! commit failed (nothing of it was stored).

use super::view::compute_view;
use super::{Engine, EngineError, SyncReport};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::hlc::{node_id, HlcClock};
use crate::outbox::Outbox;
use crate::protocol::*;
use crate::status::{Event, Metrics, Phase, Status};
use crate::store::*;
use crate::throttle::Throttle;
use crate::transport::Transport;
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct State {
    pub(super) meta: SyncMeta,
    pub(super) clock: HlcClock,
    pub(super) outbox: Outbox,
    pub(super) conflicts: BTreeMap<EntityKey, ConflictRecord>,
    pub(super) online: bool,
    pub(super) syncing: bool,
    pub(super) last_error: Option<(ErrorCode, String)>,
    /// When unreachable: next probe time.
    pub(super) offline_until: u64,
    /// Rate-limited or unauthorized: no push before this time.
    pub(super) paused_until: u64,
    /// A whole batch was refused as too large: cap batches at this size.
    pub(super) batch_cap: Option<usize>,
    pub(super) metrics: Metrics,
    pub(super) throttle: Throttle,
    pub(super) last_status: Option<Status>,
    /// Server versions this engine's acknowledged pushes stored since the
    /// change feed last caught up (a lower bound of what the store holds):
    /// the feed then brings the same states back, and a state at or below
    /// one of these would be ignored, so the pull does not read its record.
    /// Cleared whenever the store may hold less: a reload, a reconcile, a
    /// new snapshot.
    pub(super) acked: BTreeMap<EntityKey, u64>,
}

/// At most this many entries in [`State::acked`]; beyond it the cache is
/// dropped (it only saves reads).
const ACKED_CAP: usize = 100_000;

/// Changes being prepared for one store batch.
/// Changes being prepared for one store batch.
#[derive(Default)]
pub(super) struct Txn {
    pub(super) batch: WriteBatch,
    pub(super) records: BTreeMap<EntityKey, Option<EntityRecord>>,
    pub(super) original_views: BTreeMap<EntityKey, Option<LocalEntity>>,
    pub(super) dirty: BTreeSet<EntityKey>,
    pub(super) audits: Vec<(Option<OpId>, EntityKey, AuditEvent)>,
    pub(super) alerts: Vec<Event>,
    pub(super) report: SyncReport,
    /// For [`State::acked`], once this transaction is committed.
    pub(super) acked: Vec<(EntityKey, u64)>,
    /// Entities whose outbox chain this transaction changed: their views
    /// are replayed at [`Engine::finish`].
    pub(super) chains: BTreeSet<EntityKey>,
}

impl Txn {
    pub(super) async fn record<S: Store>(
        &mut self,
        store: &S,
        key: &EntityKey,
    ) -> Result<EntityRecord, EngineError> {
        if !self.records.contains_key(key) {
            let rec = store.get(key).await?;
            self.original_views
                .insert(key.clone(), rec.as_ref().and_then(|r| r.view.clone()));
            self.records.insert(key.clone(), rec);
        }
        Ok(self.records[key].clone().unwrap_or_else(|| EntityRecord {
            key: key.clone(),
            server: None,
            chain_base: None,
            view: None,
        }))
    }

    /// Reads the records of `keys` not read yet, in one store call. With
    /// `span`, the keys are a contiguous run of the server's key space (a
    /// snapshot page): the store reads them as key ranges
    /// ([`Store::get_sorted`]), so keys it does not hold cost nothing.
    /// Scattered keys (a change page) are looked up one by one.
    pub(super) async fn prefetch<S: Store>(
        &mut self,
        store: &S,
        keys: &[EntityKey],
        span: bool,
    ) -> Result<(), EngineError> {
        let missing: Vec<EntityKey> = keys
            .iter()
            .filter(|k| !self.records.contains_key(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // `missing` is sorted by (collection, id), without repeats.
        let recs = if span {
            store.get_sorted(&missing).await?
        } else {
            store.get_many(&missing).await?
        };
        for (k, rec) in missing.into_iter().zip(recs) {
            self.original_views
                .insert(k.clone(), rec.as_ref().and_then(|r| r.view.clone()));
            self.records.insert(k, rec);
        }
        Ok(())
    }

    pub(super) fn put_record(&mut self, rec: EntityRecord) {
        self.dirty.insert(rec.key.clone());
        self.records.insert(rec.key.clone(), Some(rec));
    }

    pub(super) fn audit(&mut self, op: Option<&OpId>, key: &EntityKey, event: AuditEvent) {
        self.audits.push((op.cloned(), key.clone(), event));
    }
}

impl State {
    /// Stores an outbox entry. A new entry, an edited mutation or a move
    /// between pending and dead-lettered changes the entity's view; a new
    /// attempt time alone (a retry scheduled) does not.
    pub(super) fn put_entry(&mut self, tx: &mut Txn, e: OutboxEntry) {
        let pending = e.state == OutboxState::Pending;
        let same = self.outbox.get(e.seq).is_some_and(|old| {
            (old.state == OutboxState::Pending) == pending && old.mutation == e.mutation
        });
        if !same {
            tx.chains.insert(e.mutation.key());
        }
        tx.batch.push(WriteOp::PutOutbox(e.clone()));
        self.outbox.insert(e);
    }

    pub(super) fn remove_entry(&mut self, tx: &mut Txn, seq: u64) -> Option<OutboxEntry> {
        tx.batch.push(WriteOp::DeleteOutbox(seq));
        let removed = self.outbox.remove(seq);
        if let Some(e) = &removed {
            tx.chains.insert(e.mutation.key());
        }
        removed
    }

    /// The status; a store that is gone (`health`) is an error whatever
    /// else is going on.
    pub(super) fn status(
        &self,
        now: u64,
        stale_after: u64,
        health: Result<(), StoreError>,
    ) -> Status {
        let store_error = health.err().map(|e| (e.code(), e.to_string()));
        let phase = if store_error.is_some() {
            Phase::Error
        } else if self.syncing {
            Phase::Syncing
        } else if !self.online {
            Phase::Offline
        } else if self.last_error.is_some() {
            Phase::Error
        } else {
            Phase::Idle
        };
        let stale = self.meta.snapshot != SnapshotProgress::Done
            || self
                .meta
                .snapshot_at_ms
                .is_none_or(|t| now.saturating_sub(t) > stale_after);
        Status {
            phase,
            pending: self.outbox.pending_count(),
            pending_by_collection: self.outbox.pending_by_collection().clone(),
            conflicts: self.conflicts.len(),
            dead_letters: self.outbox.dead_letter_count(),
            held: self.outbox.held_count(),
            last_error: store_error.or_else(|| self.last_error.clone()),
            stale,
            last_sync_at: self.meta.last_sync_at_ms,
            drift_age_ms: self.meta.last_sync_at_ms.map(|t| now.saturating_sub(t)),
            first_sync_done: self.meta.snapshot == SnapshotProgress::Done,
        }
    }
}

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Commits `tx`: refreshes the views of touched entities, numbers the
    /// audit entries, stores the sync state, and emits events on success. On
    /// failure, reloads the caches from the store (nothing was committed).
    pub(super) async fn finish(
        &self,
        st: &mut State,
        mut tx: Txn,
    ) -> Result<SyncReport, EngineError> {
        let mut events = Vec::new();
        let listening = !self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        // An entity whose chain changed (an entry added, removed, edited, or
        // moved between pending and dead-lettered) gets its view replayed,
        // even where the call did not touch its record: the view's
        // `pending` is the status's count.
        for key in std::mem::take(&mut tx.chains) {
            if tx.dirty.contains(&key) {
                continue;
            }
            match tx.record(&self.store, &key).await {
                Ok(rec) => tx.put_record(rec),
                Err(e) => {
                    self.reload(st).await;
                    return Err(e);
                }
            }
        }
        let dirty = std::mem::take(&mut tx.dirty);
        let mut changed: Vec<(EntityKey, Option<LocalEntity>)> = Vec::new();
        for key in dirty {
            let Some(Some(mut rec)) = tx.records.remove(&key) else {
                continue;
            };
            let conflict = st.conflicts.get(&key);
            let (muts, pending): (Vec<&Mutation>, u32) = match conflict {
                Some(c) => (c.mutations.iter().collect(), 0),
                None => {
                    let chain = st.outbox.chain(&key);
                    let pending = chain
                        .iter()
                        .filter(|e| e.state == OutboxState::Pending)
                        .count();
                    let muts = chain.into_iter().map(|e| &e.mutation).collect();
                    (muts, u32::try_from(pending).unwrap_or(u32::MAX))
                }
            };
            if muts.is_empty() && conflict.is_none() {
                rec.chain_base = None;
            }
            rec.view = compute_view(&key, rec.server.as_ref(), muts, pending, conflict.is_some());
            let original = tx.original_views.get(&key).and_then(|v| v.as_ref());
            if listening && original != rec.view.as_ref() {
                changed.push((key.clone(), rec.view.clone()));
            }
            if rec.server.is_none() && rec.view.is_none() {
                tx.batch.push(WriteOp::DeleteEntity(key));
            } else {
                tx.batch.push(WriteOp::PutEntity(rec));
            }
        }
        events.extend(change_events(changed));
        let now = self.env.now_ms();
        for (op, key, event) in std::mem::take(&mut tx.audits) {
            let seq = st.meta.next_audit_seq;
            st.meta.next_audit_seq += 1;
            tx.batch.push(WriteOp::AppendAudit(AuditEntry {
                seq,
                at_ms: now,
                op_id: op,
                key,
                event,
            }));
        }
        st.meta.hlc = st.clock.last();
        st.meta.generation = st.meta.generation.wrapping_add(1);
        tx.batch.push(WriteOp::PutMeta(st.meta.clone()));
        if let Err(e) = self.store.commit(tx.batch).await {
            self.reload(st).await;
            let err = EngineError::from(e);
            st.last_error = Some((err.code(), err.message()));
            return Err(err);
        }
        if st.acked.len() + tx.acked.len() > ACKED_CAP {
            st.acked.clear();
        } else {
            st.acked.extend(tx.acked.drain(..));
        }
        events.append(&mut tx.alerts);
        events.extend(self.status_event(st));
        self.emit(events);
        Ok(tx.report)
    }

    /// Locks the state, first reloading the caches if another engine on the
    /// same store (another tab, another process) committed since we last
    /// looked. The host serialises engines that share a store (the browser
    /// adapter with a Web Lock), so nothing commits between this check and
    /// our own commit.
    pub(super) async fn lock_fresh(
        &self,
    ) -> Result<futures::lock::MutexGuard<'_, State>, EngineError> {
        let mut st = self.state.lock().await;
        let stored = match self.store.load_meta().await {
            Ok(m) => m,
            Err(e) => {
                // A store that cannot be read (evicted, closed, corrupt) is
                // an error the pill shows, not only a failed call.
                let err = EngineError::from(e);
                st.last_error = Some((err.code(), err.message()));
                let ev = self.status_event(&mut st);
                self.emit(ev.into_iter().collect());
                return Err(err);
            }
        };
        if stored.as_ref().map(|m| m.generation) != Some(st.meta.generation) {
            self.reload(&mut st).await;
        }
        Ok(st)
    }

    /// [`lock_fresh`](Self::lock_fresh) for reads: a store that cannot be
    /// read leaves the cached state in place.
    pub(super) async fn lock_read(&self) -> futures::lock::MutexGuard<'_, State> {
        match self.lock_fresh().await {
            Ok(st) => st,
            Err(_) => self.state.lock().await,
        }
    }

    /// Rebuilds the caches from the store (after a failed commit, or when
    /// another engine on the same store committed).
    pub(super) async fn reload(&self, st: &mut State) {
        st.acked.clear();
        if let Ok(Some(meta)) = self.store.load_meta().await {
            // Never go back in time: take the later of the two clocks.
            let hlc = st.clock.last().max(meta.hlc);
            st.clock = HlcClock::new(node_id(&meta.client_id), hlc);
            st.meta = meta;
            st.meta.hlc = hlc;
        }
        if let Ok(entries) = self.store.outbox().await {
            st.outbox = Outbox::from_entries(entries);
        }
        if let Ok(conflicts) = self.store.conflicts().await {
            st.conflicts = conflicts.into_iter().map(|c| (c.key.clone(), c)).collect();
        }
    }
}

/// The change events of one commit, from its changed views in key order:
/// per collection, one [`Event::Changed`] with the view when one entity
/// changed, or one [`Event::Changes`] with the ids when several did.
fn change_events(changed: Vec<(EntityKey, Option<LocalEntity>)>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut rest = changed.into_iter().peekable();
    while let Some((key, entity)) = rest.next() {
        if rest
            .peek()
            .is_none_or(|(k, _)| k.collection != key.collection)
        {
            events.push(Event::Changed { key, entity });
            continue;
        }
        let mut ids = vec![key.id];
        while let Some((k, _)) = rest.next_if(|(k, _)| k.collection == key.collection) {
            ids.push(k.id);
        }
        events.push(Event::Changes {
            collection: key.collection,
            ids,
        });
    }
    events
}
