//! Who is calling and what they may touch: the [`TerminalContext`] a
//! credential grants and the [`Partition`] it scopes every read and write to.

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// The unit of isolation: one branch of one tenant. Each partition has its
/// own change log and cursor; a terminal only ever reads and writes its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partition {
    /// The tenant (customer) id.
    pub tenant: String,
    /// The branch (shop, site) id within the tenant.
    pub branch: String,
}

impl Partition {
    /// A partition from its parts.
    pub fn new(tenant: impl Into<String>, branch: impl Into<String>) -> Self {
        Partition {
            tenant: tenant.into(),
            branch: branch.into(),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.branch)
    }
}
