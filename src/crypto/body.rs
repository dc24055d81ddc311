//! The body a value is sealed as: lz4 when it helps, then padding to a
//! Padmé length, so a stored length says little about the content.
//!
//! ```text
//! body = [codec: 2 raw | 3 lz4][payload length: u32 BE][payload][zeros]
//! ```
//! Codecs 0 (raw) and 1 (lz4), without length or padding, are read from
//! stores written before padding.

use super::CipherError;
use zeroize::Zeroizing;

/// Values at least this long are compressed before sealing.
const COMPRESS_MIN: usize = 96;
/// Body codecs. 0 and 1 (unpadded) are only read, from older stores.
const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_RAW_PADDED: u8 = 2;
const CODEC_LZ4_PADDED: u8 = 3;
/// Bodies shorter than this are padded up to it.
const PAD_MIN: usize = 32;

/// The Padmé length for a body of `len` bytes: the mantissa is cut to
/// about log2(log2(len)) bits, so a stored length says at most that many
/// bits about its content, at a cost of at most 12% (about 6% on average
/// for values of a few hundred bytes).
fn padded_len(len: usize) -> usize {
    if len <= PAD_MIN {
        return PAD_MIN;
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = u32::BITS - e.leading_zeros(); // floor(log2 e) + 1
    let mask = (1usize << (e - s)) - 1;
    (len + mask) & !mask
}

/// The padded body of `plaintext`.
pub(super) fn encode(plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
    let compressed = (plaintext.len() >= COMPRESS_MIN)
        .then(|| Zeroizing::new(lz4_flex::compress_prepend_size(plaintext)))
        .filter(|c| c.len() < plaintext.len());
    let (codec, payload): (u8, &[u8]) = match &compressed {
        Some(c) => (CODEC_LZ4_PADDED, c),
        None => (CODEC_RAW_PADDED, plaintext),
    };
    let len = u32::try_from(payload.len())
        .map_err(|_| CipherError::Tampered("value over 4 GiB".into()))?;
    let mut body = Zeroizing::new(Vec::with_capacity(padded_len(5 + payload.len())));
    body.push(codec);
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(payload);
    let padded = padded_len(body.len());
    body.resize(padded, 0);
    Ok(body)
}

/// The plaintext of an opened body, of any codec.
pub(super) fn decode(body: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
    let unpadded = |b: &[u8]| -> Result<std::ops::Range<usize>, CipherError> {
        let len = b
            .get(1..5)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .filter(|l| 5 + l <= b.len())
            .ok_or_else(|| CipherError::Tampered("bad padded body".into()))?;
        Ok(5..5 + len)
    };
    let lz4 = |c: &[u8]| {
        lz4_flex::decompress_size_prepended(c)
            .map(Zeroizing::new)
            .map_err(|e| CipherError::Tampered(format!("bad compressed body: {e}")))
    };
    match body.first().copied() {
        Some(CODEC_RAW) => Ok(Zeroizing::new(body[1..].to_vec())),
        Some(CODEC_LZ4) => lz4(&body[1..]),
        Some(CODEC_RAW_PADDED) => Ok(Zeroizing::new(body[unpadded(body)?].to_vec())),
        Some(CODEC_LZ4_PADDED) => lz4(&body[unpadded(body)?]),
        _ => Err(CipherError::Tampered("unknown body codec".into())),
    }
}

// Run natively and, in the browser suite, in Chromium.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{gcm_seal, value_aad, StoreCipher, FORMAT_VERSION, HEADER_LEN, TAG_LEN};

    fn cipher() -> StoreCipher {
        StoreCipher::generate(1).unwrap()
    }

    /// Sealed sizes come in Padmé buckets: values a few bytes apart (a
    /// status word, a digit more in an amount) seal to the same length, so
    /// a length seen over time tells little about what changed.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn sealed_lengths_come_in_padded_buckets() {
        let mut c = cipher();
        let a = c.seal("s", "k", br#"{"status":"clean"}"#).unwrap();
        let b = c.seal("s", "k", br#"{"status":"inspected"}"#).unwrap();
        assert_eq!(a.len(), b.len(), "short values share one bucket");
        let noise = |n: usize| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect()
        };
        let x = c.seal("s", "k", &noise(300)).unwrap();
        let y = c.seal("s", "k", &noise(305)).unwrap();
        assert_eq!(x.len(), y.len(), "300 and 305 bytes share a bucket");
        for n in [0, 1, 31, 32, 33, 100, 300, 1000, 5000, 70_000] {
            let v = noise(n);
            let s = c.seal("s", "k", &v).unwrap();
            assert_eq!(&c.open_value("s", "k", &s).unwrap()[..], &v[..]);
            let body = s.len() - HEADER_LEN - TAG_LEN;
            assert!(body <= PAD_MIN.max((5 + n) * 112 / 100 + 1), "{n}: {body}");
        }
        for n in 1..5000 {
            let p = padded_len(n);
            assert!(
                p >= n && p <= PAD_MIN.max(n + n * 12 / 100 + 1),
                "{n} -> {p}"
            );
        }
    }

    /// Values sealed by builds before padding (codecs 0 and 1) still open.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn unpadded_values_of_older_stores_still_open() {
        let c = cipher();
        let key = *c.ring.key(c.ring.current).unwrap();
        let old = |body: Vec<u8>| {
            let sealed = gcm_seal(&key, &value_aad("s", "k", 1), &body).unwrap();
            let mut out = vec![FORMAT_VERSION];
            out.extend_from_slice(&c.ring.current.to_be_bytes());
            out.extend_from_slice(&sealed);
            out
        };
        let mut raw = vec![CODEC_RAW];
        raw.extend_from_slice(b"hello");
        assert_eq!(&c.open_value("s", "k", &old(raw)).unwrap()[..], b"hello");
        let text = b"late checkout late checkout late checkout".repeat(5);
        let mut lz = vec![CODEC_LZ4];
        lz.extend_from_slice(&lz4_flex::compress_prepend_size(&text));
        assert_eq!(&c.open_value("s", "k", &old(lz)).unwrap()[..], &text[..]);
    }
}
