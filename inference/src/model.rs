//! Loading an allow-listed ONNX model with tract and running it on batches.

use crate::InferenceError;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// The batch size of the second fixed-shape plan (batch 1 is the first).
pub const BIG_BATCH: usize = 256;

type Plan = Arc<TypedSimplePlan>;

/// An ONNX model `[batch, width] f32 -> [batch] f32`, optimised by tract for
/// batch 1, batch [`BIG_BATCH`] and any other batch size.
///
/// Fixed shapes are planned apart because tract optimises them further
/// (shared/notes/TOOLCHAIN.md measured a symbolic batch 1.6x slower at 256
/// on an autoencoder of this size): a batch is run
/// in chunks of [`BIG_BATCH`], and the remainder by the batch-1 plan (one
/// row) or the symbolic one.
#[derive(Debug, Clone)]
pub struct Model {
    sha256: String,
    width: usize,
    one: Plan,
    big: Plan,
    any: Plan,
}

fn corrupt(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::ModelCorrupt {
        reason: e.to_string(),
    }
}

impl Model {
    /// Loads `bytes` if their SHA-256 (lowercase hex) is in `allowed_sha256`.
    ///
    /// Errors: `MODEL_MISSING` (no bytes), `MODEL_NOT_ALLOWED` (checked
    /// before tract reads a byte), `MODEL_CORRUPT` (tract cannot parse or
    /// optimise it, or its input is not `[batch, width]`).
    pub fn load(bytes: &[u8], allowed_sha256: &[&str]) -> Result<Model, InferenceError> {
        if bytes.is_empty() {
            return Err(InferenceError::ModelMissing);
        }
        let sha256 = hex(&Sha256::digest(bytes));
        if !allowed_sha256
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&sha256))
        {
            return Err(InferenceError::ModelNotAllowed { sha256 });
        }
        let onnx = tract_onnx::onnx();
        let parsed = onnx
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(corrupt)?;
        let width = parsed
            .input_fact(0)
            .map_err(corrupt)?
            .shape
            .dim(1)
            .and_then(|d| d.concretize())
            .and_then(|d| d.as_i64())
            .and_then(|w| usize::try_from(w).ok())
            .filter(|w| *w > 0)
            .ok_or_else(|| corrupt("the input is not [batch, width] with a fixed width"))?;
        let plan = |batch: Option<usize>| -> Result<Plan, InferenceError> {
            let shape: TVec<TDim> = match batch {
                Some(b) => tvec![b.to_dim(), width.to_dim()],
                None => tvec![parsed.sym("batch").to_dim(), width.to_dim()],
            };
            parsed
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(corrupt)
        };
        let model = Model {
            one: plan(Some(1))?,
            big: plan(Some(BIG_BATCH))?,
            any: plan(None)?,
            sha256,
            width,
        };
        // A model that types but cannot run (or answers another shape) is
        // corrupt too: try one row of zeros.
        let probe = model
            .run(&vec![0.0; width])
            .map_err(|e| corrupt(e.to_string()))?;
        if probe.len() != 1 {
            return Err(corrupt("the output is not one score per row"));
        }
        Ok(model)
    }

    /// The model file's SHA-256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Values per row of the input.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Scores a batch given as rows of [`width`](Self::width) values, one
    /// after the other: one score per row.
    pub fn run(&self, batch: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let w = self.width;
        if batch.len() % w != 0 {
            return Err(InferenceError::BatchShape {
                len: batch.len(),
                width: w,
            });
        }
        let rows = batch.len() / w;
        let mut out = Vec::with_capacity(rows);
        for chunk in batch.chunks(BIG_BATCH * w) {
            let n = chunk.len() / w;
            let plan = match n {
                1 => &self.one,
                BIG_BATCH => &self.big,
                _ => &self.any,
            };
            self.run_plan(plan, chunk, n, &mut out)?;
        }
        Ok(out)
    }

    /// Like [`run`](Self::run), with rows as arrays (`N` must equal the width).
    pub fn run_rows<const N: usize>(&self, rows: &[[f32; N]]) -> Result<Vec<f32>, InferenceError> {
        if N != self.width {
            return Err(InferenceError::BatchShape {
                len: N * rows.len(),
                width: self.width,
            });
        }
        self.run(rows.as_flattened())
    }

    fn run_plan(
        &self,
        plan: &Plan,
        chunk: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let failed = |e: TractError| InferenceError::ModelFailed {
            reason: e.to_string(),
        };
        let input = Tensor::from_shape(&[rows, self.width], chunk).map_err(failed)?;
        let result = plan.run(tvec!(input.into_tvalue())).map_err(failed)?;
        let scores = result
            .first()
            .ok_or_else(|| InferenceError::ModelFailed {
                reason: "no output".into(),
            })?
            .to_plain_array_view::<f32>()
            .map_err(failed)?;
        if scores.len() != rows {
            return Err(InferenceError::ModelFailed {
                reason: format!("{} scores for {rows} rows", scores.len()),
            });
        }
        out.extend(scores.iter().copied());
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
