//! Who is calling: what a terminal credential grants.

use serde::{Deserialize, Serialize};

use crate::storage::Partition;

/// The identity a verified terminal credential grants: one terminal of one
/// branch of one tenant. The service scopes every read and write to
/// [`TerminalContext::partition`]; a terminal never sees another partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TerminalContext {
    /// The tenant.
    pub tenant: String,
    /// The branch the terminal belongs to.
    pub branch: String,
    /// The terminal id.
    pub terminal: String,
}

impl TerminalContext {
    /// A context from its parts.
    pub fn new(
        tenant: impl Into<String>,
        branch: impl Into<String>,
        terminal: impl Into<String>,
    ) -> Self {
        TerminalContext {
            tenant: tenant.into(),
            branch: branch.into(),
            terminal: terminal.into(),
        }
    }

    /// The partition the terminal reads and writes.
    pub fn partition(&self) -> Partition {
        Partition::new(&self.tenant, &self.branch)
    }
}
