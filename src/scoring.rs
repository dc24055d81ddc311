//! On-device anomaly scoring of local writes (issue 18).
//!
//! The engine calls a [`Scorer`] on every local write (create, patch,
//! delete, append) before it is queued. The scorer sees the entity as it was
//! and as the write leaves it, and answers with a score, or with nothing
//! when it does not score that collection. The score travels with the
//! mutation ([`Mutation::anomaly`](crate::protocol::Mutation)), is audited
//! ([`AuditEvent::Scored`](crate::store::AuditEvent)) and is kept by the
//! server. A collection whose [`ReviewPolicy`] is `hold_flagged` keeps a
//! flagged write in the outbox, held for review, until a person releases or
//! discards it.
//!
//! Scoring never decides whether a write is accepted: a scorer that fails
//! leaves the write unscored (audited as `score_failed`), and the write, its
//! outbox entry and its audit entries still commit in one transaction. The
//! model runtime (tract, in the `inference` crate) is supplied by the host;
//! the core knows only this trait.

use crate::protocol::{Fields, MutationKind};
use serde::{Deserialize, Serialize};

/// What the scorer is shown of one local write.
#[derive(Clone, Copy, Debug)]
pub struct ScoreInput<'a> {
    /// The collection written.
    pub collection: &'a str,
    /// The entity written.
    pub entity_id: &'a str,
    /// What the write does.
    pub kind: MutationKind,
    /// The entity's fields before the write (its local view), if it existed.
    pub before: Option<&'a Fields>,
    /// The entity's fields after the write (none for a delete).
    pub after: Option<&'a Fields>,
    /// When the write is made (ms since the Unix epoch, the engine's clock).
    pub at_ms: u64,
}

/// A [`ScoreInput`] read back from its JSON ([`ScoreInput::to_json`]): what
/// a binding hands a native model (the Node addon's and the browser's
/// tract models) when the engine's own scorer is not in the same module.
#[derive(Clone, Debug, Deserialize)]
pub struct OwnedScoreInput {
    /// The collection written.
    pub collection: String,
    /// The entity written.
    pub entity_id: String,
    /// What the write does.
    pub kind: MutationKind,
    /// The fields before the write, if the entity existed.
    pub before: Option<Fields>,
    /// The fields after it (none for a delete).
    pub after: Option<Fields>,
    /// When the write is made (ms since the Unix epoch).
    pub at_ms: u64,
}

impl OwnedScoreInput {
    /// Reads the JSON of a [`ScoreInput`]; the error is serde's message,
    /// for the caller (it can quote the input: it is not for a log).
    pub fn from_json(text: &str) -> Result<OwnedScoreInput, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The borrowed input a [`Scorer`] takes.
    pub fn as_input(&self) -> ScoreInput<'_> {
        ScoreInput {
            collection: &self.collection,
            entity_id: &self.entity_id,
            kind: self.kind,
            before: self.before.as_ref(),
            after: self.after.as_ref(),
            at_ms: self.at_ms,
        }
    }
}

/// A scorer's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Higher is more unusual; finite and at least 0.
    pub score: f64,
    /// At or above the model's threshold.
    pub flagged: bool,
}

/// A scorer's failure: a stable code (no field data), e.g. `MODEL_CORRUPT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreError {
    /// Stable code.
    pub code: String,
}

/// An anomaly model the engine calls on local writes.
#[cfg(not(target_family = "wasm"))]
pub trait Scorer: Send + Sync {
    /// The model's id, sent with every score: a prefix of its SHA-256, 1 to
    /// 64 characters of `[0-9a-f]`.
    fn model(&self) -> &str;
    /// Scores one write; `Ok(None)` when this write is not scored.
    fn score(&self, input: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError>;
}

/// An anomaly model the engine calls on local writes (in a browser: called
/// on the page's thread, so it need not be `Send`).
#[cfg(target_family = "wasm")]
pub trait Scorer {
    /// The model's id, sent with every score: a prefix of its SHA-256, 1 to
    /// 64 characters of `[0-9a-f]`.
    fn model(&self) -> &str;
    /// Scores one write; `Ok(None)` when this write is not scored.
    fn score(&self, input: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError>;
}

/// What a collection does with a flagged write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewPolicy {
    /// The score travels with the mutation; nothing is held (the default).
    #[default]
    Record,
    /// A flagged write is held for review until a person releases it.
    HoldFlagged,
}

/// Options of one local write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteOptions {
    /// `true`: hold this write for review whatever its score; `false`: send
    /// it even if it is flagged (the score is still recorded); absent: the
    /// collection's [`ReviewPolicy`] decides.
    #[serde(default)]
    pub hold: Option<bool>,
}

