//! Admission: the per-terminal token-bucket rate limiter, the per-address
//! limit on failed authentications, and the set of op ids in flight.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidesync::OpId;

use crate::context::TerminalContext;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by key: `rate` tokens per second, up to `burst`.
#[derive(Debug)]
struct Buckets<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Above this many buckets, full ones (which lose nothing when forgotten)
/// are dropped.
const MAX_BUCKETS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64) -> Self {
        Buckets {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes a token for `key`, or says how long until one is there.
    /// `bounded`: if the table is full of buckets that are not, a new key
    /// is refused (for keys an anonymous client chooses, such as its
    /// address) instead of growing the table.
    fn take(&self, key: &K, now: Instant, bounded: bool) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > MAX_BUCKETS && !buckets.contains_key(key) {
            // Forget keys whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
            if bounded && buckets.len() > MAX_BUCKETS {
                return Err(Duration::from_secs(1));
            }
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket {
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

    /// Takes a token if there is one, else nothing (the bucket stays empty):
    /// for charging a failure that was refused anyway.
    fn charge(&self, key: &K, now: Instant) {
        let _ = self.take(key, now, true);
    }

    /// Gives back a token taken by [`Buckets::take`].
    fn refund(&self, key: &K) {
        if !self.enabled() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }
}

/// A token bucket per terminal: `rate` requests per second on average,
/// bursts of up to `burst`. Every request costs one token.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Buckets<(String, String)>,
}

impl RateLimiter {
    /// A limiter; `rate <= 0` disables it.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            buckets: Buckets::new(rate, burst),
        }
    }

    /// Takes a token for `ctx`'s terminal, or says how long until one is there.
    pub fn check(&self, ctx: &TerminalContext) -> Result<(), Duration> {
        self.check_at(ctx, Instant::now())
    }

    fn check_at(&self, ctx: &TerminalContext, now: Instant) -> Result<(), Duration> {
        // Terminals are authenticated: their number is bounded by the keys
        // issued, so their table is not.
        self.buckets
            .take(&(ctx.tenant.clone(), ctx.terminal.clone()), now, false)
    }
}

/// The part of a client address that one client controls: an IPv4 address,
/// or the /64 prefix of an IPv6 address (a client usually holds a whole
/// /64). An IPv4-mapped IPv6 address counts as its IPv4 address.
/// `None`: no address known (the router served in process, without a
/// socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<u128>);

impl ClientKey {
    /// The key of `addr`.
    pub fn of(addr: Option<IpAddr>) -> Self {
        ClientKey(addr.map(|ip| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u128::from(u32::from(v4)),
                None => ((u128::from(v6) >> 64) << 64) | (1 << 63),
            },
        }))
    }
}

/// Failed authentications per client address: a token bucket each. Every
/// request that is not known to carry a valid key takes a token before its
/// key is looked up (given back when the key proves valid); a refused key
/// (missing, malformed, unknown, expired, revoked) keeps it. An empty bucket
/// is `429 SYNC_RATE_LIMITED` without any storage work.
#[derive(Debug)]
pub struct AuthFailureLimiter {
    buckets: Buckets<ClientKey>,
}

impl AuthFailureLimiter {
    /// A limiter: `rate` failures per second per address on average, bursts
    /// of `burst`; `rate <= 0` disables it.
    pub fn new(rate: f64, burst: f64) -> Self {
        AuthFailureLimiter {
            buckets: Buckets::new(rate, burst),
        }
    }

    /// Takes a token for a request of unknown standing from `client`, or
    /// says how long until one is there.
    pub fn admit(&self, client: ClientKey) -> Result<(), Duration> {
        self.buckets.take(&client, Instant::now(), true)
    }

    /// Gives back the token of an admitted request whose key was valid.
    pub fn refund(&self, client: ClientKey) {
        self.buckets.refund(&client);
    }

    /// Charges a failure that was not admitted first (a key that had been
    /// valid and is no longer); an empty bucket stays empty.
    pub fn charge(&self, client: ClientKey) {
        self.buckets.charge(&client, Instant::now());
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
    fn failed_authentications_are_limited_per_address_and_valid_ones_refunded() {
        let l = AuthFailureLimiter::new(10.0, 2.0);
        let a = ClientKey::of(Some("10.0.0.1".parse().unwrap()));
        let b = ClientKey::of(Some("10.0.0.2".parse().unwrap()));
        let t0 = Instant::now();
        // A valid key gives its token back: any number of them.
        for _ in 0..10 {
            assert!(l.buckets.take(&a, t0, true).is_ok());
            l.refund(a);
        }
        assert!(l.buckets.take(&a, t0, true).is_ok());
        assert!(l.buckets.take(&a, t0, true).is_ok());
        let wait = l.buckets.take(&a, t0, true).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(l.buckets.take(&b, t0, true).is_ok(), "another address");
        assert!(l
            .buckets
            .take(&a, t0 + Duration::from_millis(100), true)
            .is_ok());
        // Disabled: everything passes.
        let off = AuthFailureLimiter::new(0.0, 1.0);
        for _ in 0..5 {
            assert!(off.admit(a).is_ok());
        }
    }

    #[test]
    fn client_keys_group_an_ipv6_64_and_unmap_ipv4() {
        let k = |s: &str| ClientKey::of(Some(s.parse().unwrap()));
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        assert_ne!(k("::"), k("0.0.0.0"));
        assert_ne!(ClientKey::of(None), k("0.0.0.0"));
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
