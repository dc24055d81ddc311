//! Terminal credentials as stored: in the same database as the data, and
//! only as key hashes (`crate::auth` makes and checks the keys). Pairing
//! codes too: one-time codes redeemed for a new credential.

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

impl Credential {
    /// What the key was issued for, as `GET /v1/whoami` and `POST /v1/pair`
    /// answer it (never the key or its hash).
    pub fn identity(&self) -> tidesync::protocol::KeyIdentity {
        tidesync::protocol::KeyIdentity {
            tenant: self.context.tenant.clone(),
            branch: self.context.branch.clone(),
            terminal: self.context.terminal.clone(),
            key_id: self.key_id.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// A stored pairing code (never the code itself): redeemed once
/// (`POST /v1/pair`) for a new key of its terminal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingCode {
    /// The public id of the code (safe to log).
    pub code_id: String,
    /// SHA-256 of the whole code, hex.
    pub code_hash: String,
    /// The terminal a redeemed code makes a key for.
    pub context: TerminalContext,
    /// When it was issued (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// From then on it is worth nothing.
    pub expires_at_ms: u64,
    /// When it was redeemed, if it was (then it is worth nothing).
    pub redeemed_at_ms: Option<u64>,
}

/// Why a pairing code was not redeemed (all are 401 `SYNC_UNAUTHORIZED`
/// with one generic message; the reason goes to the log only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairFailure {
    /// Not the shape of a code this server issues (no storage work).
    Malformed,
    /// No such code.
    Unknown,
    /// Redeemed already.
    Used,
    /// Past its expiry.
    Expired,
}

impl PairFailure {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PairFailure::Malformed => "malformed",
            PairFailure::Unknown => "unknown",
            PairFailure::Used => "used",
            PairFailure::Expired => "expired",
        }
    }
}

/// Makes the credential a redeemed code is exchanged for, given the code's
/// terminal (called inside the redeeming transaction, possibly again if a
/// backend retries it).
pub type MakeCredential<'a> = dyn FnMut(&TerminalContext) -> Result<Credential, StorageError> + 'a;

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
    /// Stores a new pairing code.
    fn put_pairing_code(&self, code: &PairingCode) -> Result<(), StorageError>;
    /// Redeems the code stored under `code_hash` at `now_ms`, in **one
    /// transaction**: only if it exists, is not redeemed and has not
    /// expired (`now_ms < expires_at_ms`), it is marked redeemed and the
    /// credential `make` gives for its terminal is stored. Of two
    /// concurrent redeems of one code exactly one succeeds. Nothing is
    /// written when it fails.
    fn redeem_pairing_code(
        &self,
        code_hash: &str,
        now_ms: u64,
        make: &mut MakeCredential<'_>,
    ) -> Result<Result<Credential, PairFailure>, StorageError>;
}
