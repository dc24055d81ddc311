//! Benchmark hooks (not part of the API): AES-256-GCM seal + open in Wasm,
//! compared with WebCrypto by `bench/web/`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use wasm_bindgen::prelude::*;

/// Seals and opens `size` bytes `iterations` times with AES-256-GCM (random
/// 96-bit nonce, 16 bytes of AAD), as the store does; returns the bytes
/// opened (so nothing is optimised away).
#[doc(hidden)]
#[wasm_bindgen(js_name = __benchSealOpen)]
pub fn bench_seal_open(size: usize, iterations: u32) -> Result<f64, JsValue> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let cipher = Aes256Gcm::new((&key).into());
    let msg = vec![0x5au8; size];
    let aad = [7u8; 16];
    let mut total = 0usize;
    for _ in 0..iterations {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let n = Nonce::from_slice(&nonce);
        let ct = cipher
            .encrypt(
                n,
                Payload {
                    msg: &msg,
                    aad: &aad,
                },
            )
            .map_err(|_| JsValue::from_str("seal failed"))?;
        let pt = cipher
            .decrypt(
                n,
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| JsValue::from_str("open failed"))?;
        total += pt.len();
    }
    Ok(total as f64)
}
