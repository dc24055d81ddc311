//! Latency of the committed anomaly model under tract: batch 1 and batch
//! 256, the median (and min, p90) of many timed runs after a warm-up.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo run -p tidesync-inference --profile bench --example bench -- [runs]
//! ```
//!
//! Prints one JSON line (bench/inference/run.sh reads it). The inputs are
//! the fixed batch of models/vectors.json, the one bench/inference/ort.mjs
//! gives onnxruntime-node.

use std::time::Instant;
use tidesync_inference::{Model, BIG_BATCH};

const MODEL: &[u8] = include_bytes!("../../models/anomaly.onnx");
const SHA: &str = include_str!("../../models/anomaly.onnx.sha256");
const VECTORS: &str = include_str!("../../models/vectors.json");

fn time(model: &Model, rows: &[f32], runs: usize) -> (f64, f64, f64) {
    for _ in 0..runs / 10 + 10 {
        std::hint::black_box(model.run(rows).unwrap());
    }
    let mut us: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(model.run(std::hint::black_box(rows)).unwrap());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[0], us[us.len() / 2], us[us.len() * 9 / 10])
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let sha = SHA.split_whitespace().next().unwrap();
    let t = Instant::now();
    let model = Model::load(MODEL, &[sha]).unwrap();
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let batch: Vec<f32> = v["batch"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(batch.len(), BIG_BATCH * model.width());
    let (min1, med1, p90_1) = time(&model, &batch[..model.width()], runs);
    let (min256, med256, p90_256) = time(&model, &batch, runs);
    println!(
        "{{\"runtime\":\"tract-onnx 0.23.9\",\"runs\":{runs},\"load_ms\":{load_ms:.2},\
         \"batch1_us\":{{\"min\":{min1:.2},\"median\":{med1:.2},\"p90\":{p90_1:.2}}},\
         \"batch256_us\":{{\"min\":{min256:.2},\"median\":{med256:.2},\"p90\":{p90_256:.2}}}}}"
    );
}
