//! The [`Scorer`] the engine calls: featurize, run, compare to the threshold.

use crate::{Featurizer, InferenceError, Model};
use tidesync::scoring::{Score, ScoreError, ScoreInput, Scorer};

/// Hex characters of the model's SHA-256 used as its id on every score.
pub const MODEL_ID_LEN: usize = 16;

/// Scores local writes with an allow-listed model and its featurizer.
#[derive(Debug, Clone)]
pub struct AnomalyScorer {
    model: Model,
    featurizer: Featurizer,
    id: String,
}

impl AnomalyScorer {
    /// Pairs a loaded model with the featurizer written for it
    /// (`FEATURES_MISMATCH` if the features file names another model or
    /// width).
    pub fn new(model: Model, featurizer: Featurizer) -> Result<AnomalyScorer, InferenceError> {
        if model.sha256() != featurizer.model_sha256() || model.width() != featurizer.width() {
            return Err(InferenceError::FeaturesMismatch {
                features: featurizer.model_sha256().to_string(),
                model: model.sha256().to_string(),
            });
        }
        let id = model.sha256()[..MODEL_ID_LEN].to_string();
        Ok(AnomalyScorer {
            model,
            featurizer,
            id,
        })
    }

    /// The model.
    pub fn model_ref(&self) -> &Model {
        &self.model
    }

    /// The featurizer.
    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }
}

impl Scorer for AnomalyScorer {
    fn model(&self) -> &str {
        &self.id
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Option<Score>, ScoreError> {
        let Some(x) = self.featurizer.features(input) else {
            return Ok(None);
        };
        let out = self.model.run(&x).map_err(|e| ScoreError {
            code: e.code().into(),
        })?;
        let score = out.first().copied().map(f64::from).unwrap_or(f64::NAN);
        if !(score.is_finite() && score >= 0.0) {
            return Err(ScoreError {
                code: "SCORE_INVALID".into(),
            });
        }
        Ok(Some(Score {
            score,
            flagged: score >= self.featurizer.threshold(),
        }))
    }
}
