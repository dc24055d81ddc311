//! Whole-request failures of the sync service.

use std::fmt;

use tidesync::{ErrorBody, ErrorCode};

use crate::storage::StorageError;

/// A request that failed as a whole (as opposed to one mutation of a push
/// being rejected, which is an [`tidesync::AckResult::Rejected`] ack).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong, for the client; names the field for validation
    /// errors. Never holds payload data or secrets.
    pub message: String,
    /// Internal detail for server logs only (e.g. the storage backend's own
    /// error text, which may quote stored values); never sent to clients.
    pub detail: Option<String>,
}

impl ServiceError {
    /// An error from its parts.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// An `EVENT_INVALID` error about `field`.
    pub fn invalid(field: &str, message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::EventInvalid, format!("{field}: {message}"))
    }

    /// The HTTP status this error maps to.
    pub fn http_status(&self) -> u16 {
        match self.code {
            ErrorCode::EventInvalid => 400,
            ErrorCode::SyncUnauthorized => 401,
            ErrorCode::SyncForbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::EventInFlight | ErrorCode::Conflict | ErrorCode::AlreadyExists => 409,
            ErrorCode::ManifestTooLarge | ErrorCode::PayloadTooLarge => 413,
            // The IETF Idempotency-Key draft: a key reused with another payload.
            ErrorCode::EventDuplicate
            | ErrorCode::PolicyViolation
            | ErrorCode::SchemaUnsupported => 422,
            ErrorCode::SyncRateLimited => 429,
            ErrorCode::CursorUnknown => 410,
            _ => 500,
        }
    }

    /// The response body (without [`ServiceError::detail`]).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl From<StorageError> for ServiceError {
    fn from(err: StorageError) -> Self {
        ServiceError {
            code: err.code(),
            message: "storage failed; nothing of the failed operation was committed".into(),
            detail: Some(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let status = |code| ServiceError::new(code, "x").http_status();
        assert_eq!(status(ErrorCode::EventInvalid), 400);
        assert_eq!(status(ErrorCode::SyncUnauthorized), 401);
        assert_eq!(status(ErrorCode::SyncForbidden), 403);
        assert_eq!(status(ErrorCode::EventDuplicate), 422);
        assert_eq!(status(ErrorCode::EventInFlight), 409);
        assert_eq!(status(ErrorCode::ManifestTooLarge), 413);
        assert_eq!(status(ErrorCode::PayloadTooLarge), 413);
        assert_eq!(status(ErrorCode::PolicyViolation), 422);
        assert_eq!(status(ErrorCode::SyncRateLimited), 429);
        assert_eq!(status(ErrorCode::StorageFailed), 500);
    }

    #[test]
    fn storage_errors_become_storage_failed() {
        let e: ServiceError = StorageError::Corrupt("row 3".into()).into();
        assert_eq!(e.code, ErrorCode::StorageFailed);
        assert!(
            !e.message.contains("row 3"),
            "backend text stays out of the body"
        );
        assert!(e.detail.as_deref().unwrap().contains("row 3"));
        assert!(!e.body().message.contains("row 3"));
        assert_eq!(e.http_status(), 500);
    }
}
