//! Per-collection rules: which writes terminals may make to a collection
//! (`access`), and which fields its payloads may, must and must not carry.
//! One validator, here, serves both ends: the server checks every terminal
//! write with it (after the envelope checks, before storage), and an engine
//! given the same rules file refuses a write the server would refuse at
//! once, before it is queued. A broken field rule is `EVENT_INVALID` with a
//! message naming the field (`payload.status: …`); a write the collection's
//! access forbids is `POLICY_VIOLATION`.
//!
//! The rules file (`tidesync-server serve --rules`) has one entry per
//! collection:
//!
//! ```json
//! {"rooms": {"fields": {
//!     "status": {"type": "string", "required": true,
//!                "enum": ["clean", "dirty", "inspected", "out_of_order", "occupied"]},
//!     "floor":  {"type": "integer", "min": 0, "max": 200},
//!     "note":   {"type": "string", "max_len": 500}},
//!   "additional_fields": true},
//!  "sales": {"access": "append_only"},
//!  "catalog": {"access": "read_only"}}
//! ```
//!
//! `create` and `append` payloads are whole entities: required fields must
//! be there. A `patch` is a merge patch: only the fields it carries are
//! checked, and it may not remove (`null`) a required field. Only top-level
//! fields are checked.

use std::collections::BTreeMap;

use crate::error_code::ErrorCode;
use crate::protocol::{ApplyError, Fields, MutationKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The rules of every collection that has some, by name; a collection not
/// listed accepts any write.
pub type Rules = BTreeMap<String, CollectionRules>;

/// Which writes terminals may make to a collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionAccess {
    /// Every kind of write (the default).
    #[default]
    ReadWrite,
    /// Only `append`: insert-only records (e.g. sales).
    AppendOnly,
    /// None: the collection is owned by the cloud (e.g. a catalog).
    ReadOnly,
}

impl CollectionAccess {
    /// Whether a write of `kind` to `collection` is allowed; the error is
    /// `POLICY_VIOLATION` and names the collection.
    pub fn check(self, collection: &str, kind: MutationKind) -> Result<(), ApplyError> {
        let message = match self {
            CollectionAccess::ReadWrite => return Ok(()),
            CollectionAccess::ReadOnly => {
                format!("collection: {collection} is read-only for terminals")
            }
            CollectionAccess::AppendOnly if kind == MutationKind::Append => return Ok(()),
            CollectionAccess::AppendOnly => {
                format!("kind: collection {collection} is append-only, only append is accepted")
            }
        };
        Err(ApplyError {
            code: ErrorCode::PolicyViolation,
            message,
        })
    }
}

/// The JSON type a field must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A string.
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl FieldType {
    fn matches(self, v: &Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Number => v.is_number(),
            FieldType::Integer => v.is_i64() || v.is_u64(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Object => v.is_object(),
            FieldType::Array => v.is_array(),
        }
    }
}

/// The rule of one field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The type (absent: any).
    #[serde(default, rename = "type")]
    pub kind: Option<FieldType>,
    /// Must be present in created entities and cannot be removed by a patch.
    #[serde(default)]
    pub required: bool,
    /// Allowed values (absent or empty: any).
    #[serde(default, rename = "enum")]
    pub one_of: Vec<Value>,
    /// Longest string, in characters.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Smallest number.
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest number.
    #[serde(default)]
    pub max: Option<i64>,
}

fn yes() -> bool {
    true
}

/// The rules of one collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionRules {
    /// Rules by field name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldRule>,
    /// Whether fields without a rule are allowed (default true).
    #[serde(default = "yes")]
    pub additional_fields: bool,
    /// Which writes terminals may make (default: all).
    #[serde(default)]
    pub access: CollectionAccess,
}

impl Default for CollectionRules {
    fn default() -> Self {
        CollectionRules {
            fields: BTreeMap::new(),
            additional_fields: true,
            access: CollectionAccess::ReadWrite,
        }
    }
}

impl CollectionRules {
    /// Checks a write of `kind` with `payload` to `collection`: its access
    /// first (`POLICY_VIOLATION`), then its fields (`EVENT_INVALID`, naming
    /// the field).
    pub fn check_write(
        &self,
        collection: &str,
        kind: MutationKind,
        payload: Option<&Fields>,
    ) -> Result<(), ApplyError> {
        self.access.check(collection, kind)?;
        self.check(kind, payload).map_err(|message| ApplyError {
            code: ErrorCode::EventInvalid,
            message,
        })
    }

    /// Checks a mutation's payload; the error message names the field.
    pub fn check(&self, kind: MutationKind, payload: Option<&Fields>) -> Result<(), String> {
        let Some(payload) = payload else {
            return Ok(()); // delete
        };
        let whole = matches!(kind, MutationKind::Create | MutationKind::Append);
        if whole {
            if let Some((name, _)) = self
                .fields
                .iter()
                .find(|(name, r)| r.required && !payload.contains_key(*name))
            {
                return Err(format!("payload.{name}: is required"));
            }
        }
        for (name, value) in payload {
            let Some(rule) = self.fields.get(name) else {
                if self.additional_fields {
                    continue;
                }
                return Err(format!("payload.{name}: is not a field of this collection"));
            };
            if value.is_null() && !whole {
                if rule.required {
                    return Err(format!("payload.{name}: is required and cannot be removed"));
                }
                continue;
            }
            rule.check(value)
                .map_err(|m| format!("payload.{name}: {m}"))?;
        }
        Ok(())
    }
}

