//! Per-terminal admission: the token-bucket rate limiter and the set of op
//! ids in flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidesync::OpId;

use crate::context::TerminalContext;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per terminal: `rate` requests per second on average,
/// bursts of up to `burst`. Every request costs one token.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    /// A limiter; `rate <= 0` disables it.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ctx`'s terminal, or says how long until one is there.
    pub fn check(&self, ctx: &TerminalContext) -> Result<(), Duration> {
        self.check_at(ctx, Instant::now())
    }

    fn check_at(&self, ctx: &TerminalContext, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget terminals whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets
            .entry((ctx.tenant.clone(), ctx.terminal.clone()))
            .or_insert(Bucket {
                tokens: self.burst,
                last: now,
            });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

type OpKey = (String, String, String, OpId);

/// The op ids being processed right now, keyed like the ledger
/// (tenant, branch, terminal, op_id). A second request carrying one of them while
/// the first is still running is refused with `EVENT_IN_FLIGHT` (409), as
/// the IETF Idempotency-Key draft prescribes, instead of racing it.
#[derive(Debug, Default)]
pub struct InFlight {
    ops: Arc<Mutex<HashSet<OpKey>>>,
}

/// Releases its op ids when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    ops: Arc<Mutex<HashSet<OpKey>>>,
    held: Vec<OpKey>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.held {
            ops.remove(k);
        }
    }
}

impl InFlight {
    /// Claims every op id of a request, or none: returns the first one that
    /// another request holds.
    pub fn claim<'a>(
        &self,
        ctx: &TerminalContext,
        op_ids: impl IntoIterator<Item = &'a OpId>,
    ) -> Result<InFlightGuard, OpId> {
        let mut held: Vec<OpKey> = Vec::new();
        for op in op_ids {
            let key = (
                ctx.tenant.clone(),
                ctx.branch.clone(),
                ctx.terminal.clone(),
                op.clone(),
            );
            if !held.contains(&key) {
                held.push(key); // an op repeated within one request counts once
            }
        }
        {
            let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(busy) = held.iter().find(|k| ops.contains(*k)) {
                return Err(busy.3.clone());
            }
            ops.extend(held.iter().cloned());
        }
        Ok(InFlightGuard {
            ops: Arc::clone(&self.ops),
            held,
        })
    }

    /// How many op ids are in flight.
    pub fn len(&self) -> usize {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0, 3.0);
        let a = TerminalContext::new("t", "b", "a");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(&a, t0).is_ok());
        }
        let wait = l.check_at(&a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Another terminal has its own bucket.
        assert!(l.check_at(&TerminalContext::new("t", "b", "z"), t0).is_ok());
        assert!(l.check_at(&a, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check_at(&a, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn in_flight_claims_all_or_nothing_and_releases_on_drop() {
        let f = InFlight::default();
        let ctx = TerminalContext::new("t", "b", "a");
        let (o1, o2, o3) = (
            OpId::from_parts(1, 1),
            OpId::from_parts(1, 2),
            OpId::from_parts(1, 3),
        );
        let g = f.claim(&ctx, [&o1, &o2, &o1]).unwrap();
        assert_eq!(f.claim(&ctx, [&o3, &o2]).unwrap_err(), o2);
        assert_eq!(f.len(), 2, "o3 was given back");
        // Another terminal's op ids are independent.
        assert!(f.claim(&TerminalContext::new("t", "b", "x"), [&o1]).is_ok());
        drop(g);
        assert!(f.claim(&ctx, [&o1, &o2]).is_ok());
        assert!(f.is_empty());
    }
}
