//! The browser's tract model (issue 18): this crate built as its own
//! `.wasm` (scripts/build-inference-wasm.sh), beside the core's and never
//! inside it. The package's `tidesync/inference` module imports it
//! dynamically, in `loadModel()`, so an app that does not score never
//! fetches it; what it returns is a scorer for `setScorer()`.
//!
//! Errors are `TideSyncError`s with the codes of the Node addon's
//! `loadModel`: `MODEL_MISSING`, `MODEL_NOT_ALLOWED`, `MODEL_CORRUPT`,
//! `BAD_ARGUMENT`.

use crate::{AnomalyScorer, Featurizer, InferenceError, Model};
use tidesync::scoring::{OwnedScoreInput, Scorer};
use wasm_bindgen::prelude::*;

fn error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name("TideSyncError");
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

fn model_error(e: InferenceError) -> JsValue {
    error(e.host_code().as_str(), &format!("{}: {e}", e.code()))
}

/// An allow-listed ONNX anomaly model with its featurizer, run by tract.
#[wasm_bindgen(js_name = InferenceModel)]
#[derive(Debug)]
pub struct WebModel {
    scorer: AnomalyScorer,
}

#[wasm_bindgen(js_class = InferenceModel)]
impl WebModel {
    /// Loads `model` (the .onnx bytes) if its SHA-256 is one of
    /// `allowed_sha256`, with the featurizer of `features` (the text of its
    /// anomaly.features.json).
    pub fn load(
        model: &[u8],
        features: &str,
        allowed_sha256: Vec<String>,
    ) -> Result<WebModel, JsValue> {
        let allowed: Vec<&str> = allowed_sha256.iter().map(String::as_str).collect();
        let model = Model::load(model, &allowed).map_err(model_error)?;
        let featurizer = Featurizer::from_json(features).map_err(model_error)?;
        let scorer = AnomalyScorer::new(model, featurizer).map_err(model_error)?;
        Ok(WebModel { scorer })
    }

    /// The model's id on every score (a prefix of its SHA-256).
    #[wasm_bindgen(getter)]
    pub fn model(&self) -> String {
        self.scorer.model().to_string()
    }

    /// Values per row of [`run`](Self::run)'s batch.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.scorer.model_ref().width()
    }

    /// Scores one write, given as the JSON of a `ScoreInput`: the JSON of
    /// `{score, flagged}`, or `null` when this model does not score it.
    pub fn score(&self, input: &str) -> Result<String, JsValue> {
        let input = OwnedScoreInput::from_json(input)
            .map_err(|e| error("BAD_ARGUMENT", &format!("input: {e}")))?;
        match self.scorer.score(&input.as_input()) {
            Ok(None) => Ok("null".into()),
            Ok(Some(s)) => {
                Ok(serde_json::json!({"score": s.score, "flagged": s.flagged}).to_string())
            }
            Err(e) => Err(error("MODEL_CORRUPT", &e.code)),
        }
    }

    /// Runs the model on rows of [`width`](Self::width) features, one after
    /// the other: one score per row (the benchmark's entry, and the check
    /// against onnxruntime).
    pub fn run(&self, batch: &[f32]) -> Result<Vec<f32>, JsValue> {
        self.scorer
            .model_ref()
            .run(batch)
            .map_err(|e| error("BAD_ARGUMENT", &e.to_string()))
    }
}
