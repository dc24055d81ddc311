//! The committed model, its featurizer and its test vectors.
#![allow(dead_code)]

use serde_json::Value;
use tidesync::scoring::{OwnedScoreInput, ScoreInput};
use tidesync_inference::{AnomalyScorer, Featurizer, Model};

pub const MODEL: &[u8] = include_bytes!("../../../models/anomaly.onnx");
pub const FEATURES: &str = include_str!("../../../models/anomaly.features.json");
pub const VECTORS: &str = include_str!("../../../models/vectors.json");
const SHA: &str = include_str!("../../../models/anomaly.onnx.sha256");

pub fn sha() -> &'static str {
    SHA.split_whitespace().next().unwrap()
}

pub fn model() -> Model {
    Model::load(MODEL, &[sha()]).unwrap()
}

pub fn scorer() -> AnomalyScorer {
    AnomalyScorer::new(model(), Featurizer::from_json(FEATURES).unwrap()).unwrap()
}

pub fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

/// |got - want| within 1e-5, relative above 1 (scores reach the thousands,
/// where one f32 ulp is over 1e-5).
pub fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

/// One labelled record of vectors.json: its write, owned.
pub struct Record {
    pub name: String,
    pub label: String,
    pub write: OwnedScoreInput,
    pub features: Vec<f64>,
    pub score: f64,
}

impl Record {
    pub fn input(&self) -> ScoreInput<'_> {
        self.write.as_input()
    }
}

pub fn records() -> Vec<Record> {
    let v = vectors();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Record {
            name: r["name"].as_str().unwrap().into(),
            label: r["label"].as_str().unwrap().into(),
            write: OwnedScoreInput::from_json(&r["input"].to_string()).unwrap(),
            features: floats(&r["features"]),
            score: r["score"].as_f64().unwrap(),
        })
        .collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
