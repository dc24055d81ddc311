//! Decoding JSON input (request bodies, the rules file) into typed values,
//! with errors that name the offending field.

use serde::de::DeserializeOwned;

use crate::error::ServiceError;

/// Decodes one JSON value that must fill `bytes` entirely (whitespace aside):
/// anything after it (`{…}xx`, a second value) is refused, never ignored.
///
/// The error is `EVENT_INVALID`, and its message starts with the path of the
/// offending field (`mutations[0].kind: unknown variant …`) when the JSON is
/// well formed but a value is wrong, or with `body` when the JSON itself is
/// malformed, truncated or followed by trailing bytes.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // A syntax error has no reliable path (serde_path_to_error shows the
        // parts it could not follow as `?`): it is about the body as a whole.
        let field = if e.inner().is_data() && path != "." && !path.contains('?') {
            path.as_str()
        } else {
            "body"
        };
        ServiceError::invalid(field, e.inner())
    })?;
    de.end()
        .map_err(|e| ServiceError::invalid("body", format_args!("{e} after the JSON value")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidesync::PushRequest;

    fn message(bytes: &[u8]) -> String {
        decode_json::<PushRequest>(bytes).unwrap_err().message
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let ok = br#"{"protocol":1,"mutations":[]}"#;
        assert!(decode_json::<PushRequest>(ok).is_ok());
        assert!(decode_json::<PushRequest>(b" {\"protocol\":1,\"mutations\":[]} \n").is_ok());
        for tail in [&b"xx"[..], b"{}", b"0", b"\x00"] {
            let body = [&ok[..], tail].concat();
            let m = message(&body);
            assert!(m.starts_with("body: trailing characters"), "{m}");
        }
    }

    #[test]
    fn messages_start_with_a_field_path_or_body() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"protocol":1,"mutations":[{"op_id":"#, "body: "),
            (br#"{"protocol":1,"mutations":[{]}"#, "body: "),
            (b"", "body: "),
            (b"[1,2", "body: "),
            (br#"{"protocol":"one","mutations":[]}"#, "protocol: "),
            (
                br#"{"protocol":1,"mutations":[{"kind":"explode"}]}"#,
                "mutations[0].kind: ",
            ),
        ];
        for (body, prefix) in cases {
            let m = message(body);
            assert!(m.starts_with(prefix), "{m:?} should start with {prefix:?}");
            assert!(!m.contains("?:"), "{m}");
        }
    }
}
