//! Pull: the snapshot on first run, then the change feed from the cursor.
//! Both kinds of page go through one function, [`Engine::apply_page`].

use super::state::{State, Txn};
use super::{Engine, EngineError, SyncReport};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::protocol::*;
use crate::store::*;
use crate::transport::{Transport, TransportError};

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Stores a server state (from a snapshot, the change feed or a
    /// reconcile plan). Older states than the one held are ignored unless
    /// `force` (reconcile is authoritative). A state produced by the head of
    /// the entity's chain acknowledges that head.
    pub(super) async fn apply_server_state(
        &self,
        st: &mut State,
        tx: &mut Txn,
        s: EntityState,
        force: bool,
        now: u64,
    ) -> Result<bool, EngineError> {
        let key = s.key();
        let mut rec = tx.record(&self.store, &key).await?;
        let held = rec.server.as_ref().map(|c| c.version);
        let newer = held.is_none_or(|v| v < s.version);
        if !(newer || (force && held != Some(s.version))) {
            return Ok(false);
        }
        st.clock.observe(s.updated_at, now);
        rec.server = Some(s.clone());
        if let Some(c) = st.conflicts.get_mut(&key) {
            c.server = Some(s.clone());
            tx.batch.push(WriteOp::PutConflict(c.clone()));
        }
        tx.put_record(rec);
        let head = st.outbox.chain(&key).first().map(|e| (*e).clone());
        if let Some(head) = head {
            if s.last_op.as_ref() == Some(&head.mutation.op_id) {
                let v = s.version;
                self.on_applied(st, tx, head, v, Some(s), false).await?;
            }
        }
        Ok(true)
    }

    /// Pulls: the snapshot on first run, then the change feed.
    pub async fn pull(&self) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.pull_locked().await
    }

    pub(super) async fn pull_transport_error(
        &self,
        err: TransportError,
        code: ErrorCode,
    ) -> SyncReport {
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            branch_id = %self.config.branch_id,
            error_code = %err.code(),
            stage = %code,
            "pull failed"
        );
        let mut st = self.state.lock().await;
        let now = self.env.now_ms();
        let mut report = SyncReport::default();
        match &err {
            TransportError::Unreachable(_) => {
                st.online = false;
                st.offline_until = st
                    .offline_until
                    .max(now + self.config.retry.offline_probe_ms / 2);
                report.error = Some(ErrorCode::SyncOffline);
            }
            TransportError::RateLimited { retry_after_ms } => {
                st.paused_until = now + retry_after_ms;
                st.last_error = Some((err.code(), err.to_string()));
                report.error = Some(err.code());
            }
            TransportError::Unauthorized { code, .. } => {
                st.last_error = Some((*code, err.to_string()));
                report.error = Some(*code);
            }
            TransportError::NoServer(_) => {
                st.online = true;
                st.last_error = Some((err.code(), err.to_string()));
                report.error = Some(err.code());
            }
            _ => {
                st.online = true;
                st.last_error = Some((code, err.to_string()));
                report.error = Some(code);
            }
        }
        let ev = self.status_event(&mut st);
        drop(st);
        self.emit(ev.into_iter().collect());
        report
    }

    pub(super) async fn pull_locked(&self) -> Result<SyncReport, EngineError> {
        self.pull_inner(true).await
    }

    /// Forgets the snapshot and cursor (the server no longer knows the
    /// cursor, e.g. restored from a backup): the next pull takes a new
    /// snapshot and verifies it. Pending mutations are kept.
    pub(super) async fn reset_to_snapshot(&self) -> Result<(), EngineError> {
        let mut st = self.state.lock().await;
        st.meta.snapshot = SnapshotProgress::NotStarted;
        st.meta.cursor = None;
        st.acked.clear();
        self.finish(&mut st, Txn::default()).await.map(|_| ())
    }

    pub(super) async fn pull_inner(&self, may_reset: bool) -> Result<SyncReport, EngineError> {
        let mut report = SyncReport::default();
        {
            let st = self.state.lock().await;
            let now = self.env.now_ms();
            if now < st.paused_until || (!st.online && now < st.offline_until) {
                return Ok(report);
            }
        }
        if !self.pull_snapshot(&mut report).await? {
            return Ok(report);
        }
        match self.pull_changes(&mut report).await? {
            Feed::Done => self.state.lock().await.acked.clear(),
            Feed::Stopped => return Ok(report),
            Feed::CursorUnknown(_) if may_reset => {
                self.reset_to_snapshot().await?;
                let again = Box::pin(self.pull_inner(false)).await?;
                report.absorb(again);
                return Ok(report);
            }
            Feed::CursorUnknown(e) => {
                report.absorb(self.pull_transport_error(e, ErrorCode::DeltaFailed).await);
                return Ok(report);
            }
        }
        self.verify_snapshot(&mut report).await?;
        Ok(report)
    }

    /// The snapshot, page by page, until it is done; the progress is stored
    /// with each page. While a page is applied (sealed and written), the
    /// next one is already on its way. `false` when a request failed (in
    /// the report).
    async fn pull_snapshot(&self, report: &mut SyncReport) -> Result<bool, EngineError> {
        let limit = self.config.snapshot_page;
        let mut prefetched: Option<(Option<EntityKey>, SnapshotPage)> = None;
        loop {
            let progress = self.state.lock().await.meta.snapshot.clone();
            let (at, after, verify) = match progress {
                SnapshotProgress::Done => return Ok(true),
                // A snapshot into a store that holds no entity has nothing
                // to verify afterwards: every entity it ends with came from
                // the snapshot, or was written locally since.
                SnapshotProgress::NotStarted => {
                    (None, None, !self.store.collections().await?.is_empty())
                }
                SnapshotProgress::InProgress { at, after, verify } => (Some(at), after, verify),
            };
            // A page fetched ahead is used only if it is the one due now.
            let page = match prefetched.take() {
                Some((from, page)) if from == after => Ok(page),
                _ => {
                    self.transport
                        .snapshot(SnapshotRequest { after, limit })
                        .await
                }
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let r = self
                        .pull_transport_error(e, ErrorCode::SnapshotFailed)
                        .await;
                    report.absorb(r);
                    return Ok(false);
                }
            };
            // The snapshot is consistent as of its first page's cursor.
            let at = at.unwrap_or(page.at);
            let next = page.next.clone();
            let apply = self.apply_page(page.entities, true, |meta, now| {
                meta.snapshot = match &next {
                    Some(next) => SnapshotProgress::InProgress {
                        at,
                        after: Some(next.clone()),
                        verify,
                    },
                    None => {
                        meta.cursor = Some(meta.cursor.unwrap_or_default().max(at));
                        meta.snapshot_at_ms = Some(now);
                        meta.verify_pending |= verify;
                        SnapshotProgress::Done
                    }
                };
            });
            let r = match &next {
                Some(n) => {
                    let ahead = self.transport.snapshot(SnapshotRequest {
                        after: Some(n.clone()),
                        limit,
                    });
                    let (r, ahead) = futures::future::join(apply, ahead).await;
                    match ahead {
                        Ok(p) => prefetched = Some((Some(n.clone()), p)),
                        // Asked again on the next round, which reports it.
                        Err(_) => prefetched = None,
                    }
                    r?
                }
                None => apply.await?,
            };
            self.state.lock().await.metrics.snapshot_pages += 1;
            report.absorb(r);
        }
    }

    /// The change feed from the cursor, up to `max_pull_pages` pages; the
    /// next page is fetched while one is applied.
    async fn pull_changes(&self, report: &mut SyncReport) -> Result<Feed, EngineError> {
        let limit = self.config.changes_page;
        let mut prefetched: Option<(Cursor, Result<ChangesPage, TransportError>)> = None;
        for round in 0..self.config.max_pull_pages {
            let since = self.state.lock().await.meta.cursor.unwrap_or_default();
            let page = match prefetched.take() {
                Some((from, page)) if from == since => page,
                _ => {
                    self.transport
                        .changes(ChangesRequest { since, limit })
                        .await
                }
            };
            let page = match page {
                Ok(p) if p.next < since => {
                    let e = TransportError::Server {
                        status: 0,
                        message: format!("the change feed went back from {since} to {}", p.next),
                    };
                    report.absorb(self.pull_transport_error(e, ErrorCode::DeltaFailed).await);
                    return Ok(Feed::Stopped);
                }
                Ok(p) => p,
                Err(
                    e @ TransportError::Refused {
                        code: ErrorCode::CursorUnknown,
                        ..
                    },
                ) => return Ok(Feed::CursorUnknown(e)),
                Err(e) => {
                    report.absorb(self.pull_transport_error(e, ErrorCode::DeltaFailed).await);
                    return Ok(Feed::Stopped);
                }
            };
            let (next, has_more) = (page.next, page.has_more);
            let apply = self.apply_page(page.changes, false, |meta, now| {
                meta.cursor = Some(next);
                if !has_more {
                    meta.snapshot_at_ms = Some(now);
                }
            });
            let r = if has_more && round + 1 < self.config.max_pull_pages {
                let ahead = self
                    .transport
                    .changes(ChangesRequest { since: next, limit });
                let (r, ahead) = futures::future::join(apply, ahead).await;
                prefetched = Some((next, ahead));
                r?
            } else {
                apply.await?
            };
            self.state.lock().await.metrics.delta_runs += 1;
            report.absorb(r);
            if !has_more {
                break;
            }
        }
        Ok(Feed::Done)
    }

    /// Applies one page of server states, snapshot or changes, in one
    /// transaction with the progress `advance` writes into the sync state
    /// (the snapshot position or the cursor): both commit together or
    /// neither does. `span`: the page is a contiguous run of keys (a
    /// snapshot page), read from the store as key ranges.
    async fn apply_page(
        &self,
        states: Vec<EntityState>,
        span: bool,
        advance: impl FnOnce(&mut SyncMeta, u64),
    ) -> Result<SyncReport, EngineError> {
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let mut tx = Txn::default();
        // Our own acknowledged writes coming back: ignored anyway, not read.
        let mut states = states;
        if !st.acked.is_empty() {
            states.retain(|s| st.acked.get(&s.key()).is_none_or(|v| s.version > *v));
        }
        let keys: Vec<EntityKey> = states.iter().map(|s| s.key()).collect();
        tx.prefetch(&self.store, &keys, span).await?;
        for s in states {
            if self
                .apply_server_state(&mut st, &mut tx, s, false, now)
                .await?
            {
                tx.report.pulled += 1;
            }
        }
        advance(&mut st.meta, now);
        st.online = true;
        st.last_error = None;
        st.meta.last_sync_at_ms = Some(now);
        self.finish(&mut st, tx).await
    }

    /// After a completed snapshot, a reconcile checks the copy against the
    /// server; the check is kept due until it succeeds.
    async fn verify_snapshot(&self, report: &mut SyncReport) -> Result<(), EngineError> {
        if !self.state.lock().await.meta.verify_pending {
            return Ok(());
        }
        let r = self.reconcile_locked(None).await?;
        let ok = r.error.is_none();
        report.absorb(r);
        if ok {
            let mut st = self.state.lock().await;
            st.meta.verify_pending = false;
            self.finish(&mut st, Txn::default()).await?;
        }
        Ok(())
    }
}

/// How the change feed ended.
enum Feed {
    /// Caught up, or the page budget is spent.
    Done,
    /// A request failed (in the report).
    Stopped,
    /// The server does not know the cursor: take a new snapshot.
    CursorUnknown(TransportError),
}
