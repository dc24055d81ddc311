//! How a mutation changes an entity: JSON merge patches (RFC 7386) and
//! [`apply_mutation`], the one rule both sides share.

use super::*;
use crate::error_code::ErrorCode;

/// Why a mutation cannot be applied to a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyError {
    /// Stable code.
    pub code: ErrorCode,
    /// Message naming what was wrong.
    pub message: String,
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Fields, patch: &Fields) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Fields::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Fields::new());
                }
                if let Value::Object(obj) = slot {
                    merge_patch(obj, inner);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// The merge patch that turns `from` into `to` (top-level fields).
pub fn diff_patch(from: &Fields, to: &Fields) -> Fields {
    let mut patch = Fields::new();
    for (k, v) in to {
        if from.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in from.keys() {
        if !to.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    patch
}

/// How a mutation changes an entity: the one rule the server and every
/// client's local view use. `current` is the state before (absent: never
/// existed); the result carries `version` and the mutation's HLC and op.
pub fn apply_mutation(
    current: Option<&EntityState>,
    m: &Mutation,
    version: u64,
) -> Result<EntityState, ApplyError> {
    let live = current.filter(|s| !s.deleted);
    let fields = match m.kind {
        MutationKind::Create | MutationKind::Append => {
            if live.is_some() {
                return Err(ApplyError {
                    code: ErrorCode::AlreadyExists,
                    message: format!("entity {} already exists", m.key()),
                });
            }
            m.payload.clone().unwrap_or_default()
        }
        MutationKind::Patch => {
            let Some(s) = live else {
                return Err(ApplyError {
                    code: ErrorCode::NotFound,
                    message: format!("entity {} does not exist", m.key()),
                });
            };
            let mut f = s.fields.clone();
            if let Some(p) = &m.payload {
                merge_patch(&mut f, p);
            }
            f
        }
        MutationKind::Delete => {
            if live.is_none() {
                return Err(ApplyError {
                    code: ErrorCode::NotFound,
                    message: format!("entity {} does not exist", m.key()),
                });
            }
            Fields::new()
        }
    };
    Ok(EntityState {
        collection: m.collection.clone(),
        id: m.entity_id.clone(),
        version,
        fields,
        deleted: m.kind == MutationKind::Delete,
        updated_at: m.hlc,
        last_op: Some(m.op_id.clone()),
    })
}
