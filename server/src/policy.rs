//! What the server enforces per collection.

use serde::{Deserialize, Serialize};

/// How the server treats terminal writes to a collection.
///
/// The client-side conflict policies (`last-write-wins`, `merge-three-way`,
/// `manual-resolve`, `server-wins`) all look the same on the server: it
/// applies a mutation made against the current version and answers a
/// conflict otherwise; the client resolves. Only two collection kinds need
/// different server rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPolicy {
    /// Optimistic concurrency on `base_version`; every mutation kind allowed.
    #[default]
    Versioned,
    /// Insert-only records deduplicated by id (e.g. sales): only `append` is
    /// accepted, `base_version` is ignored, a second insert of an id is a
    /// duplicate (same fields) or rejected (different fields), never an update.
    AppendOnly,
    /// Owned by the cloud (e.g. a catalog): terminals cannot write at all;
    /// data comes in through the admin API.
    ReadOnly,
}
