//! The key ring (data keys, record-key MAC key, usage counter), sealed by the
//! master key, and the key envelope that wraps the master key under a KEK.

use super::{gcm_open, gcm_seal, random_bytes, random_key, CipherError};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Version 2 adds the rotation epoch and the integrity mark; version 1
/// rings (no mark) still open.
const RING_VERSION: u8 = 2;
const RING_AAD: &[u8] = b"tidesync/keyring/v1";
const MARK_LEN: usize = 8 * 4 + 32;
/// Most PBKDF2-SHA256 iterations accepted from a stored envelope: a
/// tampered count cannot hang the page (10M is ~7 s in Wasm).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Minimum PBKDF2-SHA256 iterations for a passphrase (OWASP 2023).
pub const MIN_PBKDF2_ITERATIONS: u32 = 600_000;

/// Random data keys (by random id), the MAC key for record keys, the usage
/// counter reservation of the current key, and the store's integrity
/// [`Mark`]. Zeroized on drop.
pub struct KeyRing {
    pub(super) keys: Vec<(u32, Zeroizing<[u8; 32]>)>,
    pub(super) mac_key: Zeroizing<[u8; 32]>,
    pub(super) current: u32,
    /// Seals of the current key that may have happened (reserved block end).
    pub(super) reserved: u64,
    /// Rotations so far: of two rings that rotated apart, the later
    /// rotation's key is current after a merge.
    pub(super) epoch: u64,
    /// The integrity mark, if the ring carries one (version 2).
    pub(super) mark: Option<Mark>,
}

/// The sealed high-water mark of a store's records, kept inside the key
/// ring and rewritten by every commit: a rolled-back, removed or re-added
/// record makes the records disagree with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Commits so far.
    pub generation: u64,
    /// One past the highest outbox seq ever stored.
    pub next_outbox_seq: u64,
    /// One past the highest audit seq ever stored.
    pub next_audit_seq: u64,
    /// Records covered.
    pub count: u64,
    /// XOR of every covered record's keyed tag (see
    /// [`StoreCipher::record_tag`](super::StoreCipher::record_tag)).
    pub digest: [u8; 32],
}

