//! Terminal credentials as stored: in the same database as the data, and
//! only as key hashes (`crate::auth` makes and checks the keys).

use serde::{Deserialize, Serialize};

use super::StorageError;
use crate::context::TerminalContext;

/// A stored credential (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The public id of the key (safe to log).
    pub key_id: String,
    /// SHA-256 of the whole key, hex.
    pub key_hash: String,
    /// What the key grants.
    pub context: TerminalContext,
    /// When it was issued (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it stops being valid, if ever.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<u64>,
}

/// Where credentials are kept (the same database as the data).
pub trait CredentialStore {
    /// Stores a new credential.
    fn put_credential(&self, credential: &Credential) -> Result<(), StorageError>;
    /// The credential with this key hash.
    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError>;
    /// Marks the key `key_id` revoked at `at_ms`; false if no such live key.
    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError>;
    /// Revokes every live key of a terminal; returns how many.
    fn revoke_terminal(&self, context: &TerminalContext, at_ms: u64) -> Result<u64, StorageError>;
}
