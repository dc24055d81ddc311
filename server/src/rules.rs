//! Per-collection payload rules: which fields a collection's payloads may,
//! must and must not carry, checked on every terminal write (after the
//! envelope checks, before storage). A broken rule is rejected with
//! `EVENT_INVALID` and a message naming the field (`payload.status: …`).
//!
//! Rules are loaded from a JSON file (`--rules`), one entry per collection:
//!
//! ```json
//! {"rooms": {"fields": {
//!     "status": {"type": "string", "required": true,
//!                "enum": ["clean", "dirty", "inspected", "out_of_order", "occupied"]},
//!     "floor":  {"type": "integer", "min": 0, "max": 200},
//!     "note":   {"type": "string", "max_len": 500}},
//!   "additional_fields": true}}
//! ```
//!
//! `create` and `append` payloads are whole entities: required fields must
//! be there. A `patch` is a merge patch: only the fields it carries are
//! checked, and it may not remove (`null`) a required field. Only top-level
//! fields are checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidesync::{Fields, MutationKind};

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
}

impl Default for CollectionRules {
    fn default() -> Self {
        CollectionRules {
            fields: BTreeMap::new(),
            additional_fields: true,
        }
    }
}

impl CollectionRules {
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

/// Parses a rules file: `{collection: CollectionRules}`.
pub fn parse_rules(json: &str) -> Result<BTreeMap<String, CollectionRules>, String> {
    crate::decode::decode_json(json.as_bytes()).map_err(|e| e.message)
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
    fn unknown_rule_keys_are_refused() {
        let err = parse_rules(r#"{"rooms": {"fields": {"a": {"typo": 1}}}}"#).unwrap_err();
        assert!(err.contains("typo"), "{err}");
    }
}
