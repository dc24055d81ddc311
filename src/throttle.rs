//! Bandwidth-aware push sizing: batch size and concurrency follow measured
//! throughput and latency, the connection hint (save-data, effective type),
//! and an optional bytes-per-second cap.

use serde::{Deserialize, Serialize};

/// The browser's `navigator.connection` (or the host's equivalent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionHint {
    /// The user asked to save data.
    pub save_data: bool,
    /// `slow-2g`, `2g`, `3g`, `4g` (absent: unknown).
    pub effective_type: Option<String>,
}

/// Limits the throttle works within.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// Smallest batch.
    pub min_batch: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// Most batches in flight at once.
    pub max_concurrency: usize,
    /// Aim for a batch to take about this long, in ms.
    pub target_batch_ms: u64,
    /// Optional cap on upload bytes per second.
    pub max_bytes_per_sec: Option<u64>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            min_batch: 1,
            max_batch: 500,
            max_concurrency: 4,
            target_batch_ms: 1_000,
            max_bytes_per_sec: None,
        }
    }
}

/// What the next push round should send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPlan {
    /// Mutations per request.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Measures pushes and sizes the next ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    config: ThrottleConfig,
    hint: ConnectionHint,
    /// Smoothed mutations per second acknowledged.
    items_per_sec: Option<f64>,
    /// Smoothed request latency, ms.
    latency_ms: Option<f64>,
    /// Not before this time (bytes cap), ms.
    next_allowed_at: u64,
}

impl Throttle {
    /// A throttle with no measurements yet.
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            hint: ConnectionHint::default(),
            items_per_sec: None,
            latency_ms: None,
            next_allowed_at: 0,
        }
    }

    /// Updates the connection hint.
    pub fn set_hint(&mut self, hint: ConnectionHint) {
        self.hint = hint;
    }

    /// Sets or clears the bytes-per-second cap.
    pub fn set_max_bytes_per_sec(&mut self, cap: Option<u64>) {
        self.config.max_bytes_per_sec = cap;
    }

    /// Whether a bytes-per-second cap is set.
    pub fn capped(&self) -> bool {
        self.config.max_bytes_per_sec.is_some_and(|c| c > 0)
    }

    /// The earliest time the next push may start (bytes cap), ms.
    pub fn next_allowed_at(&self) -> u64 {
        self.next_allowed_at
    }

    fn hint_ceiling(&self) -> (usize, usize) {
        let (batch, conc) = match self.hint.effective_type.as_deref() {
            Some("slow-2g") => (10, 1),
            Some("2g") => (25, 1),
            Some("3g") => (100, 2),
            _ => (self.config.max_batch, self.config.max_concurrency),
        };
        if self.hint.save_data {
            ((batch / 2).max(1), 1)
        } else {
            (batch, conc)
        }
    }

    /// The plan for the next push round.
    pub fn plan(&self) -> PushPlan {
        let (hint_batch, hint_conc) = self.hint_ceiling();
        let measured = match (self.items_per_sec, self.latency_ms) {
            (Some(ips), _) => (ips * self.config.target_batch_ms as f64 / 1000.0).round() as usize,
            _ => 50,
        };
        let batch = measured
            .clamp(self.config.min_batch, self.config.max_batch)
            .min(hint_batch)
            .max(self.config.min_batch);
        let concurrency = match self.latency_ms {
            // High latency but healthy throughput: overlap requests.
            Some(l) if l > 500.0 => hint_conc.min(self.config.max_concurrency),
            Some(_) => hint_conc.min(2),
            None => 1,
        }
        .max(1);
        PushPlan {
            batch_size: batch,
            concurrency,
        }
    }

    /// Records a completed request: `items` acknowledged, `bytes` sent,
    /// `elapsed_ms` from send to answer, finishing at `now_ms`.
    pub fn record(&mut self, items: usize, bytes: u64, elapsed_ms: u64, now_ms: u64) {
        let elapsed = elapsed_ms.max(1) as f64;
        let ips = items as f64 * 1000.0 / elapsed;
        self.items_per_sec = Some(match self.items_per_sec {
            Some(prev) => prev * 0.7 + ips * 0.3,
            None => ips,
        });
        self.latency_ms = Some(match self.latency_ms {
            Some(prev) => prev * 0.7 + elapsed * 0.3,
            None => elapsed,
        });
        if let Some(cap) = self.config.max_bytes_per_sec.filter(|c| *c > 0) {
            let spend_ms = bytes.saturating_mul(1000) / cap;
            let start = now_ms.saturating_sub(elapsed_ms);
            self.next_allowed_at = self.next_allowed_at.max(start + spend_ms);
        }
    }

    /// Records a failed request: halve the measured throughput so the next
    /// batch is smaller.
    pub fn record_failure(&mut self) {
        // Measured rates above what a full batch needs do not count: the
        // next batch must be smaller than the one that failed.
        let full =
            self.config.max_batch as f64 * 1000.0 / self.config.target_batch_ms.max(1) as f64;
        if let Some(ips) = self.items_per_sec.as_mut() {
            *ips = ips.min(full) / 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_connections_get_small_serial_batches() {
        let mut t = Throttle::new(ThrottleConfig::default());
        t.record(500, 100_000, 100, 1_000);
        assert!(t.plan().batch_size > 100);
        t.set_hint(ConnectionHint {
            save_data: false,
            effective_type: Some("2g".into()),
        });
        assert_eq!(
            t.plan(),
            PushPlan {
                batch_size: 25,
                concurrency: 1
            }
        );
        t.set_hint(ConnectionHint {
            save_data: true,
            effective_type: Some("2g".into()),
        });
        assert_eq!(t.plan().batch_size, 12);
    }

    #[test]
    fn batch_follows_measured_throughput() {
        let mut t = Throttle::new(ThrottleConfig::default());
        for i in 0..10 {
            t.record(10, 1_000, 1_000, i * 1_000);
        }
        let slow = t.plan().batch_size;
        for i in 0..10 {
            t.record(200, 20_000, 100, 20_000 + i * 1_000);
        }
        let fast = t.plan().batch_size;
        assert!(slow <= 12, "10 items/s aims at ~10 per batch, got {slow}");
        assert!(fast >= 400, "2000 items/s fills batches, got {fast}");
        t.record_failure();
        assert!(t.plan().batch_size < fast);
    }

    #[test]
    fn byte_cap_spaces_requests() {
        let mut t = Throttle::new(ThrottleConfig {
            max_bytes_per_sec: Some(10_000),
            ..ThrottleConfig::default()
        });
        t.record(10, 50_000, 100, 1_100);
        assert_eq!(t.next_allowed_at(), 1_000 + 5_000);
    }
}
