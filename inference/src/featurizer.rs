//! From one local write to the model's feature vector, as written by
//! `models/train.py` (its `raw_features` and `vector`, which this mirrors;
//! the tests check both agree on `models/vectors.json`).
//!
//! The constants (normalisation, rarity tables, threshold) come from
//! `models/anomaly.features.json`; the computations are fixed here, by
//! feature name, and a features file naming others is refused.

use crate::InferenceError;
use serde::Deserialize;
use std::collections::BTreeMap;
use tidesync::protocol::{Fields, MutationKind};
use tidesync::scoring::ScoreInput;

/// The features this crate computes, in the model's input order.
pub const FEATURES: [&str; 9] = [
    "rooms.log_rate",
    "rooms.log_rate_change",
    "rooms.status_nll",
    "rooms.hour_nll",
    "sales.log_total",
    "sales.log_items",
    "sales.discount_frac",
    "sales.refund",
    "sales.hour_nll",
];
const ROOMS: std::ops::Range<usize> = 0..4;
const SALES: std::ops::Range<usize> = 4..9;

#[derive(Debug, Deserialize)]
struct Spec {
    model_sha256: String,
    width: usize,
    features: Vec<FeatureSpec>,
    collections: BTreeMap<String, CollectionSpec>,
    statuses: Vec<String>,
    tables: Tables,
    utc_offset_minutes: i64,
    threshold: f64,
}

#[derive(Debug, Deserialize)]
struct FeatureSpec {
    name: String,
    mean: f64,
    std: f64,
    default: f64,
}

#[derive(Debug, Deserialize)]
struct CollectionSpec {
    kinds: Vec<MutationKind>,
}

#[derive(Debug, Deserialize)]
struct Tables {
    #[serde(rename = "rooms.status_nll")]
    status_nll: BTreeMap<String, f64>,
    #[serde(rename = "rooms.status_nll_unseen")]
    status_nll_unseen: f64,
    #[serde(rename = "rooms.hour_nll")]
    room_hour_nll: Vec<f64>,
    #[serde(rename = "sales.hour_nll")]
    sale_hour_nll: Vec<f64>,
}

/// Turns a [`ScoreInput`] into the model's standardised features.
#[derive(Debug, Clone)]
pub struct Featurizer {
    model_sha256: String,
    mean: [f64; 9],
    std: [f64; 9],
    default: [f64; 9],
    room_kinds: Vec<MutationKind>,
    sale_kinds: Vec<MutationKind>,
    statuses: Vec<String>,
    status_nll: BTreeMap<String, f64>,
    status_nll_unseen: f64,
    room_hour_nll: [f64; 24],
    sale_hour_nll: [f64; 24],
    utc_offset_minutes: i64,
    threshold: f64,
}

fn invalid(reason: impl Into<String>) -> InferenceError {
    InferenceError::FeaturesInvalid {
        reason: reason.into(),
    }
}

fn hours(v: &[f64], what: &str) -> Result<[f64; 24], InferenceError> {
    let h: [f64; 24] = v
        .try_into()
        .map_err(|_| invalid(format!("{what} has {} hours, not 24", v.len())))?;
    if h.iter().all(|x| x.is_finite()) {
        Ok(h)
    } else {
        Err(invalid(format!("{what} is not finite")))
    }
}

impl Featurizer {
    /// Reads `anomaly.features.json`.
    pub fn from_json(json: &str) -> Result<Featurizer, InferenceError> {
        let spec: Spec = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let names: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
        if spec.width != FEATURES.len() || names != FEATURES {
            return Err(invalid(format!(
                "features {names:?}, this crate computes {FEATURES:?}"
            )));
        }
        let mut mean = [0.0; 9];
        let mut std = [1.0; 9];
        let mut default = [0.0; 9];
        for (i, f) in spec.features.iter().enumerate() {
            if !(f.mean.is_finite() && f.default.is_finite() && f.std.is_finite() && f.std > 0.0) {
                return Err(invalid(format!("{}: constants out of range", f.name)));
            }
            (mean[i], std[i], default[i]) = (f.mean, f.std, f.default);
        }
        let kinds = |c: &str| -> Result<Vec<MutationKind>, InferenceError> {
            spec.collections
                .get(c)
                .map(|c| c.kinds.clone())
                .ok_or_else(|| invalid(format!("no collection {c}")))
        };
        let t = &spec.tables;
        if !(t.status_nll_unseen.is_finite() && t.status_nll.values().all(|v| v.is_finite())) {
            return Err(invalid("rooms.status_nll is not finite"));
        }
        if !(spec.threshold.is_finite() && spec.threshold >= 0.0) {
            return Err(invalid("threshold out of range"));
        }
        Ok(Featurizer {
            room_kinds: kinds("rooms")?,
            sale_kinds: kinds("sales")?,
            room_hour_nll: hours(&t.room_hour_nll, "rooms.hour_nll")?,
            sale_hour_nll: hours(&t.sale_hour_nll, "sales.hour_nll")?,
            status_nll: t.status_nll.clone(),
            status_nll_unseen: t.status_nll_unseen,
            statuses: spec.statuses,
            utc_offset_minutes: spec.utc_offset_minutes,
            threshold: spec.threshold,
            model_sha256: spec.model_sha256.to_ascii_lowercase(),
            mean,
            std,
            default,
        })
    }

