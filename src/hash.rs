//! Hash primitives with no other dependency in the crate: payload checksums
//! (SHA-256), node ids and reconcile buckets (FNV-1a). A leaf module, so the
//! protocol, the clock and the digests can all use it.

use sha2::{Digest, Sha256};

/// 64-bit FNV-1a. Stable across platforms and releases: it is part of the
/// wire format (reconcile buckets and digests).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes` (without the formatting machinery: this runs
/// twice per entity in a bulk write).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}
