//! The engine's view of time and randomness, injected so that tests and the
//! simulation are deterministic.

use crate::{SendOutsideWasm, SyncOutsideWasm};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Time and randomness for the engine.
pub trait Environment: SendOutsideWasm + SyncOutsideWasm {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// 64 random bits.
    fn random_u64(&self) -> u64;
}

/// A deterministic environment: a manual clock and a seeded generator
/// (splitmix64). Clones share the clock and the generator.
#[derive(Debug, Clone)]
pub struct SimEnv {
    now: Arc<AtomicU64>,
    rng: Arc<AtomicU64>,
}

impl SimEnv {
    /// A clock at `start_ms` and a generator seeded with `seed`.
    pub fn new(start_ms: u64, seed: u64) -> Self {
        SimEnv {
            now: Arc::new(AtomicU64::new(start_ms)),
            rng: Arc::new(AtomicU64::new(seed)),
        }
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the clock (tests of skew may move it back).
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

/// One step of splitmix64.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Environment for SimEnv {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn random_u64(&self) -> u64 {
        let mut s = self.rng.load(Ordering::SeqCst);
        let v = splitmix64(&mut s);
        self.rng.store(s, Ordering::SeqCst);
        v
    }
}

/// Milliseconds since the Unix epoch from the system clock (native hosts;
/// the browser reads `Date.now()`). The one clock helper of the workspace.
#[cfg(not(target_family = "wasm"))]
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The real clock and OS-seeded randomness, for native hosts.
#[cfg(not(target_family = "wasm"))]
#[derive(Debug)]
pub struct SystemEnv {
    state: AtomicU64,
}

#[cfg(not(target_family = "wasm"))]
impl Default for SystemEnv {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the operating system's generator.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x7469_6465);
        SystemEnv {
            state: AtomicU64::new(h.finish()),
        }
    }
}

#[cfg(not(target_family = "wasm"))]
impl Environment for SystemEnv {
    fn now_ms(&self) -> u64 {
        unix_now_ms()
    }
    fn random_u64(&self) -> u64 {
        let mut s = self.state.load(Ordering::SeqCst);
        let v = splitmix64(&mut s);
        self.state.store(s, Ordering::SeqCst);
        v
    }
}