impl FieldRule {
    fn check(&self, v: &Value) -> Result<(), String> {
        if let Some(t) = self.kind {
            if !t.matches(v) {
                let t = serde_json::to_value(t).unwrap_or_default();
                return Err(format!("must be of type {}", t.as_str().unwrap_or("?")));
            }
        }
        if !self.one_of.is_empty() && !self.one_of.contains(v) {
            let allowed: Vec<String> = self.one_of.iter().map(Value::to_string).collect();
            return Err(format!("must be one of {}", allowed.join(", ")));
        }
        if let (Some(max), Some(s)) = (self.max_len, v.as_str()) {
            if s.chars().count() > max {
                return Err(format!("must be at most {max} characters"));
            }
        }
        if let Some(n) = v.as_f64() {
            if self.min.is_some_and(|min| n < min as f64) {
                return Err(format!("must be at least {}", self.min.unwrap_or(0)));
            }
            if self.max.is_some_and(|max| n > max as f64) {
                return Err(format!("must be at most {}", self.max.unwrap_or(0)));
            }
        }
        Ok(())
    }
}

/// Checks a write against `rules`: a collection without rules accepts it.
pub fn check_write(
    rules: &Rules,
    collection: &str,
    kind: MutationKind,
    payload: Option<&Fields>,
) -> Result<(), ApplyError> {
    match rules.get(collection) {
        Some(r) => r.check_write(collection, kind, payload),
        None => Ok(()),
    }
}

/// Parses a rules file: `{collection: CollectionRules}`. An unknown key is
/// an error naming it.
pub fn parse_rules(json: &str) -> Result<Rules, String> {
    serde_json::from_str(json).map_err(|e| format!("rules: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> CollectionRules {
        let all = parse_rules(
            r#"{"rooms": {"fields": {
                "status": {"type": "string", "required": true, "enum": ["clean", "dirty"]},
                "floor": {"type": "integer", "min": 0, "max": 9},
                "note": {"type": "string", "max_len": 3}},
              "additional_fields": false}}"#,
        )
        .unwrap();
        all["rooms"].clone()
    }

    fn p(v: Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn whole_payloads_need_required_fields_and_valid_values() {
        let r = rules();
        let check = |v| r.check(MutationKind::Create, Some(&p(v)));
        assert_eq!(check(json!({"status": "clean", "floor": 2})), Ok(()));
        assert_eq!(
            check(json!({"floor": 2})).unwrap_err(),
            "payload.status: is required"
        );
        assert!(check(json!({"status": "burnt"}))
            .unwrap_err()
            .starts_with("payload.status: must be one of"));
        assert_eq!(
            check(json!({"status": "clean", "floor": 2.5})).unwrap_err(),
            "payload.floor: must be of type integer"
        );
        assert_eq!(
            check(json!({"status": "clean", "floor": 10})).unwrap_err(),
            "payload.floor: must be at most 9"
        );
        assert_eq!(
            check(json!({"status": "clean", "note": "long"})).unwrap_err(),
            "payload.note: must be at most 3 characters"
        );
        assert_eq!(
            check(json!({"status": "clean", "x": 1})).unwrap_err(),
            "payload.x: is not a field of this collection"
        );
        assert_eq!(
            check(json!({"status": null})).unwrap_err(),
            "payload.status: must be of type string"
        );
    }

    #[test]
    fn patches_check_only_what_they_carry_and_keep_required_fields() {
        let r = rules();
        let check = |v| r.check(MutationKind::Patch, Some(&p(v)));
        assert_eq!(check(json!({"floor": 3})), Ok(()));
        assert_eq!(check(json!({"note": null})), Ok(()));
        assert_eq!(
            check(json!({"status": null})).unwrap_err(),
            "payload.status: is required and cannot be removed"
        );
        assert!(r.check(MutationKind::Delete, None).is_ok());
    }

    #[test]
    fn access_allows_only_its_writes() {
        let all = parse_rules(
            r#"{"sales": {"access": "append_only"}, "catalog": {"access": "read_only"},
                "rooms": {"fields": {"status": {"type": "string"}}}}"#,
        )
        .unwrap();
        let fields = p(json!({"status": 1}));
        let check = |c: &str, k| check_write(&all, c, k, Some(&fields));
        assert_eq!(check("sales", MutationKind::Append), Ok(()));
        let err = check("sales", MutationKind::Create).unwrap_err();
        assert_eq!(err.code, ErrorCode::PolicyViolation);
        assert_eq!(
            err.message,
            "kind: collection sales is append-only, only append is accepted"
        );
        for kind in [
            MutationKind::Create,
            MutationKind::Append,
            MutationKind::Delete,
        ] {
            let err = check_write(&all, "catalog", kind, None).unwrap_err();
            assert_eq!(err.code, ErrorCode::PolicyViolation);
            assert_eq!(
                err.message,
                "collection: catalog is read-only for terminals"
            );
        }
        // Access comes before fields; fields are EVENT_INVALID.
        let err = check("rooms", MutationKind::Patch).unwrap_err();
        assert_eq!(err.code, ErrorCode::EventInvalid);
        assert_eq!(err.message, "payload.status: must be of type string");
        assert_eq!(check("elsewhere", MutationKind::Create), Ok(()));
    }

    #[test]
    fn unknown_rule_keys_are_refused() {
        let err = parse_rules(r#"{"rooms": {"fields": {"a": {"typo": 1}}}}"#).unwrap_err();
        assert!(err.contains("typo"), "{err}");
    }
}
