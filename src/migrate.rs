//! Schema migrations of queued mutations.
//!
//! When an app update raises the payload schema version, mutations still in
//! the outbox (or held in open conflicts) were written in the old shape. Each
//! [`QueuedMigration`] step carries them one version forward: it rewrites the
//! payload to the new shape, keeps it as it is, or holds the mutation as a
//! dead letter with a code for a person to look at. A queued mutation is
//! never dropped, and never resent in an old shape without a person's say.
//! Each step commits in its own store batch, together with the new schema
//! version of the store.

use crate::error_code::ErrorCode;
use crate::protocol::{Fields, Mutation};
use crate::{SendOutsideWasm, SyncOutsideWasm};

/// What a migration step does with one queued mutation.
#[derive(Clone, Debug, PartialEq)]
pub enum MigrationOutcome {
    /// The payload is valid in the new schema as it is.
    Keep,
    /// Replace the payload (`None` only for deletes).
    Rewrite(Option<Fields>),
    /// Cannot be carried forward: hold it as a dead letter.
    Hold {
        /// Stable code shown in the sync center.
        code: ErrorCode,
        /// Why (no payload data).
        message: String,
    },
}

/// One step, from `upgrades_from()` to `upgrades_from() + 1`.
pub trait QueuedMigration: SendOutsideWasm + SyncOutsideWasm {
    /// The schema version this step upgrades from.
    fn upgrades_from(&self) -> u32;
    /// Decides the fate of one queued mutation written at `upgrades_from()`.
    fn migrate(&self, mutation: &Mutation) -> MigrationOutcome;
}

/// A migration step described as data, so that a JavaScript app (the
/// browser package and the Node addon take a list of these in
/// `open({ schemaVersion, migrations })`) can carry its queued mutations
/// forward without code in the core. Applied to the mutations of
/// `collections` (all when absent) written at schema `from`:
/// 1. a payload holding any field of `hold_if_present` is held as a dead
///    letter (`SCHEMA_UNSUPPORTED`): a person decides;
/// 2. fields are renamed (`rename`: old → new), then `remove`d;
/// 3. a create or append gets each field of `defaults` it lacks.
///
/// A delete, or a payload nothing of this touches, is kept as it is.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMigration {
    /// The schema version this step upgrades from (≥ 1).
    pub from: u32,
    /// The collections it applies to; every collection when absent.
    #[serde(default)]
    pub collections: Option<Vec<String>>,
    /// Fields to rename, old name → new name.
    #[serde(default)]
    pub rename: std::collections::BTreeMap<String, String>,
    /// Fields to drop.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Fields a create or append gets when it lacks them.
    #[serde(default)]
    pub defaults: Fields,
    /// Fields whose presence means the mutation cannot be carried forward.
    #[serde(default)]
    pub hold_if_present: Vec<String>,
}

