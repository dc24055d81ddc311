//! Decoding JSON input (request bodies, the rules file) into typed values,
//! with errors that name the offending field.

use serde::de::DeserializeOwned;

use crate::error::ServiceError;

/// Decodes JSON. The error is `EVENT_INVALID` and its message starts with
/// the path of the offending field (`mutations[0].kind: unknown variant …`),
/// or `body` when the JSON itself is malformed.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body" } else { path.as_str() };
        ServiceError::invalid(field, e.inner())
    })?;
    Ok(value)
}