impl ScoreInput<'_> {
    /// The write as a binding shows it to a scorer written in the host's
    /// language: `{collection, entity_id, kind, before, after, at_ms}`
    /// (`before` and `after` are `null` where there is no entity).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "collection": self.collection,
            "entity_id": self.entity_id,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
            "at_ms": self.at_ms,
        })
    }
}

impl Score {
    /// Reads a host scorer's answer: `null` (this write is not scored),
    /// `{score: number, flagged: boolean}`, or `{error: code}` (what the
    /// binding's wrapper answers when the scorer threw or answered a
    /// promise). Anything else is `SCORE_INVALID`.
    pub fn from_json(v: &serde_json::Value) -> Result<Option<Score>, ScoreError> {
        let code = |c: &str| ScoreError {
            code: c.to_string(),
        };
        if v.is_null() {
            return Ok(None);
        }
        let Some(o) = v.as_object() else {
            return Err(code("SCORE_INVALID"));
        };
        if let Some(e) = o.get("error") {
            let known = ["SCORER_FAILED", "SCORER_ASYNC", "SCORER_TIMEOUT"];
            return Err(code(
                e.as_str()
                    .filter(|e| known.contains(e))
                    .unwrap_or("SCORER_FAILED"),
            ));
        }
        match (
            o.get("score").and_then(serde_json::Value::as_f64),
            o.get("flagged").and_then(serde_json::Value::as_bool),
        ) {
            (Some(score), Some(flagged)) => Ok(Some(Score { score, flagged })),
            _ => Err(code("SCORE_INVALID")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_host_answer_is_a_score_nothing_or_a_stable_code() {
        assert_eq!(Score::from_json(&json!(null)), Ok(None));
        assert_eq!(
            Score::from_json(&json!({"score": 0.5, "flagged": false})),
            Ok(Some(Score {
                score: 0.5,
                flagged: false
            }))
        );
        let code = |v| Score::from_json(&v).unwrap_err().code;
        assert_eq!(code(json!({"error": "SCORER_ASYNC"})), "SCORER_ASYNC");
        // An app's own text never reaches the audit.
        assert_eq!(code(json!({"error": "guest Smith"})), "SCORER_FAILED");
        assert_eq!(
            code(json!({"score": "high", "flagged": true})),
            "SCORE_INVALID"
        );
        assert_eq!(code(json!({"score": 1})), "SCORE_INVALID");
        assert_eq!(code(json!(7)), "SCORE_INVALID");
    }

    #[test]
    fn the_host_sees_the_write_before_and_after() {
        let before = serde_json::Map::from_iter([("rate".to_string(), json!(120))]);
        let input = ScoreInput {
            collection: "rooms",
            entity_id: "101",
            kind: MutationKind::Delete,
            before: Some(&before),
            after: None,
            at_ms: 5,
        };
        assert_eq!(
            input.to_json(),
            json!({"collection": "rooms", "entity_id": "101", "kind": "delete",
                   "before": {"rate": 120}, "after": null, "at_ms": 5})
        );
        let back = OwnedScoreInput::from_json(&input.to_json().to_string()).unwrap();
        assert_eq!(back.as_input().to_json(), input.to_json());
        let err = OwnedScoreInput::from_json(r#"{"collection":"rooms","entity_id":"1","kind":"zap","before":null,"after":null,"at_ms":1}"#).unwrap_err();
        assert!(err.contains("variant"), "{err}");
    }
}
