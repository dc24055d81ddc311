//! Anomaly scorers of the addon's engine (issue 18): the app's JS scorer,
//! called across threads, and the native tract model of `loadModel()`
//! (the `inference` feature).

#[cfg(feature = "inference")]
use crate::{bad_argument, js_error, NativeClient};
#[cfg(feature = "inference")]
use napi::bindgen_prelude::Buffer;
use napi::bindgen_prelude::Status;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
#[cfg(feature = "inference")]
use napi_derive::napi;
#[cfg(feature = "inference")]
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "inference")]
use tidesync::client::ClientError;

/// The app's scorer's `score`, as `index.js` wraps it: called with the
/// write as JSON ([`ScoreInput::to_json`](tidesync::scoring::ScoreInput)),
/// it returns JSON that [`Score::from_json`](tidesync::scoring::Score)
/// reads (the wrapper turns a throw or a promise into `{"error": code}`).
/// Weak, as [`EventSink`](crate::EventSink).
pub(crate) type ScoreFn = ThreadsafeFunction<String, String, String, Status, false, true>;

/// How long a write waits for the JS scorer's answer.
const SCORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The app's scorer, called from the engine's thread: the call is queued
/// to the JS thread and this thread waits for its answer (the JS thread is
/// free: every engine call from JS is asynchronous).
pub(crate) struct JsScorer {
    pub(crate) model: String,
    pub(crate) score: ScoreFn,
}

impl std::fmt::Debug for JsScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsScorer")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl tidesync::scoring::Scorer for JsScorer {
    fn model(&self) -> &str {
        &self.model
    }

    fn score(
        &self,
        input: &tidesync::scoring::ScoreInput<'_>,
    ) -> Result<Option<tidesync::scoring::Score>, tidesync::scoring::ScoreError> {
        let failed = |code: &str| tidesync::scoring::ScoreError { code: code.into() };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Option<String>>(1);
        let status = self.score.call_with_return_value(
            input.to_json().to_string(),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |answer: napi::Result<String>, _| {
                let _ = tx.send(answer.ok());
                Ok(())
            },
        );
        if status != Status::Ok {
            return Err(failed("SCORER_FAILED"));
        }
        let answer = match rx.recv_timeout(SCORE_TIMEOUT) {
            Ok(Some(a)) => a,
            Ok(None) => return Err(failed("SCORER_FAILED")),
            Err(_) => return Err(failed("SCORER_TIMEOUT")),
        };
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|_| failed("SCORE_INVALID"))?;
        tidesync::scoring::Score::from_json(&v)
    }
}

/// An allow-listed tract-onnx anomaly model and its featurizer, loaded
/// natively (`loadModel()` in `index.js`; the `inference` feature).
#[cfg(feature = "inference")]
#[napi]
pub struct NativeModel {
    scorer: Arc<tidesync_inference::AnomalyScorer>,
}

#[cfg(feature = "inference")]
impl std::fmt::Debug for NativeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tidesync::scoring::Scorer;
        f.debug_struct("NativeModel")
            .field("model", &self.scorer.model())
            .finish()
    }
}

#[cfg(feature = "inference")]
#[napi]
impl NativeModel {
    /// Loads `model` (ONNX bytes) if its SHA-256 is in `allowed_sha256`,
    /// with the featurizer of `features` (anomaly.features.json): a
    /// `MODEL_MISSING`, `MODEL_NOT_ALLOWED` or `MODEL_CORRUPT` error else.
    #[napi(factory)]
    pub fn load(
        model: Buffer,
        features: String,
        allowed_sha256: Vec<String>,
    ) -> napi::Result<NativeModel> {
        use tidesync_inference::{AnomalyScorer, Featurizer, InferenceError, Model};
        let fail = |e: InferenceError| {
            js_error(ClientError::new(
                e.host_code(),
                format!("{}: {e}", e.code()),
            ))
        };
        let allowed: Vec<&str> = allowed_sha256.iter().map(String::as_str).collect();
        let model = Model::load(&model, &allowed).map_err(fail)?;
        let featurizer = Featurizer::from_json(&features).map_err(fail)?;
        let scorer = AnomalyScorer::new(model, featurizer).map_err(fail)?;
        Ok(NativeModel {
            scorer: Arc::new(scorer),
        })
    }

    /// The model's id on every score (a prefix of its SHA-256).
    #[napi(getter)]
    pub fn model(&self) -> String {
        use tidesync::scoring::Scorer;
        self.scorer.model().to_string()
    }

    /// Scores one write (the JSON of a `ScoreInput`): the JSON of
    /// `{score, flagged}`, or `null` when this write is not scored.
    #[napi]
    pub fn score(&self, input: String) -> napi::Result<String> {
        use tidesync::scoring::Scorer;
        let input = tidesync::scoring::OwnedScoreInput::from_json(&input)
            .map_err(|e| bad_argument(format!("input: {e}")))?;
        match self.scorer.score(&input.as_input()) {
            Ok(None) => Ok("null".into()),
            Ok(Some(s)) => {
                Ok(serde_json::json!({"score": s.score, "flagged": s.flagged}).to_string())
            }
            Err(e) => Err(js_error(ClientError::new(
                tidesync::ErrorCode::ModelCorrupt,
                e.code,
            ))),
        }
    }
}

// Its own impl block: napi's macro registers every method of a block, so a
// `cfg` on one method of the main block would leave a dangling symbol.
#[cfg(feature = "inference")]
#[napi]
impl NativeClient {
    /// Sets a native model as the engine's scorer (no JS on the write path).
    #[napi]
    pub fn set_native_scorer(&self, model: &NativeModel) -> napi::Result<()> {
        let engine = self.inner.live()?;
        engine.set_scorer(Some(
            model.scorer.clone() as Arc<dyn tidesync::scoring::Scorer>
        ));
        Ok(())
    }
}
