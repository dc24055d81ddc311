//! How an engine is set up.

use crate::policy::ConflictPolicy;
use crate::protocol::Limits;
use crate::retry::RetryPolicy;
use crate::rules::Rules;
use crate::scoring::ReviewPolicy;
use crate::throttle::ThrottleConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How an engine is set up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// This installation's id (kept in the store after the first open).
    pub client_id: String,
    /// The terminal the credentials belong to.
    pub terminal_id: String,
    /// The terminal's branch.
    pub branch_id: String,
    /// Schema version of the payloads this build writes.
    pub schema_version: u32,
    /// Conflict policy per collection.
    pub policies: BTreeMap<String, ConflictPolicy>,
    /// Policy of collections not listed.
    pub default_policy: ConflictPolicy,
    /// Delivery retries.
    pub retry: RetryPolicy,
    /// Push sizing.
    pub throttle: ThrottleConfig,
    /// Envelope limits (checked before a write is accepted).
    pub limits: Limits,
    /// A local copy not brought up to date for this long is stale (ms).
    pub stale_after_ms: u64,
    /// Snapshot page size.
    pub snapshot_page: u32,
    /// Changes page size.
    pub changes_page: u32,
    /// Most pages pulled in one [`Engine::pull`].
    pub max_pull_pages: usize,
    /// Reconcile buckets.
    pub reconcile_buckets: u32,
    /// Most manifest entries per reconcile request.
    pub max_manifest: usize,
    /// Most push rounds in one [`Engine::sync_now`].
    pub max_push_rounds: usize,
    /// The server's rules file: a write it would refuse is refused before it
    /// is queued (empty: the server's verdict comes back as a dead letter).
    /// An `append_only` collection without a policy here is append-only.
    #[serde(default)]
    pub rules: Rules,
    /// What a collection does with a write its scorer flags (absent:
    /// [`ReviewPolicy::Record`]).
    #[serde(default)]
    pub review: BTreeMap<String, ReviewPolicy>,
}

impl EngineConfig {
    /// Defaults for a terminal.
    pub fn new(
        client_id: impl Into<String>,
        terminal_id: impl Into<String>,
        branch_id: impl Into<String>,
    ) -> Self {
        EngineConfig {
            client_id: client_id.into(),
            terminal_id: terminal_id.into(),
            branch_id: branch_id.into(),
            schema_version: 1,
            policies: BTreeMap::new(),
            default_policy: ConflictPolicy::LastWriteWins,
            retry: RetryPolicy::default(),
            throttle: ThrottleConfig::default(),
            limits: Limits::default(),
            stale_after_ms: 24 * 3600 * 1000,
            snapshot_page: 1000,
            changes_page: 500,
            max_pull_pages: 100,
            reconcile_buckets: 64,
            max_manifest: 5000,
            max_push_rounds: 50,
            rules: Rules::new(),
            review: BTreeMap::new(),
        }
    }

    /// The owner this configuration opens a store as.
    pub fn owner(&self) -> crate::store::StoreOwner {
        crate::store::StoreOwner {
            terminal_id: self.terminal_id.clone(),
            branch_id: self.branch_id.clone(),
        }
    }

    /// Checks writes against the server's rules file before queueing them.
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Declares a collection's policy.
    pub fn with_policy(mut self, collection: impl Into<String>, policy: ConflictPolicy) -> Self {
        self.policies.insert(collection.into(), policy);
        self
    }
}
