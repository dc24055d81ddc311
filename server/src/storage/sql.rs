//! What the SQL backends (SQLite and PostgreSQL) share: how values map onto
//! columns. Both keep entity states, changes and audit rows as the JSON of
//! the protocol types, and counters (versions, cursors, times) as signed
//! 64-bit integers.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StorageError;

/// The JSON text a protocol value is stored as.
pub(crate) fn encode_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialising protocol types cannot fail")
}

/// A protocol value read back from its JSON column; a row that does not
/// decode is [`StorageError::Corrupt`].
pub(crate) fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// A counter as an SQL integer (saturating: no counter comes near `i64::MAX`).
pub(crate) fn to_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A counter read back from an SQL integer (a negative value reads as 0).
pub(crate) fn from_sql_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
