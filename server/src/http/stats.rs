//! HTTP-level counters and latency histograms, and the Prometheus text
//! rendering of everything (the service's counters included).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::ServiceMetrics;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// What the HTTP layer counts.
#[derive(Debug, Default)]
pub struct HttpStats {
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Mutations received in push requests (queued events arriving).
    pub mutations_received: AtomicU64,
    /// Requests refused with 429 (either limit).
    pub rate_limited: AtomicU64,
    /// Requests refused with 429 because their address failed to
    /// authenticate too often.
    pub auth_rate_limited: AtomicU64,
    /// Keys looked up in storage.
    pub auth_lookups: AtomicU64,
    /// Keys refused from the negative cache, without a lookup.
    pub auth_unknown_hits: AtomicU64,
    /// Requests refused with 409 `EVENT_IN_FLIGHT`.
    pub in_flight_refused: AtomicU64,
    /// Storage calls running now.
    pub storage_busy: AtomicU64,
    /// The most storage calls that ever ran at once (≤ `storage_workers`).
    pub storage_busy_max: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed by the idle or the header timeout.
    pub connections_timed_out: AtomicU64,
    /// Requests whose body did not arrive within `body_timeout` (408).
    pub body_timeouts: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HttpStats {
    /// Records one finished request.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        lock(&self.latency)
            .entry(route)
            .or_default()
            .observe(took.as_secs_f64());
        *lock(&self.responses).entry((route, status)).or_default() += 1;
    }

    /// Records a refused credential.
    pub fn auth_failure(&self, reason: &'static str) {
        *lock(&self.auth_failures).entry(reason).or_default() += 1;
    }

    /// The Prometheus text exposition of these and the service's counters.
    pub fn render(&self, m: &ServiceMetrics, backend: &str) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "tidesync_mutations_received_total",
            "Mutations received in push requests (queued events arriving).",
            get(&self.mutations_received),
        );
        counter(
            "tidesync_delta_runs_total",
            "Changes pages served.",
            m.delta_runs,
        );
        counter(
            "tidesync_snapshot_pages_total",
            "Snapshot pages served.",
            m.snapshot_pages,
        );
        counter(
            "tidesync_reconcile_runs_total",
            "Reconcile requests answered.",
            m.reconcile_runs,
        );
        counter(
            "tidesync_conflicts_total",
            "Mutations answered with a conflict.",
            m.conflicts,
        );
        counter(
            "tidesync_storage_failures_total",
            "Requests that failed because storage failed.",
            m.storage_failures,
        );
        counter(
            "tidesync_rate_limited_total",
            "Requests refused with 429.",
            get(&self.rate_limited),
        );
        counter(
            "tidesync_auth_rate_limited_total",
            "Requests refused with 429 because their address failed to authenticate too often.",
            get(&self.auth_rate_limited),
        );
        counter(
            "tidesync_auth_lookups_total",
            "Keys looked up in storage.",
            get(&self.auth_lookups),
        );
        counter(
            "tidesync_auth_unknown_key_hits_total",
            "Keys refused from the cache of unknown keys, without a lookup.",
            get(&self.auth_unknown_hits),
        );
        counter(
            "tidesync_in_flight_refused_total",
            "Requests refused because an op id was already in flight (409).",
            get(&self.in_flight_refused),
        );
        counter(
            "tidesync_connections_refused_total",
            "Connections refused (503) because the most connections were open.",
            get(&self.connections_refused),
        );
        counter(
            "tidesync_connections_timed_out_total",
            "Connections closed by the idle or the header timeout.",
            get(&self.connections_timed_out),
        );
        counter(
            "tidesync_body_timeouts_total",
            "Requests whose body did not arrive in time (408).",
            get(&self.body_timeouts),
        );
        let _ = writeln!(
            out,
            "# HELP tidesync_mutations_total Mutations answered, by result (applied = synced).\n\
             # TYPE tidesync_mutations_total counter"
        );
        for (result, v) in [
            ("applied", m.applied),
            ("duplicate", m.duplicates),
            ("conflict", m.conflicts),
            ("rejected", m.rejected_total()),
        ] {
            let _ = writeln!(out, "tidesync_mutations_total{{result=\"{result}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP tidesync_rejections_total Mutations rejected, by code.\n\
             # TYPE tidesync_rejections_total counter"
        );
        for (code, v) in &m.rejected {
            let _ = writeln!(out, "tidesync_rejections_total{{code=\"{code}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP tidesync_auth_failures_total Refused credentials, by reason.\n\
             # TYPE tidesync_auth_failures_total counter"
        );
        for (reason, v) in lock(&self.auth_failures).iter() {
            let _ = writeln!(
                out,
                "tidesync_auth_failures_total{{reason=\"{reason}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tidesync_http_responses_total HTTP responses, by route and status.\n\
             # TYPE tidesync_http_responses_total counter"
        );
        for ((route, status), v) in lock(&self.responses).iter() {
            let _ = writeln!(
                out,
                "tidesync_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tidesync_http_request_duration_seconds Request latency, by route.\n\
             # TYPE tidesync_http_request_duration_seconds histogram"
        );
        for (route, h) in lock(&self.latency).iter() {
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "tidesync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "tidesync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 tidesync_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 tidesync_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP tidesync_storage_busy Storage calls running now.\n\
             # TYPE tidesync_storage_busy gauge\ntidesync_storage_busy {}\n\
             # HELP tidesync_connections_open Connections open now.\n\
             # TYPE tidesync_connections_open gauge\ntidesync_connections_open {}\n\
             # HELP tidesync_info Server build and backend.\n# TYPE tidesync_info gauge\n\
             tidesync_info{{version=\"{}\",backend=\"{backend}\"}} 1",
            get(&self.storage_busy),
            get(&self.connections_open),
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}
