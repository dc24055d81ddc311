//! [`SyncService`]: the protocol's server side (push, changes, snapshot,
//! reconcile) over any [`ServerStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tidesync::{
    validate_mutation, AckResult, ChangesPage, ChangesRequest, Cursor, ErrorCode, Limits, Mutation,
    MutationAck, PushRequest, PushResponse, ReconcileRequest, ReconcileResponse, SnapshotPage,
    SnapshotRequest, PROTOCOL_VERSION,
};

use crate::context::TerminalContext;
use crate::decide::{decide_mutation, ServerPolicy};
use crate::error::ServiceError;
use crate::metrics::{bump, Recorder, ServiceMetrics};
use crate::reconcile;
use crate::rules::CollectionRules;
use crate::storage::{ServerStore, StorageError};

/// Server time in milliseconds since the Unix epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Limits and per-collection policies of a [`SyncService`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Envelope limits checked by [`validate_mutation`].
    pub limits: Limits,
    /// Most mutations accepted in one push (more: `PAYLOAD_TOO_LARGE`).
    pub max_batch: usize,
    /// Largest changes page; larger `limit`s are clamped to it.
    pub max_changes_page: u32,
    /// Largest snapshot page; larger `limit`s are clamped to it.
    pub max_snapshot_page: u32,
    /// Most manifest entries in one reconcile request (more: `MANIFEST_TOO_LARGE`).
    pub max_manifest: usize,
    /// Policy per collection; collections not listed are [`ServerPolicy::Versioned`].
    pub policies: BTreeMap<String, ServerPolicy>,
    /// Payload rules per collection; collections not listed accept any fields.
    pub rules: BTreeMap<String, CollectionRules>,
    /// The replay window (ms): ledger rows older than it may be pruned
    /// ([`SyncService::prune_ledger`]), and an op made before it that has no
    /// row is refused with `OP_EXPIRED`, never applied. `None` (the
    /// library's default): rows are kept for ever. The binary's
    /// `--replay-window-days` defaults to 30.
    pub replay_window_ms: Option<u64>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            limits: Limits::default(),
            max_batch: 500,
            max_changes_page: 1000,
            max_snapshot_page: 1000,
            max_manifest: 10_000,
            policies: BTreeMap::new(),
            rules: BTreeMap::new(),
            replay_window_ms: None,
        }
    }
}

/// The sync protocol's server side. Every method is scoped to the caller's
/// [`TerminalContext`]; share one service between threads (it is `Sync` when
/// the store is).
pub struct SyncService<S> {
    store: S,
    config: ServiceConfig,
    clock: Clock,
    pub(crate) metrics: Recorder,
}

