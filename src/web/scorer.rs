//! An anomaly scorer written in JS (issue 18): `setScorer({model, score})`.
//! The engine calls `score(input)` synchronously on every local write of
//! the tab that leads; the answer is read by the core's one parser
//! ([`Score::from_json`]). A scorer that throws, answers a promise or
//! answers something else leaves the write unscored, audited with a
//! stable code; what it threw is not kept (it may hold field data).

use super::json::to_json;
use super::listeners::to_js;
use crate::client::ClientError as ApiError;
use crate::scoring::{Score, ScoreError, ScoreInput, Scorer};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// The app's scorer object and its `score` method.
pub(crate) struct JsScorer {
    model: String,
    this: JsValue,
    score: Function,
}

impl std::fmt::Debug for JsScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsScorer")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl JsScorer {
    /// Reads `{model, score}`: `model` a prefix of the model's SHA-256 (1 to
    /// 64 characters of `[0-9a-f]`), `score` a function.
    pub(crate) fn from_js(v: &JsValue) -> Result<JsScorer, ApiError> {
        if !v.is_object() {
            return Err(ApiError::bad_argument(
                "scorer must be {model, score(input)} or null",
            ));
        }
        let model = Reflect::get(v, &"model".into())
            .ok()
            .and_then(|m| m.as_string())
            .filter(|m| crate::protocol::valid_model_id(m))
            .ok_or_else(|| {
                ApiError::bad_argument(
                    "scorer.model must be 1 to 64 characters of [0-9a-f] (a prefix of the model's SHA-256)",
                )
            })?;
        let score = Reflect::get(v, &"score".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| ApiError::bad_argument("scorer.score must be a function"))?;
        Ok(JsScorer {
            model,
            this: v.clone(),
            score,
        })
    }
}

impl Scorer for JsScorer {
    fn model(&self) -> &str {
        &self.model
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError> {
        let failed = |code: &str| ScoreError { code: code.into() };
        let arg = to_js(&input.to_json()).map_err(|_| failed("SCORER_FAILED"))?;
        let out = self
            .score
            .call1(&self.this, &arg)
            .map_err(|_| failed("SCORER_FAILED"))?;
        if out.is_instance_of::<Promise>() {
            return Err(failed("SCORER_ASYNC"));
        }
        if out.is_undefined() {
            return Ok(None);
        }
        let v = to_json(&out, "score").map_err(|_| failed("SCORE_INVALID"))?;
        Score::from_json(&v)
    }
}
