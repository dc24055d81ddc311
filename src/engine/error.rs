//! The engine's error: a store failure keeps its kind, so a host can tell a
//! vanished database from a refused call without parsing messages.

use crate::error_code::ErrorCode;
use crate::protocol::ApplyError;
use crate::store::StoreError;

/// An error from the engine, with a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The local store failed (gone, full, corrupt, wrong key); nothing of
    /// the call was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine refused the call: invalid input, a policy, or the entity's
    /// state. Nothing changed.
    #[error("{code}: {message}")]
    Rejected {
        /// Stable code.
        code: ErrorCode,
        /// Detail; never payload data.
        message: String,
    },
}

impl EngineError {
    /// A refusal with a stable code.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError::Rejected {
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Store(e) => e.code(),
            EngineError::Rejected { code, .. } => *code,
        }
    }

    /// The detail, without the code; never payload data.
    pub fn message(&self) -> String {
        match self {
            EngineError::Store(e) => e.to_string(),
            EngineError::Rejected { message, .. } => message.clone(),
        }
    }

    /// The store failure behind this error, if it is one.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            EngineError::Store(e) => Some(e),
            EngineError::Rejected { .. } => None,
        }
    }
}

impl From<ApplyError> for EngineError {
    fn from(e: ApplyError) -> Self {
        EngineError::rejected(e.code, e.message)
    }
}
