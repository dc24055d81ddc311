//! Reconcile: bucketed digests per collection, then a manifest of the
//! buckets that differ, then the server's plan (missing, stale, extra),
//! applied without touching pending mutations.

use super::state::Txn;
use super::{Engine, EngineError, SyncReport};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::protocol::*;
use crate::store::*;
use crate::transport::Transport;
use std::collections::{BTreeMap, BTreeSet};

impl<S: Store, T: Transport, E: Environment> Engine<S, T, E> {
    /// Verifies collections against the server with bucketed digests and
    /// applies the server's plan: missing and stale entities are stored,
    /// extra ones removed. Pending mutations and conflicts are left alone.
    /// Collections default to every collection with a declared policy.
    pub async fn reconcile(
        &self,
        collections: Option<Vec<String>>,
    ) -> Result<SyncReport, EngineError> {
        let _guard = self.sync_lock.lock().await;
        self.reconcile_locked(collections).await
    }

    pub(super) async fn reconcile_locked(
        &self,
        collections: Option<Vec<String>>,
    ) -> Result<SyncReport, EngineError> {
        // A reconcile may store older server states (it is authoritative).
        self.state.lock().await.acked.clear();
        let collections = match collections {
            Some(c) => c,
            None => {
                let mut all: BTreeSet<String> = self.config.policies.keys().cloned().collect();
                all.extend(self.store.collections().await?);
                all.into_iter().collect()
            }
        };
        let buckets = self.config.reconcile_buckets.max(1);
        let mut report = SyncReport::default();
        for collection in collections {
            let records = self.store.scan(&collection).await?;
            let live: Vec<(String, u64)> = records
                .iter()
                .filter_map(|r| r.server.as_ref())
                .filter(|s| !s.deleted)
                .map(|s| (s.id.clone(), s.version))
                .collect();
            let digests =
                crate::digest::bucket_digests(live.iter().map(|(i, v)| (i.as_str(), *v)), buckets);
            let step1 = ReconcileRequest {
                collection: collection.clone(),
                buckets,
                digests,
                manifest_buckets: vec![],
                manifest: vec![],
            };
            let resp = match self.transport.reconcile(step1).await {
                Ok(r) => r,
                Err(e) => {
                    let r = self
                        .pull_transport_error(e, ErrorCode::ReconcileFailed)
                        .await;
                    report.absorb(r);
                    return Ok(report);
                }
            };
            self.state.lock().await.metrics.reconcile_runs += 1;
            // Step 2, in chunks of whole buckets within the manifest limit.
            let mut by_bucket: BTreeMap<u32, Vec<ManifestEntry>> = BTreeMap::new();
            for (id, version) in &live {
                let b = crate::digest::bucket_of(id, buckets);
                if resp.mismatched.contains(&b) {
                    by_bucket.entry(b).or_default().push(ManifestEntry {
                        id: id.clone(),
                        version: *version,
                    });
                }
            }
            let mut chunks: Vec<(Vec<u32>, Vec<ManifestEntry>)> = Vec::new();
            for b in &resp.mismatched {
                let entries = by_bucket.remove(b).unwrap_or_default();
                match chunks.last_mut() {
                    Some((bs, es)) if es.len() + entries.len() <= self.config.max_manifest => {
                        bs.push(*b);
                        es.extend(entries);
                    }
                    _ => chunks.push((vec![*b], entries)),
                }
            }
            for (manifest_buckets, manifest) in chunks {
                let req = ReconcileRequest {
                    collection: collection.clone(),
                    buckets,
                    digests: vec![],
                    manifest_buckets,
                    manifest,
                };
                let plan = match self.transport.reconcile(req).await {
                    Ok(ReconcileResponse { plan: Some(p), .. }) => p,
                    Ok(_) => continue,
                    Err(e) => {
                        let r = self
                            .pull_transport_error(e, ErrorCode::ReconcileFailed)
                            .await;
                        report.absorb(r);
                        return Ok(report);
                    }
                };
                let r = self.apply_plan(&collection, plan).await?;
                report.absorb(r);
            }
        }
        Ok(report)
    }

    pub(super) async fn apply_plan(
        &self,
        collection: &str,
        plan: ReconcilePlan,
    ) -> Result<SyncReport, EngineError> {
        let mut st = self.lock_fresh().await?;
        let now = self.env.now_ms();
        let mut tx = Txn::default();
        for (action, states) in [("missing", plan.missing), ("stale", plan.stale)] {
            for s in states {
                let key = s.key();
                if self
                    .apply_server_state(&mut st, &mut tx, s, true, now)
                    .await?
                {
                    tx.report.pulled += 1;
                    tx.audit(
                        None,
                        &key,
                        AuditEvent::Reconciled {
                            action: action.into(),
                        },
                    );
                }
            }
        }
        for id in plan.extra {
            let key = EntityKey::new(collection, id);
            let mut rec = tx.record(&self.store, &key).await?;
            if rec.server.is_none() {
                continue;
            }
            rec.server = None;
            tx.put_record(rec);
            tx.report.pulled += 1;
            tx.audit(
                None,
                &key,
                AuditEvent::Reconciled {
                    action: "extra".into(),
                },
            );
        }
        self.finish(&mut st, tx).await
    }
}
