//! What the engine tells the app: status for the always-visible sync pill,
//! change and alert events, and metrics.

use crate::error_code::ErrorCode;
use crate::protocol::{EntityKey, OpId};
use crate::store::LocalEntity;
use serde::{Deserialize, Serialize};

/// The pill's headline state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing to do, last exchange succeeded.
    Idle,
    /// Pushing or pulling now.
    Syncing,
    /// The server cannot be reached; work continues locally.
    Offline,
    /// The last exchange failed with `last_error`.
    Error,
}

/// Everything the sync pill and the sync center show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Headline.
    pub phase: Phase,
    /// Mutations waiting to be sent (dead letters excluded).
    pub pending: usize,
    /// `pending` per collection (collections with none are absent): an app
    /// can count the user's own changes apart from, say, its telemetry.
    #[serde(default)]
    pub pending_by_collection: std::collections::BTreeMap<String, usize>,
    /// Open conflicts.
    pub conflicts: usize,
    /// Dead letters waiting for a person.
    pub dead_letters: usize,
    /// Mutations held for review, waiting for a person to release or
    /// discard them (neither pending nor dead letters).
    #[serde(default)]
    pub held: usize,
    /// The last error, if the last exchange failed.
    pub last_error: Option<(ErrorCode, String)>,
    /// The snapshot is missing or older than the staleness limit
    /// (`OFFLINE_PRIMER_STALE`).
    pub stale: bool,
    /// Last successful exchange (ms).
    pub last_sync_at: Option<u64>,
    /// How long since the last successful exchange (ms): the drift age.
    pub drift_age_ms: Option<u64>,
    /// A first snapshot has been applied completely (the local copy can
    /// answer for the whole branch; see `waitForFirstSync`).
    pub first_sync_done: bool,
}

impl Status {
    /// The code the pill shows: the last error's, else `OFFLINE_PRIMER_STALE`
    /// when the local copy is stale, else none.
    pub fn code(&self) -> Option<ErrorCode> {
        self.last_error
            .as_ref()
            .map(|(c, _)| *c)
            .or(self.stale.then_some(ErrorCode::OfflinePrimerStale))
    }
}

/// Counters since the engine was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Local mutations queued.
    pub queued: u64,
    /// Mutations acknowledged as applied (or duplicate).
    pub synced: u64,
    /// Delivery retries scheduled.
    pub retries: u64,
    /// Conflicts met (auto-resolved or opened).
    pub conflicts: u64,
    /// Mutations moved to the dead-letter queue.
    pub dead_letters: u64,
    /// Reconcile runs.
    pub reconcile_runs: u64,
    /// Delta (changes) pages pulled.
    pub delta_runs: u64,
    /// Snapshot pages pulled.
    pub snapshot_pages: u64,
    /// Push requests sent.
    pub push_requests: u64,
    /// Latency of the last push request (ms).
    pub last_push_latency_ms: u64,
}

/// Something the app may want to react to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The local view of an entity changed (`entity` absent: it is gone).
    Changed {
        /// Which entity.
        key: EntityKey,
        /// The new view (deleted ones included, with `deleted: true`).
        entity: Option<LocalEntity>,
    },
    /// Several entities of one collection changed in one commit (a pulled
    /// page, a bulk retry): one event with their ids, in order, and no
    /// views; read them with `get` or `query`. A commit that changes one
    /// entity of a collection sends [`Event::Changed`] instead.
    Changes {
        /// The collection.
        collection: String,
        /// The ids whose local view changed (gone ones included).
        ids: Vec<String>,
    },
    /// The status changed.
    Status {
        /// The new status.
        status: Status,
    },
    /// A person must act: a dead letter or a conflict.
    Alert {
        /// Why.
        code: ErrorCode,
        /// Which entity.
        key: EntityKey,
        /// Which mutation.
        op_id: Option<OpId>,
        /// Detail.
        message: String,
    },
}

/// Which events a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Filter {
    /// Everything.
    All,
    /// Changes of one collection, plus status and alerts.
    Collection {
        /// The collection.
        collection: String,
    },
    /// Changes of one entity, plus status and alerts.
    Entity {
        /// The entity.
        key: EntityKey,
    },
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        match (self, event) {
            (Filter::All, _) => true,
            (Filter::Collection { collection }, Event::Changed { key, .. }) => {
                &key.collection == collection
            }
            (Filter::Entity { key: want }, Event::Changed { key, .. }) => want == key,
            (Filter::Collection { collection: want }, Event::Changes { collection, .. }) => {
                want == collection
            }
            (Filter::Entity { key: want }, Event::Changes { collection, ids }) => {
                &want.collection == collection && ids.contains(&want.id)
            }
            (_, Event::Status { .. } | Event::Alert { .. }) => true,
        }
    }
}
