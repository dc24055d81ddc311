//! Counters of what the service did.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tidesync::{AckResult, ErrorCode};

/// A point-in-time copy of the service's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMetrics {
    /// Mutations applied (synced).
    pub applied: u64,
    /// Mutations answered as duplicates (replays, append-only dedupe).
    pub duplicates: u64,
    /// Mutations answered with a conflict.
    pub conflicts: u64,
    /// Mutations rejected, by code.
    pub rejected: BTreeMap<ErrorCode, u64>,
    /// Changes pages served (delta runs).
    pub delta_runs: u64,
    /// Snapshot pages served.
    pub snapshot_pages: u64,
    /// Reconcile requests answered.
    pub reconcile_runs: u64,
    /// Requests that failed because storage failed.
    pub storage_failures: u64,
}

impl ServiceMetrics {
    /// All rejections, whatever the code.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// The live counters (atomics, shared by all requests).
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    applied: AtomicU64,
    duplicates: AtomicU64,
    conflicts: AtomicU64,
    rejected: Mutex<BTreeMap<ErrorCode, u64>>,
    pub(crate) delta_runs: AtomicU64,
    pub(crate) snapshot_pages: AtomicU64,
    pub(crate) reconcile_runs: AtomicU64,
    pub(crate) storage_failures: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    pub(crate) fn ack(&self, result: &AckResult) {
        match result {
            AckResult::Applied { .. } => bump(&self.applied),
            AckResult::Duplicate { .. } => bump(&self.duplicates),
            AckResult::Conflict { .. } => bump(&self.conflicts),
            AckResult::Rejected { code, .. } => {
                let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
                *map.entry(*code).or_default() += 1;
            }
        }
    }

    pub(crate) fn snapshot(&self) -> ServiceMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServiceMetrics {
            applied: get(&self.applied),
            duplicates: get(&self.duplicates),
            conflicts: get(&self.conflicts),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            delta_runs: get(&self.delta_runs),
            snapshot_pages: get(&self.snapshot_pages),
            reconcile_runs: get(&self.reconcile_runs),
            storage_failures: get(&self.storage_failures),
        }
    }
}
