//! The terminal's API key as the store keeps it ([`WriteOp::PutCredential`](super::WriteOp::PutCredential)).

use serde::{Deserialize, Serialize};

/// The terminal's API key, kept in the store as one more record, sealed
/// like every other one (an encrypted store only: a binding never keeps it
/// in a plaintext store). An app that was paired once opens the store
/// without holding the key itself. Engines never write it; the client layer
/// ([`crate::client::settle`]) does, at open. `Debug` does not show the key,
/// and it is wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The API key (a secret).
    pub api_key: String,
    /// What the server said the key was issued for (`GET /v1/whoami`),
    /// when it was asked.
    #[serde(default)]
    pub identity: Option<crate::protocol::KeyIdentity>,
    /// When it was stored (ms since the epoch).
    pub stored_at_ms: u64,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("api_key", &"<secret>")
            .field("identity", &self.identity)
            .field("stored_at_ms", &self.stored_at_ms)
            .finish()
    }
}

impl Drop for StoredCredential {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.api_key.zeroize();
    }
}