impl FieldMigration {
    /// Checks a list of steps for a store moving to `schema_version`: each
    /// `from` is at least 1 and below `schema_version`, and appears once; a
    /// rename does not collide with a field it keeps.
    pub fn check_all(steps: &[FieldMigration], schema_version: u32) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in steps.iter().enumerate() {
            if s.from == 0 || s.from >= schema_version {
                return Err(format!(
                    "migrations[{i}].from: {} is not between 1 and schemaVersion - 1 ({})",
                    s.from,
                    schema_version.saturating_sub(1)
                ));
            }
            if !seen.insert(s.from) {
                return Err(format!(
                    "migrations[{i}].from: a second step from version {}",
                    s.from
                ));
            }
            let mut targets = std::collections::BTreeSet::new();
            for (old, new) in &s.rename {
                if old == new || !targets.insert(new) {
                    return Err(format!(
                        "migrations[{i}].rename.{old}: renames onto {new}, which another rename or the field itself uses"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The steps as the engine takes them.
    pub fn boxed(steps: Vec<FieldMigration>) -> Vec<Box<dyn QueuedMigration>> {
        steps
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn QueuedMigration>)
            .collect()
    }
}

impl QueuedMigration for FieldMigration {
    fn upgrades_from(&self) -> u32 {
        self.from
    }

    fn migrate(&self, mutation: &Mutation) -> MigrationOutcome {
        if let Some(cs) = &self.collections {
            if !cs.iter().any(|c| c == &mutation.collection) {
                return MigrationOutcome::Keep;
            }
        }
        let Some(payload) = &mutation.payload else {
            return MigrationOutcome::Keep;
        };
        if let Some(f) = self
            .hold_if_present
            .iter()
            .find(|f| payload.contains_key(*f))
        {
            return MigrationOutcome::Hold {
                code: ErrorCode::SchemaUnsupported,
                message: format!(
                    "field {f} has no place in schema {}: edit and retry, or discard",
                    self.from + 1
                ),
            };
        }
        let mut out = Fields::new();
        for (k, v) in payload {
            let k = self.rename.get(k).unwrap_or(k);
            out.insert(k.clone(), v.clone());
        }
        for f in &self.remove {
            out.remove(f);
        }
        if matches!(
            mutation.kind,
            crate::protocol::MutationKind::Create | crate::protocol::MutationKind::Append
        ) {
            for (k, v) in &self.defaults {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if &out == payload {
            MigrationOutcome::Keep
        } else {
            MigrationOutcome::Rewrite(Some(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MutationKind;
    use serde_json::json;

    fn mutation(collection: &str, kind: MutationKind, payload: serde_json::Value) -> Mutation {
        let mut m: Mutation = serde_json::from_value(json!({
            "op_id": "01J0000000000000000000000A", "client_id": "c", "terminal_id": "t",
            "branch_id": "b", "collection": collection, "entity_id": "e", "kind": "create",
            "payload": {}, "base_version": 0, "hlc": {"wall_ms": 1, "counter": 0, "node": 0},
            "schema_version": 1, "checksum": "", "offline": false
        }))
        .unwrap();
        m.kind = kind;
        m.payload = payload.as_object().cloned();
        m
    }

    fn step(v: serde_json::Value) -> FieldMigration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn renames_removes_and_fills_defaults_on_creates_only() {
        let s = step(
            json!({"from": 1, "collections": ["rooms"], "rename": {"state": "status"},
            "remove": ["legacy"], "defaults": {"floor": 0}}),
        );
        let create = mutation(
            "rooms",
            MutationKind::Create,
            json!({"state": "dirty", "legacy": 1}),
        );
        assert_eq!(
            s.migrate(&create),
            MigrationOutcome::Rewrite(json!({"status": "dirty", "floor": 0}).as_object().cloned())
        );
        let patch = mutation("rooms", MutationKind::Patch, json!({"state": "clean"}));
        assert_eq!(
            s.migrate(&patch),
            MigrationOutcome::Rewrite(json!({"status": "clean"}).as_object().cloned())
        );
        let untouched = mutation("rooms", MutationKind::Patch, json!({"notes": "x"}));
        assert_eq!(s.migrate(&untouched), MigrationOutcome::Keep);
        let other = mutation("sales", MutationKind::Create, json!({"state": "x"}));
        assert_eq!(
            s.migrate(&other),
            MigrationOutcome::Keep,
            "another collection"
        );
        let delete = mutation("rooms", MutationKind::Delete, serde_json::Value::Null);
        assert_eq!(s.migrate(&delete), MigrationOutcome::Keep);
    }

    #[test]
    fn a_field_without_a_place_holds_the_mutation() {
        let s = step(json!({"from": 1, "hold_if_present": ["minibar"]}));
        let m = mutation("rooms", MutationKind::Patch, json!({"minibar": 3}));
        assert!(matches!(
            s.migrate(&m),
            MigrationOutcome::Hold {
                code: ErrorCode::SchemaUnsupported,
                ..
            }
        ));
    }

    #[test]
    fn bad_steps_are_refused_with_the_offending_path() {
        let ok = vec![step(json!({"from": 1})), step(json!({"from": 2}))];
        assert!(FieldMigration::check_all(&ok, 3).is_ok());
        let e = FieldMigration::check_all(&ok, 2).unwrap_err();
        assert!(e.starts_with("migrations[1].from"), "{e}");
        let twice = vec![step(json!({"from": 1})), step(json!({"from": 1}))];
        assert!(FieldMigration::check_all(&twice, 3)
            .unwrap_err()
            .contains("second step"));
        let collide = vec![step(json!({"from": 1, "rename": {"a": "c", "b": "c"}}))];
        assert!(FieldMigration::check_all(&collide, 2).is_err());
        assert!(serde_json::from_value::<FieldMigration>(json!({"from": 1, "renam": {}})).is_err());
    }
}
