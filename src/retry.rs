//! Retry scheduling for outbox entries: exponential backoff with full jitter,
//! honouring the server's Retry-After, with a cap on attempts.

use serde::{Deserialize, Serialize};

/// How failed deliveries are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Backoff before the first retry (upper bound of the jitter), in ms.
    pub base_ms: u64,
    /// Largest backoff, in ms.
    pub cap_ms: u64,
    /// Attempts that reached a server and failed before the mutation goes to
    /// the dead-letter queue. Time spent offline never counts.
    pub max_attempts: u32,
    /// How often to probe the server while it is unreachable, in ms.
    pub offline_probe_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 500,
            cap_ms: 5 * 60_000,
            max_attempts: 10,
            offline_probe_ms: 15_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), drawn uniformly
    /// from `0..=min(cap, base * 2^(attempt-1))` ("full jitter"), and never
    /// shorter than the server's `retry_after_ms`.
    pub fn backoff_ms(&self, attempt: u32, random: u64, retry_after_ms: u64) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        let ceiling = self.base_ms.saturating_mul(1u64 << exp).min(self.cap_ms);
        let jittered = if ceiling == 0 {
            0
        } else {
            random % (ceiling + 1)
        };
        jittered.max(retry_after_ms)
    }
}

// Property tests run natively (proptest does not build for wasm32).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(attempt in 1u32..100, random: u64, retry_after in 0u64..100_000) {
            let p = RetryPolicy::default();
            let d = p.backoff_ms(attempt, random, retry_after);
            let ceiling = (p.base_ms.saturating_mul(1u64 << (attempt - 1).min(40))).min(p.cap_ms);
            prop_assert!(d >= retry_after);
            prop_assert!(d <= ceiling.max(retry_after));
        }
    }

    #[test]
    fn jitter_spreads_retries() {
        let p = RetryPolicy::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut s = 1u64;
        for _ in 0..50 {
            seen.insert(p.backoff_ms(6, crate::env::splitmix64(&mut s), 0));
        }
        assert!(seen.len() > 40, "full jitter must not synchronise clients");
    }
}
