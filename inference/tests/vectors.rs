//! The committed model under tract against models/vectors.json: the scores
//! onnxruntime gave, the features train.py computed, and the labels.

mod common;

use common::*;
use tidesync::scoring::Scorer;
use tidesync_inference::BIG_BATCH;

fn batch() -> (Vec<f32>, Vec<f64>) {
    let v = vectors();
    let rows: Vec<f32> = v["batch"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| floats(r).into_iter().map(|x| x as f32))
        .collect();
    (rows, floats(&v["batch_scores"]))
}

fn assert_scores(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(f64::from(*g), *w),
            "{what} row {i}: tract {g}, onnxruntime {w}"
        );
    }
}

#[test]
fn tract_matches_onnxruntime_on_the_fixed_batch_at_256_at_1_and_at_odd_sizes() {
    let model = model();
    let (rows, want) = batch();
    assert_eq!(want.len(), BIG_BATCH);
    let w = model.width();
    assert_scores(&model.run(&rows).unwrap(), &want, "batch 256");
    let one: Vec<f32> = rows.chunks(w).flat_map(|r| model.run(r).unwrap()).collect();
    assert_scores(&one, &want, "batch 1");
    // 7 rows (the symbolic plan), then 256 + 13 (a fixed chunk and a rest).
    assert_scores(&model.run(&rows[..7 * w]).unwrap(), &want[..7], "batch 7");
    let mut long = rows.clone();
    long.extend_from_slice(&rows[..13 * w]);
    let mut want_long = want.clone();
    want_long.extend_from_slice(&want[..13]);
    assert_scores(&model.run(&long).unwrap(), &want_long, "batch 269");
    assert!(model.run(&[]).unwrap().is_empty());
}

#[test]
fn the_featurizer_matches_train_py_on_every_record() {
    let scorer = scorer();
    for r in records() {
        let x = scorer.featurizer().features(&r.input()).expect(&r.name);
        for (i, (g, w)) in x.iter().zip(&r.features).enumerate() {
            assert!(
                close(f64::from(*g), *w),
                "{} feature {i}: {g} vs train.py {w}",
                r.name
            );
        }
    }
}

#[test]
fn known_normal_writes_score_low_and_planted_anomalies_high() {
    let scorer = scorer();
    let threshold = vectors()["threshold"].as_f64().unwrap();
    let (mut normal, mut planted) = (0, 0);
    for r in records() {
        let s = scorer.score(&r.input()).unwrap().expect(&r.name);
        assert!(
            close(s.score, r.score),
            "{}: tract {} onnxruntime {}",
            r.name,
            s.score,
            r.score
        );
        assert_eq!(s.flagged, s.score >= threshold);
        match r.label.as_str() {
            "normal" => {
                normal += 1;
                assert!(!s.flagged, "{} is normal, scored {}", r.name, s.score);
            }
            "anomaly" => {
                planted += 1;
                assert!(s.flagged, "{} is planted, scored {}", r.name, s.score);
            }
            _ => assert!(s.score.is_finite()),
        }
    }
    assert!(
        normal >= 10 && planted >= 8,
        "{normal} normal, {planted} planted"
    );
}

#[test]
fn the_model_id_is_a_16_hex_prefix_of_its_sha256() {
    let scorer = scorer();
    assert_eq!(scorer.model(), &sha()[..16]);
    assert!(scorer
        .model()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}