impl<S> fmt::Debug for SyncService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncService")
            .field("config", &self.config)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<S: ServerStore> SyncService<S> {
    /// A service with the default configuration and the system clock.
    pub fn new(store: S) -> Self {
        Self::with_config(store, ServiceConfig::default())
    }

    /// A service with `config` and the system clock.
    pub fn with_config(store: S, config: ServiceConfig) -> Self {
        SyncService {
            store,
            config,
            clock: Arc::new(tidesync::env::unix_now_ms),
            metrics: Recorder::default(),
        }
    }

    /// Sets the policy of `collection`.
    pub fn with_policy(mut self, collection: impl Into<String>, policy: ServerPolicy) -> Self {
        self.config.policies.insert(collection.into(), policy);
        self
    }

    /// Replaces the clock that stamps `applied_at_ms` in the audit trail.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The policy of `collection`: as set, else its `access` in the rules.
    pub fn policy(&self, collection: &str) -> ServerPolicy {
        self.config
            .policies
            .get(collection)
            .copied()
            .unwrap_or_else(|| {
                self.config
                    .rules
                    .get(collection)
                    .map_or_else(ServerPolicy::default, |r| ServerPolicy::of_access(r.access))
            })
    }

    /// A copy of the counters.
    pub fn metrics(&self) -> ServiceMetrics {
        self.metrics.snapshot()
    }

    /// The start of the replay window at `now` (none: no window).
    fn expired_before(&self, now: u64) -> Option<u64> {
        self.config.replay_window_ms.map(|w| now.saturating_sub(w))
    }

    /// Prunes the ledger rows that fell out of the replay window (every
    /// partition); returns how many. Without a window it removes nothing.
    pub fn prune_ledger(&self) -> Result<u64, ServiceError> {
        match self.expired_before(self.now_ms()) {
            Some(before) => self.storage(self.store.prune_ledger(before)),
            None => Ok(0),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub(crate) fn storage<T>(&self, res: Result<T, StorageError>) -> Result<T, ServiceError> {
        res.map_err(|e| {
            bump(&self.metrics.storage_failures);
            e.into()
        })
    }

    /// `POST /v1/mutations`: one ack per mutation, in request order.
    ///
    /// Each mutation is decided on its own, so a rejected or conflicting
    /// mutation never affects the others; the whole batch is recorded in one
    /// transaction (entity, change, ledger and audit rows of every applied
    /// mutation commit together). Whole-request
    /// errors: a protocol version other than [`PROTOCOL_VERSION`]
    /// (`EVENT_INVALID`), more than `max_batch` mutations
    /// (`PAYLOAD_TOO_LARGE`), and a storage failure (`STORAGE_FAILED`):
    /// nothing of the batch is kept, and a retry decides it anew.
    pub fn push(
        &self,
        ctx: &TerminalContext,
        req: PushRequest,
    ) -> Result<PushResponse, ServiceError> {
        if req.protocol != PROTOCOL_VERSION {
            return Err(ServiceError::invalid(
                "protocol",
                format_args!(
                    "version {} is not supported (this server speaks {PROTOCOL_VERSION})",
                    req.protocol
                ),
            ));
        }
        if req.mutations.len() > self.config.max_batch {
            return Err(ServiceError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "mutations: {} exceed the batch limit of {}",
                    req.mutations.len(),
                    self.config.max_batch
                ),
            ));
        }
        // The checks that need no storage, then every remaining decision in
        // ONE transaction: one commit (one fsync) per batch, and a storage
        // failure leaves nothing of the batch behind.
        let prechecked: Vec<Option<AckResult>> = req
            .mutations
            .iter()
            .map(|m| self.precheck(ctx, m))
            .collect();
        let results = if prechecked.iter().all(Option::is_some) {
            prechecked.into_iter().flatten().collect()
        } else {
            let now = self.now_ms();
            let expired_before = self.expired_before(now);
            let pending: Vec<&Mutation> = req
                .mutations
                .iter()
                .zip(&prechecked)
                .filter(|(_, pre)| pre.is_none())
                .map(|(m, _)| m)
                .collect();
            let op_ids: Vec<_> = pending.iter().map(|m| m.op_id.clone()).collect();
            let keys: Vec<_> = pending.iter().map(|m| m.key()).collect();
            self.storage(self.store.transaction(&ctx.partition(), |tx| {
                tx.prefetch(&ctx.terminal, &op_ids, &keys)?;
                req.mutations
                    .iter()
                    .zip(&prechecked)
                    .map(|(m, pre)| match pre {
                        Some(result) => Ok(result.clone()),
                        None => decide_mutation(
                            tx,
                            &ctx.terminal,
                            m,
                            self.policy(&m.collection),
                            now,
                            expired_before,
                        ),
                    })
                    .collect::<Result<Vec<_>, _>>()
            }))?
        };
        let acks = req
            .mutations
            .into_iter()
            .zip(results)
            .map(|(m, result)| {
                self.metrics.ack(&result);
                MutationAck {
                    op_id: m.op_id,
                    result,
                }
            })
            .collect();
        Ok(PushResponse { acks })
    }

    /// The verdict on a mutation that needs no storage: a rejection, or
    /// `None` if it must be decided against the stored state.
    fn precheck(&self, ctx: &TerminalContext, m: &Mutation) -> Option<AckResult> {
        let reject = |code, message| Some(AckResult::Rejected { code, message });
        if let Err(e) = validate_mutation(m, &self.config.limits) {
            return reject(e.code, e.message);
        }
        if m.terminal_id != ctx.terminal {
            return reject(
                ErrorCode::EventInvalid,
                format!(
                    "terminal_id: {} is not the authenticated terminal",
                    m.terminal_id
                ),
            );
        }
        if m.branch_id != ctx.branch {
            return reject(
                ErrorCode::SyncForbidden,
                format!(
                    "branch_id: the terminal may not write branch {}",
                    m.branch_id
                ),
            );
        }
        // Fields only: a collection's access is its policy, decided later
        // (after the ledger, so a resent append stays a duplicate).
        if let Some(rules) = self.config.rules.get(&m.collection) {
            if let Err(message) = rules.check(m.kind, m.payload.as_ref()) {
                return reject(ErrorCode::EventInvalid, message);
            }
        }
        None
    }

    /// `GET /v1/changes`: the changes after `since`, in cursor order.
    ///
    /// `limit` is clamped to `1..=max_changes_page`. `next` is the cursor of
    /// the last change returned (or `since` if none). A `since` beyond the
    /// head (the client's cursor comes from another log) is `EVENT_INVALID`:
    /// the client must take a snapshot again.
    pub fn changes(
        &self,
        ctx: &TerminalContext,
        req: ChangesRequest,
    ) -> Result<ChangesPage, ServiceError> {
        let partition = ctx.partition();
        let limit = req.limit.clamp(1, self.config.max_changes_page.max(1)) as usize;
        let mut rows = self.storage(self.store.changes(&partition, req.since, limit + 1))?;
        if rows.is_empty() {
            // The head only grows, so reading it after the changes is safe.
            let head = self.storage(self.store.head(&partition))?;
            if req.since > head {
                return Err(ServiceError::new(
                    ErrorCode::CursorUnknown,
                    format!(
                        "since: cursor {} is ahead of this branch's change log (head {head}); \
                         take a new snapshot",
                        req.since
                    ),
                ));
            }
        }
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().map_or(req.since, |c| c.cursor);
        bump(&self.metrics.delta_runs);
        Ok(ChangesPage {
            changes: rows.into_iter().map(|c| c.state).collect(),
            next,
            has_more,
        })
    }

    /// `GET /v1/snapshot`: a page of live entities ordered by
    /// `(collection, id)`, after `after`.
    ///
    /// `limit` is clamped to `1..=max_snapshot_page`. `at` is the head read
    /// with the page; `next` is the last key when more entities follow.
    pub fn snapshot(
        &self,
        ctx: &TerminalContext,
        req: SnapshotRequest,
    ) -> Result<SnapshotPage, ServiceError> {
        if let Some(after) = &req.after {
            // Keys outside what the store can hold are refused here, not
            // handed to the database (a NUL is an error on PostgreSQL).
            let max = self.config.limits.max_collection_len;
            if !tidesync::valid_collection_name(&after.collection, max) {
                return Err(ServiceError::invalid(
                    "after_collection",
                    format_args!("must be 1 to {max} bytes of [a-z0-9_-], starting with a letter"),
                ));
            }
            let max = self.config.limits.max_id_len;
            if after.id.is_empty() || after.id.len() > max || after.id.chars().any(char::is_control)
            {
                return Err(ServiceError::invalid(
                    "after_id",
                    format_args!("must be 1 to {max} bytes (UTF-8) without control characters"),
                ));
            }
        }
        let partition = ctx.partition();
        let limit = req.limit.clamp(1, self.config.max_snapshot_page.max(1)) as usize;
        let mut read = self.storage(self.store.snapshot(
            &partition,
            req.after.as_ref(),
            limit + 1,
        ))?;
        let more = read.entities.len() > limit;
        read.entities.truncate(limit);
        let next = if more {
            read.entities.last().map(|s| s.key())
        } else {
            None
        };
        bump(&self.metrics.snapshot_pages);
        Ok(SnapshotPage {
            entities: read.entities,
            at: read.head,
            next,
        })
    }

    /// `POST /v1/reconcile`.
    ///
    /// Step 1: `mismatched` lists the buckets whose `(count, digest)` differ
    /// from the client's `digests` (an omitted bucket counts as empty).
    /// Step 2 (when `manifest` or `manifest_buckets` is non-empty): `plan`
    /// holds, for the buckets of `manifest_buckets`, the `missing`, `stale`
    /// and `extra` ids. Whole-request errors: `buckets` outside
    /// `1..=4096`, an out-of-range or repeated bucket, a manifest id outside
    /// the listed buckets or repeated (`EVENT_INVALID`); more than
    /// `max_manifest` entries (`MANIFEST_TOO_LARGE`).
    pub fn reconcile(
        &self,
        ctx: &TerminalContext,
        req: ReconcileRequest,
    ) -> Result<ReconcileResponse, ServiceError> {
        reconcile::check_request(&req, self.config.max_manifest)?;
        if !tidesync::valid_collection_name(&req.collection, self.config.limits.max_collection_len)
        {
            return Err(ServiceError::invalid(
                "collection",
                "must be a valid collection name",
            ));
        }
        let read = self.storage(self.store.live_entities(&ctx.partition(), &req.collection))?;
        let mismatched = reconcile::mismatched(&read.entities, req.buckets, &req.digests);
        let plan = (!req.manifest.is_empty() || !req.manifest_buckets.is_empty()).then(|| {
            reconcile::plan(
                &read.entities,
                req.buckets,
                &req.manifest_buckets,
                &req.manifest,
            )
        });
        bump(&self.metrics.reconcile_runs);
        Ok(ReconcileResponse {
            mismatched,
            plan,
            at: read.head,
        })
    }

    /// The head cursor of a partition.
    pub fn head(&self, ctx: &TerminalContext) -> Result<Cursor, ServiceError> {
        self.storage(self.store.head(&ctx.partition()))
    }
}
