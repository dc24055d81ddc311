//! Conflict policies, declared per collection by the app, and the
//! field-level three-way merge.
//!
//! The server only detects a conflict (the mutation's base version is not
//! its current version) and answers with its state; the client decides what
//! happens, here, so that the rule is written once.

use crate::protocol::{EntityState, Fields, Mutation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happens when a local change meets a newer server state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The change with the later HLC wins, at entity level.
    #[default]
    LastWriteWins,
    /// Disjoint field edits merge; overlapping ones become a manual conflict.
    MergeThreeWay,
    /// Every conflict waits for a person (local, server or an edited value).
    ManualResolve,
    /// The server's state wins (e.g. a catalog the cloud owns).
    ServerWins,
    /// Insert-only records (e.g. sales), deduplicated by id, never updated.
    AppendOnly,
}

/// The decision for a chain of local mutations that met a newer server state.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Keep every local mutation, rebased onto the server state.
    Rebase,
    /// Drop the first local mutation (it lost), rebase the rest.
    SupersedeHead,
    /// Drop every local mutation of the entity (the server wins).
    SupersedeAll,
    /// Open a conflict for a person; these fields differ on both sides.
    Manual {
        /// Fields changed on both sides with different values (empty when
        /// the conflict is about existence: a delete or a create).
        fields: Vec<String>,
    },
}

impl Decision {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Rebase => "rebase",
            Decision::SupersedeHead => "supersede-head",
            Decision::SupersedeAll => "supersede-all",
            Decision::Manual { .. } => "manual",
        }
    }
}

/// Decides what happens to the local `chain` (oldest first, non-empty),
/// built on `base`, now that the server is at `server`.
pub fn decide(
    policy: ConflictPolicy,
    base: Option<&EntityState>,
    chain: &[&Mutation],
    server: Option<&EntityState>,
) -> Decision {
    match policy {
        ConflictPolicy::ServerWins => Decision::SupersedeAll,
        ConflictPolicy::LastWriteWins => {
            let head = chain[0];
            match server {
                Some(s) if s.updated_at >= head.hlc => Decision::SupersedeHead,
                _ => Decision::Rebase,
            }
        }
        ConflictPolicy::ManualResolve | ConflictPolicy::AppendOnly => Decision::Manual {
            fields: changed_fields(base, chain, server),
        },
        ConflictPolicy::MergeThreeWay => {
            let (Some(b), Some(s)) = (base, server) else {
                return Decision::Manual { fields: vec![] };
            };
            if b.deleted || s.deleted {
                return Decision::Manual { fields: vec![] };
            }
            let mut local = b.clone();
            for m in chain {
                match crate::protocol::apply_mutation(Some(&local), m, local.version) {
                    Ok(next) if !next.deleted => local = next,
                    // A local delete (or a change that no longer applies) is
                    // about existence, not fields: a person decides.
                    _ => return Decision::Manual { fields: vec![] },
                }
            }
            match three_way_merge(&b.fields, &local.fields, &s.fields) {
                Ok(_) => Decision::Rebase,
                Err(fields) => Decision::Manual { fields },
            }
        }
    }
}

fn changed_fields(
    base: Option<&EntityState>,
    chain: &[&Mutation],
    server: Option<&EntityState>,
) -> Vec<String> {
    let empty = Fields::new();
    let b = base.map(|s| &s.fields).unwrap_or(&empty);
    let s = server.map(|s| &s.fields).unwrap_or(&empty);
    let mut local = base.cloned();
    for m in chain {
        let v = local.as_ref().map(|l| l.version).unwrap_or(0);
        if let Ok(next) = crate::protocol::apply_mutation(local.as_ref(), m, v) {
            local = Some(next);
        }
    }
    let l = local.as_ref().map(|l| &l.fields).unwrap_or(&empty);
    match three_way_merge(b, l, s) {
        Ok(_) => Vec::new(),
        Err(f) => f,
    }
}

