//! On-device anomaly scoring of tidesync writes with tract-onnx (issue 18).
//!
//! The core calls a [`tidesync::scoring::Scorer`] on every local write; this
//! crate supplies one, [`AnomalyScorer`], from three pieces:
//!
//! - [`Model`]: an ONNX model loaded only if its SHA-256 is allow-listed
//!   (`MODEL_MISSING`, `MODEL_NOT_ALLOWED`, `MODEL_CORRUPT`), optimised by
//!   tract for fixed batch shapes;
//! - [`Featurizer`]: a write's fields before and after, and its hour,
//!   turned into the model's features by the constants of
//!   `models/anomaly.features.json` (written by `models/train.py`);
//! - the threshold from the same file: a score at or above it is flagged.
//!
//! ```
//! use tidesync_inference::{AnomalyScorer, Featurizer, Model};
//! use tidesync::scoring::{ScoreInput, Scorer};
//! use tidesync::protocol::MutationKind;
//!
//! let bytes = include_bytes!("../../models/anomaly.onnx");
//! let sha = include_str!("../../models/anomaly.onnx.sha256");
//! let sha = sha.split_whitespace().next().unwrap();
//! let model = Model::load(bytes, &[sha]).unwrap();
//! let features = Featurizer::from_json(include_str!("../../models/anomaly.features.json")).unwrap();
//! let scorer = AnomalyScorer::new(model, features).unwrap();
//!
//! let before = serde_json::json!({"status": "occupied", "rate": 120});
//! let after = serde_json::json!({"status": "occupied", "rate": 12000});
//! let input = ScoreInput {
//!     collection: "rooms",
//!     entity_id: "room-2",
//!     kind: MutationKind::Patch,
//!     before: before.as_object(),
//!     after: after.as_object(),
//!     at_ms: 1_767_258_000_000, // 09:00 UTC
//! };
//! let score = scorer.score(&input).unwrap().unwrap();
//! assert!(score.flagged, "a typo: 12,000 for 120");
//! ```
//!
//! The model shipped in `models/` scores rooms and sales; other collections
//! and deletes are not scored (`Ok(None)`).

mod error;
mod featurizer;
mod model;
mod scorer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::InferenceError;
pub use featurizer::{Featurizer, FEATURES};
pub use model::{Model, BIG_BATCH};
pub use scorer::{AnomalyScorer, MODEL_ID_LEN};