impl Mark {
    /// Adds or removes (XOR is its own inverse) one record's tag.
    pub fn toggle(&mut self, tag: &[u8; 32]) {
        for (d, t) in self.digest.iter_mut().zip(tag) {
            *d ^= t;
        }
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    pub(super) fn generate() -> Result<Self, CipherError> {
        let id = random_id(&[])?;
        Ok(KeyRing {
            keys: vec![(id, random_key()?)],
            mac_key: random_key()?,
            current: id,
            reserved: super::COUNTER_BLOCK,
            epoch: 0,
            mark: Some(Mark::default()),
        })
    }

    pub(super) fn key(&self, id: u32) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(i, _)| *i == id).map(|(_, k)| &**k)
    }

    /// A new random data key becomes current. Its id is random, so two
    /// rings that rotate apart do not give one id to two keys.
    pub(super) fn rotate(&mut self) -> Result<(), CipherError> {
        let ids: Vec<u32> = self.keys.iter().map(|(i, _)| *i).collect();
        let id = random_id(&ids)?;
        self.keys.push((id, random_key()?));
        self.current = id;
        self.epoch += 1;
        Ok(())
    }

    /// Takes in `stored`, the ring another connection (tab) may have written
    /// since this one read it: the union of the keys; the current key of
    /// the later rotation (ties: the higher id); of one current key, the
    /// higher reserved counter; the stored mark. `true` if `self` changed.
    pub(super) fn merge(&mut self, stored: KeyRing) -> Result<bool, CipherError> {
        if stored.mac_key[..] != self.mac_key[..] {
            return Err(CipherError::Tampered(
                "the stored key ring belongs to another store".into(),
            ));
        }
        let mut changed = false;
        for (id, k) in stored.keys.iter() {
            match self.key(*id) {
                Some(mine) if mine[..] == k[..] => {}
                Some(_) => {
                    return Err(CipherError::Tampered(format!("two data keys with id {id}")))
                }
                None => {
                    self.keys.push((*id, k.clone()));
                    changed = true;
                }
            }
        }
        if stored.current == self.current {
            if stored.reserved > self.reserved {
                self.reserved = stored.reserved;
                changed = true;
            }
        } else if (stored.epoch, stored.current) > (self.epoch, self.current) {
            self.current = stored.current;
            self.reserved = stored.reserved;
            changed = true;
        }
        if stored.epoch > self.epoch {
            self.epoch = stored.epoch;
        }
        self.mark = stored.mark;
        Ok(changed)
    }

    pub(super) fn seal(&self, master: &[u8; 32]) -> Result<Vec<u8>, CipherError> {
        let mut b = Zeroizing::new(Vec::with_capacity(62 + 36 * self.keys.len() + MARK_LEN));
        b.push(RING_VERSION);
        b.extend_from_slice(&self.current.to_be_bytes());
        b.extend_from_slice(&self.reserved.to_be_bytes());
        b.extend_from_slice(&self.mac_key[..]);
        b.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for (id, k) in &self.keys {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&k[..]);
        }
        b.extend_from_slice(&self.epoch.to_be_bytes());
        match &self.mark {
            None => b.push(0),
            Some(m) => {
                b.push(1);
                for v in [m.generation, m.next_outbox_seq, m.next_audit_seq, m.count] {
                    b.extend_from_slice(&v.to_be_bytes());
                }
                b.extend_from_slice(&m.digest);
            }
        }
        gcm_seal(master, RING_AAD, &b)
    }

    pub(super) fn open(master: &[u8; 32], sealed: &[u8]) -> Result<Self, CipherError> {
        let b = gcm_open(master, RING_AAD, sealed).ok_or(CipherError::WrongKey)?;
        let bad = || CipherError::Tampered("malformed key ring".into());
        let version = b.first().copied().unwrap_or(0);
        if version != 1 && version != RING_VERSION {
            return Err(CipherError::UnsupportedVersion(version));
        }
        if b.len() < 49 {
            return Err(bad());
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let current = u32_at(1);
        let reserved = u64::from_be_bytes(b[5..13].try_into().expect("8 bytes"));
        let mut mac_key = Zeroizing::new([0u8; 32]);
        mac_key.copy_from_slice(&b[13..45]);
        let n = u32_at(45) as usize;
        let keys_end = n
            .checked_mul(36)
            .and_then(|k| k.checked_add(49))
            .ok_or_else(bad)?;
        let tail = b.len().checked_sub(keys_end).ok_or_else(bad)?;
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let (epoch, mark) = match (version, tail) {
            (1, 0) => (0, None),
            (2, 9) if b[keys_end + 8] == 0 => (u64_at(keys_end), None),
            (2, t) if t == 9 + MARK_LEN && b[keys_end + 8] == 1 => {
                let at = keys_end + 9;
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&b[at + 32..at + 64]);
                (
                    u64_at(keys_end),
                    Some(Mark {
                        generation: u64_at(at),
                        next_outbox_seq: u64_at(at + 8),
                        next_audit_seq: u64_at(at + 16),
                        count: u64_at(at + 24),
                        digest,
                    }),
                )
            }
            _ => return Err(bad()),
        };
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let at = 49 + 36 * i;
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&b[at + 4..at + 36]);
            keys.push((u32_at(at), k));
        }
        let ring = KeyRing {
            keys,
            mac_key,
            current,
            reserved,
            epoch,
            mark,
        };
        if ring.key(current).is_none() {
            return Err(bad());
        }
        Ok(ring)
    }
}

/// A random key id that is not in `taken` (and not 0).
fn random_id(taken: &[u32]) -> Result<u32, CipherError> {
    loop {
        let id = u32::from_be_bytes(random_bytes()?);
        if id != 0 && !taken.contains(&id) {
            return Ok(id);
        }
    }
}

/// Passphrase key derivation parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// PBKDF2-SHA256 iterations.
    pub iterations: u32,
    #[serde(skip)]
    insecure: bool,
}

impl KdfParams {
    /// The production strength: [`MIN_PBKDF2_ITERATIONS`].
    pub fn production() -> Self {
        KdfParams {
            iterations: MIN_PBKDF2_ITERATIONS,
            insecure: false,
        }
    }
    /// A fast, weak derivation, only for tests.
    #[doc(hidden)]
    pub fn insecure_fast_for_tests() -> Self {
        KdfParams {
            iterations: 2,
            insecure: true,
        }
    }
}

/// How the master key is wrapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WrapKind {
    /// By a key derived from a passphrase with PBKDF2-SHA256.
    Passphrase {
        /// Random salt.
        salt: Vec<u8>,
        /// Iterations.
        iterations: u32,
    },
    /// By a key the host supplies (e.g. Electron safeStorage).
    HostKey,
    /// By a non-extractable WebCrypto key kept by the browser.
    WebCrypto,
}

/// The master key wrapped under a key-encryption key. Holds no secret in the
/// clear; safe to store beside the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEnvelope {
    /// Envelope format version.
    pub version: u8,
    /// How the master key is wrapped.
    pub wrap: WrapKind,
    /// `[nonce][AES-256-GCM(master) ‖ tag]` (for WebCrypto: as produced by
    /// `crypto.subtle.encrypt` with a 12-byte IV prepended).
    pub wrapped_master: Vec<u8>,
}

