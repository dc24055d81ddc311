//! [`BrowserEnv`]: the engine's clock (`Date.now`) and randomness
//! (`crypto.getRandomValues`, through getrandom) in a browser or worker.

use crate::env::Environment;

/// The browser's clock and cryptographic random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrowserEnv;

impl Environment for BrowserEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }
    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        // getrandom's wasm_js backend calls crypto.getRandomValues; it only
        // fails where no such API exists, which a browser always has.
        getrandom::fill(&mut b).expect("crypto.getRandomValues is available");
        u64::from_le_bytes(b)
    }
}
