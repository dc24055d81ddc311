//! Schema migrations of queued mutations.
//!
//! When an app update raises the payload schema version, mutations still in
//! the outbox (or held in open conflicts) were written in the old shape. Each
//! [`QueuedMigration`] step carries them one version forward: it rewrites the
//! payload to the new shape, keeps it as it is, or holds the mutation as a
//! dead letter with a code for a person to look at. A queued mutation is
//! never dropped, and never resent in an old shape without a person's say.
//! Each step commits in its own store batch, together with the new schema
//! version of the store.

use crate::error_code::ErrorCode;
use crate::protocol::{Fields, Mutation};
use crate::{SendOutsideWasm, SyncOutsideWasm};

/// What a migration step does with one queued mutation.
#[derive(Clone, Debug, PartialEq)]
pub enum MigrationOutcome {
    /// The payload is valid in the new schema as it is.
    Keep,
    /// Replace the payload (`None` only for deletes).
    Rewrite(Option<Fields>),
    /// Cannot be carried forward: hold it as a dead letter.
    Hold {
        /// Stable code shown in the sync center.
        code: ErrorCode,
        /// Why (no payload data).
        message: String,
    },
}

/// One step, from `upgrades_from()` to `upgrades_from() + 1`.
pub trait QueuedMigration: SendOutsideWasm + SyncOutsideWasm {
    /// The schema version this step upgrades from.
    fn upgrades_from(&self) -> u32;
    /// Decides the fate of one queued mutation written at `upgrades_from()`.
    fn migrate(&self, mutation: &Mutation) -> MigrationOutcome;
}