fn envelope_aad(wrap: &WrapKind) -> &'static [u8] {
    match wrap {
        WrapKind::Passphrase { .. } => b"tidesync/master/v1/passphrase",
        WrapKind::HostKey => b"tidesync/master/v1/host",
        WrapKind::WebCrypto => b"tidesync/master/v1/webcrypto",
    }
}

fn passphrase_kek(passphrase: &str, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    pbkdf2_sha256(passphrase.as_bytes(), salt, iterations)
}

/// PBKDF2-HMAC-SHA256 (RFC 8018) for one 32-byte block. Every HMAC state,
/// the password-keyed one included, is zeroized on drop (hmac/sha2 with
/// `zeroize`), and so are the intermediate blocks.
pub(crate) fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(password).expect("any key length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u = Zeroizing::new([0u8; 32]);
    u.copy_from_slice(&mac.finalize().into_bytes());
    let mut t = u.clone();
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u[..]);
        u.copy_from_slice(&mac.finalize().into_bytes());
        for (t, u) in t.iter_mut().zip(u.iter()) {
            *t ^= u;
        }
    }
    t
}

fn host_kek(host_key: &[u8]) -> Result<Zeroizing<[u8; 32]>, CipherError> {
    if host_key.len() < 16 {
        return Err(CipherError::WeakKdf(
            "a host key must have at least 16 bytes".into(),
        ));
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(host_key).expect("any key length");
    mac.update(b"tidesync/host-kek/v1");
    let mut kek = Zeroizing::new([0u8; 32]);
    kek.copy_from_slice(&mac.finalize().into_bytes());
    Ok(kek)
}

impl KeyEnvelope {
    /// Wraps `master` under a key derived from `passphrase`.
    pub fn wrap_with_passphrase(
        master: &[u8; 32],
        passphrase: &str,
        params: KdfParams,
    ) -> Result<Self, CipherError> {
        if params.iterations < MIN_PBKDF2_ITERATIONS && !params.insecure {
            return Err(CipherError::WeakKdf(format!(
                "PBKDF2 needs at least {MIN_PBKDF2_ITERATIONS} iterations"
            )));
        }
        if passphrase.is_empty() {
            return Err(CipherError::WeakKdf("empty passphrase".into()));
        }
        let salt: [u8; 16] = random_bytes()?;
        let wrap = WrapKind::Passphrase {
            salt: salt.to_vec(),
            iterations: params.iterations,
        };
        let kek = passphrase_kek(passphrase, &salt, params.iterations);
        let wrapped_master = gcm_seal(&kek, envelope_aad(&wrap), master)?;
        Ok(KeyEnvelope {
            version: 1,
            wrap,
            wrapped_master,
        })
    }

    /// Wraps `master` under a host-supplied key (≥ 16 bytes of key material).
    pub fn wrap_with_host_key(master: &[u8; 32], host_key: &[u8]) -> Result<Self, CipherError> {
        let kek = host_kek(host_key)?;
        let wrap = WrapKind::HostKey;
        let wrapped_master = gcm_seal(&kek, envelope_aad(&wrap), master)?;
        Ok(KeyEnvelope {
            version: 1,
            wrap,
            wrapped_master,
        })
    }

    /// The AAD a WebCrypto wrapping must use.
    pub fn webcrypto_aad() -> &'static [u8] {
        envelope_aad(&WrapKind::WebCrypto)
    }

    /// Unwraps the master key with a passphrase. A wrong passphrase is
    /// [`CipherError::WrongKey`].
    pub fn unwrap_with_passphrase(
        &self,
        passphrase: &str,
    ) -> Result<Zeroizing<[u8; 32]>, CipherError> {
        let WrapKind::Passphrase { salt, iterations } = &self.wrap else {
            return Err(CipherError::WrongKey);
        };
        if *iterations == 0 || *iterations > MAX_PBKDF2_ITERATIONS {
            return Err(CipherError::Tampered(format!(
                "the key envelope asks for {iterations} PBKDF2 iterations (1 to {MAX_PBKDF2_ITERATIONS})"
            )));
        }
        let kek = passphrase_kek(passphrase, salt, *iterations);
        self.unwrap_with(&kek)
    }

    /// Unwraps the master key with the host's key.
    pub fn unwrap_with_host_key(
        &self,
        host_key: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CipherError> {
        if self.wrap != WrapKind::HostKey {
            return Err(CipherError::WrongKey);
        }
        self.unwrap_with(&*host_kek(host_key)?)
    }

    fn unwrap_with(&self, kek: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CipherError> {
        let m = gcm_open(kek, envelope_aad(&self.wrap), &self.wrapped_master)
            .ok_or(CipherError::WrongKey)?;
        master_from_slice(&m)
    }
}

/// A master key from unwrapped bytes.
pub(crate) fn master_from_slice(m: &[u8]) -> Result<Zeroizing<[u8; 32]>, CipherError> {
    if m.len() != 32 {
        return Err(CipherError::WrongKey);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(m);
    Ok(out)
}

// Run natively and, in the browser suite, in Chromium.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::StoreCipher;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_passphrase_unwraps_the_master_and_a_wrong_one_fails_clearly() {
        let c = StoreCipher::generate(1).unwrap();
        let env = KeyEnvelope::wrap_with_passphrase(
            c.master_key(),
            "correct horse",
            KdfParams::insecure_fast_for_tests(),
        )
        .unwrap();
        assert_eq!(
            &*env.unwrap_with_passphrase("correct horse").unwrap(),
            c.master_key()
        );
        assert_eq!(
            env.unwrap_with_passphrase("wrong horse"),
            Err(CipherError::WrongKey)
        );
        assert_eq!(
            env.unwrap_with_host_key(&[7; 32]),
            Err(CipherError::WrongKey)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn production_kdf_is_at_least_600k_and_weak_params_are_refused() {
        assert!(KdfParams::production().iterations >= 600_000);
        let weak = KdfParams {
            iterations: 1000,
            insecure: false,
        };
        assert!(matches!(
            KeyEnvelope::wrap_with_passphrase(&[1; 32], "pw", weak),
            Err(CipherError::WeakKdf(_))
        ));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_tampered_iteration_count_is_refused_before_any_derivation() {
        let mut env =
            KeyEnvelope::wrap_with_passphrase(&[1; 32], "pw", KdfParams::insecure_fast_for_tests())
                .unwrap();
        if let WrapKind::Passphrase { iterations, .. } = &mut env.wrap {
            *iterations = u32::MAX;
        }
        assert!(matches!(
            env.unwrap_with_passphrase("pw"),
            Err(CipherError::Tampered(_))
        ));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_host_key_unwraps_the_master() {
        let env = KeyEnvelope::wrap_with_host_key(&[9; 32], &[3; 32]).unwrap();
        assert_eq!(*env.unwrap_with_host_key(&[3; 32]).unwrap(), [9; 32]);
        assert_eq!(
            env.unwrap_with_host_key(&[4; 32]),
            Err(CipherError::WrongKey)
        );
        assert!(KeyEnvelope::wrap_with_host_key(&[9; 32], &[3; 8]).is_err());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_envelope_holds_no_key_in_the_clear() {
        let master = [0xAB; 32];
        let env = KeyEnvelope::wrap_with_host_key(&master, &[3; 32]).unwrap();
        let json = serde_json::to_vec(&env).unwrap();
        assert!(!env.wrapped_master.windows(8).any(|w| w == [0xAB; 8]));
        assert!(!json.is_empty());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_key_ring_opened_with_another_master_is_a_wrong_key() {
        let c = StoreCipher::generate(1).unwrap();
        let ring = c.sealed_ring().unwrap();
        assert_eq!(
            StoreCipher::open(Zeroizing::new([0; 32]), &ring, 1).unwrap_err(),
            CipherError::WrongKey
        );
        let mut bad = ring.clone();
        bad[20] ^= 1;
        assert!(StoreCipher::open(Zeroizing::new(*c.master_key()), &bad, 1).is_err());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn pbkdf2_matches_known_vectors() {
        // RFC 7914 §11 (P="passwd", S="salt", c=1, first 32 of 64 bytes).
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            out[..],
            hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
        );
        // RFC 7914 §11 (P="Password", S="NaCl", c=80000, first 32 bytes).
        let out = pbkdf2_sha256(b"Password", b"NaCl", 80_000);
        assert_eq!(
            out[..],
            hex("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The core's PBKDF2 equals the RustCrypto reference for assorted
    /// passwords, salts and counts.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn pbkdf2_equals_the_reference_implementation() {
        for (pw, salt, c) in [
            (&b""[..], &b""[..], 1u32),
            (b"p", b"s", 2),
            (b"correct horse battery staple", b"0123456789abcdef", 1000),
            (&[0xAB; 100][..], &[7; 16][..], 33),
        ] {
            let mut want = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<sha2010::Sha256>(pw, salt, c, &mut want);
            assert_eq!(pbkdf2_sha256(pw, salt, c)[..], want, "{c}");
        }
    }
}