/// Merges two edits of `base` field by field. A field changed on one side
/// only takes that side's value; changed on both sides to the same value,
/// that value; to different values, it is a conflict. Returns the merged
/// fields, or the sorted names of the conflicting fields.
pub fn three_way_merge(
    base: &Fields,
    local: &Fields,
    server: &Fields,
) -> Result<Fields, Vec<String>> {
    let mut merged = Fields::new();
    let mut conflicts = Vec::new();
    let mut keys: Vec<&String> = base
        .keys()
        .chain(local.keys())
        .chain(server.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let b = base.get(k);
        let l = local.get(k);
        let s = server.get(k);
        let pick: Option<&Value> = if l == s {
            l
        } else if l == b {
            s
        } else if s == b {
            l
        } else {
            conflicts.push(k.clone());
            continue;
        };
        if let Some(v) = pick {
            merged.insert(k.clone(), v.clone());
        }
    }
    if conflicts.is_empty() {
        Ok(merged)
    } else {
        Err(conflicts)
    }
}

// Property tests run natively (proptest does not build for wasm32).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn f(v: Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn disjoint_edits_merge() {
        let base = f(json!({"status": "dirty", "notes": "", "floor": 2}));
        let local = f(json!({"status": "clean", "notes": "", "floor": 2}));
        let server = f(json!({"status": "dirty", "notes": "VIP", "floor": 2}));
        assert_eq!(
            three_way_merge(&base, &local, &server).unwrap(),
            f(json!({"status": "clean", "notes": "VIP", "floor": 2}))
        );
    }

    #[test]
    fn overlapping_edits_conflict_by_field() {
        let base = f(json!({"status": "dirty", "rate": 100}));
        let local = f(json!({"status": "clean", "rate": 120}));
        let server = f(json!({"status": "inspected", "rate": 120}));
        assert_eq!(
            three_way_merge(&base, &local, &server),
            Err(vec!["status".to_string()])
        );
    }

    #[test]
    fn removal_on_one_side_merges() {
        let base = f(json!({"a": 1, "b": 2}));
        let local = f(json!({"a": 1}));
        let server = f(json!({"a": 5, "b": 2}));
        assert_eq!(
            three_way_merge(&base, &local, &server).unwrap(),
            f(json!({"a": 5}))
        );
    }

    fn small_fields() -> impl Strategy<Value = Fields> {
        proptest::collection::btree_map("[a-e]", 0i64..4, 0..5).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect::<Fields>()
        })
    }

    proptest! {
        #[test]
        fn merge_with_unchanged_side_is_the_other_side(base in small_fields(), other in small_fields()) {
            prop_assert_eq!(three_way_merge(&base, &other, &base).unwrap(), other.clone());
            prop_assert_eq!(three_way_merge(&base, &base, &other).unwrap(), other);
        }

        #[test]
        fn merge_is_symmetric(base in small_fields(), l in small_fields(), s in small_fields()) {
            prop_assert_eq!(three_way_merge(&base, &l, &s), three_way_merge(&base, &s, &l));
        }

        #[test]
        fn merged_keeps_every_one_sided_change(base in small_fields(), l in small_fields(), s in small_fields()) {
            if let Ok(m) = three_way_merge(&base, &l, &s) {
                for k in base.keys().chain(l.keys()).chain(s.keys()) {
                    let (b, lv, sv, mv) = (base.get(k), l.get(k), s.get(k), m.get(k));
                    if lv != b { prop_assert_eq!(mv, lv, "local change of {} kept", k); }
                    if sv != b { prop_assert_eq!(mv, sv, "server change of {} kept", k); }
                    if lv == b && sv == b { prop_assert_eq!(mv, b); }
                }
            } else {
                let conflicts = three_way_merge(&base, &l, &s).unwrap_err();
                for k in conflicts {
                    prop_assert!(l.get(&k) != base.get(&k) && s.get(&k) != base.get(&k) && l.get(&k) != s.get(&k));
                }
            }
        }

        #[test]
        fn identical_edits_never_conflict(base in small_fields(), x in small_fields()) {
            prop_assert_eq!(three_way_merge(&base, &x, &x).unwrap(), x);
        }
    }
}
