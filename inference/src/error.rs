//! The crate's one error type, with stable codes for hosts and the audit.

/// Why a model could not be loaded or run, or a featurizer built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// No model bytes were given (`MODEL_MISSING`).
    #[error("no model bytes were given")]
    ModelMissing,
    /// The model's SHA-256 is not in the allow list (`MODEL_NOT_ALLOWED`).
    #[error("the model's SHA-256 {sha256} is not in the allow list")]
    ModelNotAllowed {
        /// The model's SHA-256, lowercase hex.
        sha256: String,
    },
    /// tract cannot parse, type or optimise the model, or its input is not
    /// `[batch, width]` of f32 (`MODEL_CORRUPT`).
    #[error("the model cannot be loaded: {reason}")]
    ModelCorrupt {
        /// tract's message (about the graph, never field data).
        reason: String,
    },
    /// A batch whose length is not a multiple of the model's width, or rows
    /// of another width (`BATCH_SHAPE`).
    #[error("a batch of {len} values is not rows of {width}")]
    BatchShape {
        /// Values given.
        len: usize,
        /// The model's input width.
        width: usize,
    },
    /// tract failed while running the model (`MODEL_FAILED`).
    #[error("the model failed: {reason}")]
    ModelFailed {
        /// tract's message.
        reason: String,
    },
    /// The featurizer's JSON (anomaly.features.json) is not one this crate
    /// can read (`FEATURES_INVALID`).
    #[error("the features file is invalid: {reason}")]
    FeaturesInvalid {
        /// What is wrong with it.
        reason: String,
    },
    /// The featurizer was written for another model (`FEATURES_MISMATCH`).
    #[error("the features file is for model {features}, the model is {model}")]
    FeaturesMismatch {
        /// The SHA-256 the features file names.
        features: String,
        /// The loaded model's SHA-256.
        model: String,
    },
}

impl InferenceError {
    /// The code a host's `loadModel()` reports this error with (the
    /// package's error codes, the same in the browser and in Node): a model
    /// that is missing or not allowed says so, anything else that stops a
    /// model from loading is `MODEL_CORRUPT`. [`code`](Self::code) names
    /// the exact cause.
    pub fn host_code(&self) -> tidesync::ErrorCode {
        match self {
            InferenceError::ModelMissing => tidesync::ErrorCode::ModelMissing,
            InferenceError::ModelNotAllowed { .. } => tidesync::ErrorCode::ModelNotAllowed,
            _ => tidesync::ErrorCode::ModelCorrupt,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            InferenceError::ModelMissing => "MODEL_MISSING",
            InferenceError::ModelNotAllowed { .. } => "MODEL_NOT_ALLOWED",
            InferenceError::ModelCorrupt { .. } => "MODEL_CORRUPT",
            InferenceError::BatchShape { .. } => "BATCH_SHAPE",
            InferenceError::ModelFailed { .. } => "MODEL_FAILED",
            InferenceError::FeaturesInvalid { .. } => "FEATURES_INVALID",
            InferenceError::FeaturesMismatch { .. } => "FEATURES_MISMATCH",
        }
    }
}
