//! What makes a mutation valid: envelope limits and field checks, applied by
//! the client before a write is accepted and by the server on receipt.

use super::*;
use crate::error_code::ErrorCode;
use std::fmt;

/// Limits a mutation must respect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest collection name.
    pub max_collection_len: usize,
    /// Longest entity id.
    pub max_id_len: usize,
    /// Largest serialized payload, in bytes.
    pub max_payload_bytes: usize,
    /// Schema versions accepted: `min..=max`.
    pub schema_versions: (u32, u32),
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_collection_len: 64,
            max_id_len: 128,
            max_payload_bytes: 64 * 1024,
            schema_versions: (1, 1),
        }
    }
}

fn invalid(field: &str, message: impl fmt::Display) -> ApplyError {
    ApplyError {
        code: ErrorCode::EventInvalid,
        message: format!("{field}: {message}"),
    }
}

/// Whether a collection name is well formed: `[a-z0-9_-]`, starting with a letter.
pub fn valid_collection_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks a mutation envelope: every field well formed, the payload present
/// exactly where its kind needs one, the checksum right and the schema
/// version supported. The error message names the offending field.
pub fn validate_mutation(m: &Mutation, limits: &Limits) -> Result<(), ApplyError> {
    if !m.op_id.is_valid() {
        return Err(invalid("op_id", "must be a 26-character ULID"));
    }
    for (field, value) in [
        ("client_id", &m.client_id),
        ("terminal_id", &m.terminal_id),
        ("branch_id", &m.branch_id),
    ] {
        if value.is_empty() || value.len() > 128 {
            return Err(invalid(field, "must be 1 to 128 bytes (UTF-8)"));
        }
    }
    if !valid_collection_name(&m.collection, limits.max_collection_len) {
        return Err(invalid(
            "collection",
            format_args!(
                "must be 1 to {} bytes of [a-z0-9_-], starting with a letter",
                limits.max_collection_len
            ),
        ));
    }
    if m.entity_id.is_empty()
        || m.entity_id.len() > limits.max_id_len
        || m.entity_id.chars().any(char::is_control)
    {
        return Err(invalid(
            "entity_id",
            format_args!(
                "must be 1 to {} bytes (UTF-8) without control characters",
                limits.max_id_len
            ),
        ));
    }
    match (m.kind, &m.payload) {
        (MutationKind::Delete, Some(_)) => {
            return Err(invalid("payload", "must be absent for delete"))
        }
        (MutationKind::Delete, None) => {}
        (_, None) => return Err(invalid("payload", "is required for this kind")),
        (_, Some(p)) => {
            let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > limits.max_payload_bytes {
                return Err(ApplyError {
                    code: ErrorCode::PayloadTooLarge,
                    message: format!(
                        "payload: {size} bytes exceeds the limit of {}",
                        limits.max_payload_bytes
                    ),
                });
            }
        }
    }
    let (lo, hi) = limits.schema_versions;
    if m.schema_version < lo || m.schema_version > hi {
        return Err(ApplyError {
            code: ErrorCode::SchemaUnsupported,
            message: format!(
                "schema_version: {} is outside the supported range {lo}..={hi}",
                m.schema_version
            ),
        });
    }
    if let Some(a) = &m.anomaly {
        if !a.score.is_finite() || a.score < 0.0 {
            return Err(invalid(
                "anomaly.score",
                "must be a finite number, at least 0",
            ));
        }
        if !valid_model_id(&a.model) {
            return Err(invalid(
                "anomaly.model",
                "must be 1 to 64 characters of [0-9a-f]",
            ));
        }
    }
    let expected = payload_checksum(&m.collection, &m.entity_id, m.kind, m.payload.as_ref());
    if m.checksum != expected {
        return Err(invalid("checksum", "does not match the canonical payload"));
    }
    Ok(())
}

/// A model id of an anomaly score: 1 to 64 characters of `[0-9a-f]` (a
/// prefix of the model file's SHA-256).
pub fn valid_model_id(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 64
        && model
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