    /// The SHA-256 of the model these features were written for.
    pub fn model_sha256(&self) -> &str {
        &self.model_sha256
    }

    /// Values per feature vector.
    pub fn width(&self) -> usize {
        FEATURES.len()
    }

    /// A score at or above this is flagged.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The standardised features of one write, or `None` when it is not
    /// scored (another collection, a delete, a kind the model does not
    /// know). A field that is missing or not a number takes its default.
    pub fn features(&self, input: &ScoreInput<'_>) -> Option<[f32; 9]> {
        let after = input.after?;
        let hour = self.hour(input.at_ms);
        let mut raw: [Option<f64>; 9] = [None; 9];
        let block = match input.collection {
            "rooms" if self.room_kinds.contains(&input.kind) => {
                self.rooms(input.before, after, hour, &mut raw);
                ROOMS
            }
            "sales" if self.sale_kinds.contains(&input.kind) => {
                sales(after, self.sale_hour_nll[hour], &mut raw);
                SALES
            }
            _ => return None,
        };
        let mut x = [0.0f32; 9];
        for i in block {
            let v = raw[i].unwrap_or(self.default[i]);
            x[i] = ((v - self.mean[i]) / self.std[i]) as f32;
        }
        Some(x)
    }

    fn hour(&self, at_ms: u64) -> usize {
        let minutes =
            i64::try_from(at_ms / 60_000).unwrap_or(i64::MAX / 2) + self.utc_offset_minutes;
        // rem_euclid(24) is in 0..24.
        minutes.div_euclid(60).rem_euclid(24) as usize
    }

    fn status<'a>(&self, fields: Option<&'a Fields>) -> &'a str {
        match fields
            .and_then(|f| f.get("status"))
            .and_then(|v| v.as_str())
        {
            Some(s) if self.statuses.iter().any(|k| k == s) => s,
            _ => "",
        }
    }

    fn rooms(
        &self,
        before: Option<&Fields>,
        after: &Fields,
        hour: usize,
        raw: &mut [Option<f64>; 9],
    ) {
        let ra = num(Some(after), "rate");
        let rb = num(before, "rate");
        // The change is scored, not the entity: a rate counts when written.
        if let Some(a) = ra {
            if before.is_none() || Some(a) != rb {
                raw[0] = Some(a.max(0.0).ln_1p());
            }
        }
        raw[1] = Some(match (ra, rb) {
            (Some(a), Some(b)) => a.max(0.0).ln_1p() - b.max(0.0).ln_1p(),
            _ => 0.0,
        });
        let token = format!("{}>{}", self.status(before), self.status(Some(after)));
        raw[2] = Some(
            self.status_nll
                .get(&token)
                .copied()
                .unwrap_or(self.status_nll_unseen),
        );
        raw[3] = Some(self.room_hour_nll[hour]);
    }
}

fn sales(after: &Fields, hour_nll: f64, raw: &mut [Option<f64>; 9]) {
    let total = num(Some(after), "total");
    let items = num(Some(after), "items");
    let discount = num(Some(after), "discount").unwrap_or(0.0).max(0.0);
    raw[4] = total.map(|t| t.abs().ln_1p());
    raw[5] = items.map(|i| i.max(0.0).ln_1p());
    raw[6] = Some(match total {
        Some(t) if t.abs() + discount > 0.0 => discount / (t.abs() + discount),
        _ => 0.0,
    });
    raw[7] = Some(if total.is_some_and(|t| t < 0.0) {
        1.0
    } else {
        0.0
    });
    raw[8] = Some(hour_nll);
}

/// A field as a finite number, or `None` (missing, null, a string...).
fn num(fields: Option<&Fields>, name: &str) -> Option<f64> {
    fields?.get(name)?.as_f64().filter(|v| v.is_finite())
}
