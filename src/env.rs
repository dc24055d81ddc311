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

/// The real clock and the operating system's CSPRNG (`getrandom`), for
/// native hosts. Every draw comes from the OS: an observed op id says
/// nothing about the next one. (The deterministic [`SimEnv`] is for the
/// simulation and tests only.)
#[cfg(not(target_family = "wasm"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

#[cfg(not(target_family = "wasm"))]
impl Environment for SystemEnv {
    fn now_ms(&self) -> u64 {
        unix_now_ms()
    }
    fn random_u64(&self) -> u64 {
        // The OS generator does not fail once the process runs (getrandom
        // documents the rare early-boot case); an id from a weaker source
        // would be worse than stopping.
        getrandom::u64().expect("the operating system's random generator is available")
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    /// The inverse of splitmix64's output mix, to recover the state from one
    /// output (what an attacker who saw one op id would do).
    fn unmix(mut z: u64) -> u64 {
        fn inv(a: u64) -> u64 {
            // Newton's iteration for the inverse of an odd number mod 2^64.
            let mut x = a;
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
            }
            x
        }
        fn unxorshift(z: u64, s: u32) -> u64 {
            let mut x = z;
            for _ in 0..(64 / s + 1) {
                x = z ^ (x >> s);
            }
            x
        }
        z = unxorshift(z, 31);
        z = z.wrapping_mul(inv(0x94D0_49BB_1331_11EB));
        z = unxorshift(z, 27);
        z = z.wrapping_mul(inv(0xBF58_476D_1CE4_E5B9));
        unxorshift(z, 30)
    }

    #[test]
    fn one_output_of_the_system_generator_does_not_predict_the_next() {
        // The attack works on the deterministic generator...
        let sim = SimEnv::new(0, 12345);
        let seen = sim.random_u64();
        let mut state = unmix(seen);
        assert_eq!(
            splitmix64(&mut state),
            sim.random_u64(),
            "splitmix is predictable"
        );
        // ...and not on the system one.
        let env = SystemEnv;
        for _ in 0..100 {
            let seen = env.random_u64();
            let mut state = unmix(seen);
            assert_ne!(splitmix64(&mut state), env.random_u64());
        }
    }

    #[test]
    fn two_engines_started_in_the_same_millisecond_draw_different_ids() {
        let (a, b) = (SystemEnv, SystemEnv);
        let ms = unix_now_ms();
        let id = |e: &SystemEnv| {
            let r = (u128::from(e.random_u64()) << 64) | u128::from(e.random_u64());
            crate::protocol::OpId::from_parts(ms, r)
        };
        assert_ne!(id(&a), id(&b));
    }
}
