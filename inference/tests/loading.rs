//! Loading: only an allow-listed, readable model; stable error codes.

mod common;

use common::*;
use tidesync_inference::{AnomalyScorer, Featurizer, InferenceError, Model};

fn code(r: Result<Model, InferenceError>) -> &'static str {
    r.map(|_| ()).unwrap_err().code()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn empty_bytes_are_model_missing() {
    assert_eq!(code(Model::load(&[], &[sha()])), "MODEL_MISSING");
}

#[test]
fn a_model_whose_sha_is_not_listed_is_model_not_allowed() {
    let wrong = "0".repeat(64);
    assert_eq!(code(Model::load(MODEL, &[&wrong])), "MODEL_NOT_ALLOWED");
    assert_eq!(code(Model::load(MODEL, &[])), "MODEL_NOT_ALLOWED");
    // A prefix is not the hash.
    assert_eq!(
        code(Model::load(MODEL, &[&sha()[..16]])),
        "MODEL_NOT_ALLOWED"
    );
    // Uppercase hex of the right hash is the same hash.
    assert!(Model::load(MODEL, &[&wrong, &sha().to_uppercase()]).is_ok());
}

#[test]
fn garbage_or_truncated_bytes_with_a_listed_sha_are_model_corrupt() {
    let garbage = b"this is not an onnx model, just bytes".to_vec();
    assert_eq!(
        code(Model::load(&garbage, &[&sha256(&garbage)])),
        "MODEL_CORRUPT"
    );
    let cut = &MODEL[..MODEL.len() / 2];
    assert_eq!(code(Model::load(cut, &[&sha256(cut)])), "MODEL_CORRUPT");
    let zeros = vec![0u8; 4096];
    assert_eq!(
        code(Model::load(&zeros, &[&sha256(&zeros)])),
        "MODEL_CORRUPT"
    );
}

#[test]
fn a_batch_that_is_not_whole_rows_is_batch_shape() {
    let m = model();
    assert_eq!(m.width(), 9);
    assert_eq!(m.run(&[0.0; 10]).unwrap_err().code(), "BATCH_SHAPE");
    assert_eq!(
        m.run_rows(&[[0.0f32; 8]]).unwrap_err().code(),
        "BATCH_SHAPE"
    );
    assert_eq!(m.run_rows(&[[0.0f32; 9]; 3]).unwrap().len(), 3);
}

#[test]
fn a_features_file_for_another_model_or_unreadable_is_refused() {
    let other = FEATURES.replace(sha(), &"a".repeat(64));
    let f = Featurizer::from_json(&other).unwrap();
    let err = AnomalyScorer::new(model(), f).unwrap_err();
    assert_eq!(err.code(), "FEATURES_MISMATCH");
    for bad in [
        "",
        "{}",
        &FEATURES.replace("rooms.log_rate\"", "rooms.log_price\""),
        &FEATURES.replace("\"threshold\": ", "\"threshold\": -"),
    ] {
        let err = Featurizer::from_json(bad).unwrap_err();
        assert_eq!(err.code(), "FEATURES_INVALID", "{bad:.40}");
    }
}
