//! Full jitter's bounds, through the public API (mutation testing found the
//! upper bound unchecked).

use crate::common::*;

#[test]
fn full_jitter_reaches_its_ceiling_inclusive() {
    let p = RetryPolicy {
        base_ms: 500,
        cap_ms: 4_000,
        max_attempts: 5,
        offline_probe_ms: 1_000,
    };
    // Uniform over 0..=ceiling: a draw of `ceiling` is the ceiling itself.
    assert_eq!(p.backoff_ms(1, 500, 0), 500);
    assert_eq!(p.backoff_ms(2, 1_000, 0), 1_000);
    assert_eq!(p.backoff_ms(3, 2_001, 0), 0, "2,001 wraps to 0 below 2,000");
    assert_eq!(p.backoff_ms(9, 4_000, 0), 4_000, "capped");
    assert_eq!(p.backoff_ms(9, 4_001, 0), 0);
    // The server's Retry-After is a floor.
    assert_eq!(p.backoff_ms(1, 0, 7_000), 7_000);
    // A 1 ms base: still 0..=1.
    let tiny = RetryPolicy { base_ms: 1, ..p };
    assert_eq!(tiny.backoff_ms(1, 1, 0), 1);
    assert_eq!(tiny.backoff_ms(1, 2, 0), 0);
}
