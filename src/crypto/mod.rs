//! Encryption at rest: the [`StoreCipher`] a backend uses to seal every value
//! it stores and to hash record keys that would leak data.
//!
//! Pure Rust and synchronous (aes-gcm, hmac, pbkdf2), so that a backend can
//! seal a whole write batch *before* it opens a storage transaction: an
//! IndexedDB transaction must not await anything but its own requests.
//!
//! ## Key hierarchy
//! ```text
//! key-encryption key (KEK)          passphrase (PBKDF2-SHA256), host key, or
//!   │                               a non-extractable WebCrypto key (browser)
//!   └─ wraps ─ master key (random)   KeyEnvelope: stored, only ever wrapped
//!                └─ seals ─ key ring (random data keys + record-key MAC key,
//!                                     the usage counter): KeyRing record
//!                                └─ data keys seal every stored value
//! ```
//! The master key is random and only wraps the key ring, so a rotation of a
//! data key (every [`ROTATE_AFTER`] seals) is synchronous whatever the KEK is,
//! and changing the passphrase re-wraps 32 bytes.
//!
//! ## Sealed value format (version 1)
//! ```text
//! [0x01][data key id: u32 BE][nonce: 12 random bytes][AES-256-GCM(body) ‖ tag]
//! body = [codec: 2 raw | 3 lz4][payload length: u32 BE][payload][zeros]
//!        (padded to a Padmé length; codecs 0 raw / 1 lz4 without length or
//!        padding are read from older stores)
//! AAD  = "tidesync/v1" 0 store 0 record key 0 schema version (u32 BE)
//! ```
//! Binding the store name, record key and schema version into the AAD makes a
//! value copied onto another record (or another store) fail to open.

mod body;
pub(crate) mod ring;

pub use ring::{KdfParams, KeyEnvelope, KeyRing, Mark, WrapKind};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Version byte of the sealed value format.
pub const FORMAT_VERSION: u8 = 1;
/// Seals with one data key before a new one is made: far below the 2^32
/// random-nonce limit of AES-GCM under one key.
pub const ROTATE_AFTER: u64 = 1 << 30;
/// Counter values reserved in the stored key ring at a time: a crash can
/// waste at most this many, never reuse them.
pub const COUNTER_BLOCK: u64 = 1 << 16;
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The key material does not open this store (wrong passphrase or key).
    /// Nothing was changed.
    #[error("wrong key or passphrase: the store's key could not be unwrapped")]
    WrongKey,
    /// A value failed authentication: tampered with, truncated, or moved to
    /// another record.
    #[error("sealed value failed authentication ({0})")]
    Tampered(String),
    /// A value was written by a newer format version.
    #[error("unsupported sealed format version {0}")]
    UnsupportedVersion(u8),
    /// A value was sealed with a data key this key ring does not hold.
    #[error("unknown data key id {0}")]
    UnknownKey(u32),
    /// Key derivation parameters below the required strength.
    #[error("weak key derivation: {0}")]
    WeakKdf(String),
    /// The system's random generator failed.
    #[error("random generator failed: {0}")]
    Random(String),
}

/// 32 random bytes (zeroized on drop).
pub(crate) fn random_key() -> Result<Zeroizing<[u8; 32]>, CipherError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..]).map_err(|e| CipherError::Random(e.to_string()))?;
    Ok(k)
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CipherError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CipherError::Random(e.to_string()))?;
    Ok(b)
}

/// AES-256-GCM with a random nonce: `[nonce][ct ‖ tag]`.
pub(crate) fn gcm_seal(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, CipherError> {
    gcm_seal_with(&Aes256Gcm::new(key.into()), aad, msg)
}

/// [`gcm_seal`] with a keyed cipher.
fn gcm_seal_with(cipher: &Aes256Gcm, aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, CipherError> {
    let nonce: [u8; 12] = random_bytes()?;
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| CipherError::Tampered("encryption failed".into()))?;
    let mut out = Vec::with_capacity(12 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens [`gcm_seal`]'s output; `None` if authentication fails.
pub(crate) fn gcm_open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    gcm_open_with(&Aes256Gcm::new(key.into()), aad, sealed)
}

/// [`gcm_open`] with a keyed cipher.
fn gcm_open_with(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 12 + TAG_LEN {
        return None;
    }
    cipher
        .decrypt(
            Nonce::from_slice(&sealed[..12]),
            Payload {
                msg: &sealed[12..],
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

fn aeads_of(ring: &KeyRing) -> Vec<(u32, Aes256Gcm)> {
    ring.keys
        .iter()
        .map(|(id, k)| (*id, Aes256Gcm::new((&**k).into())))
        .collect()
}

fn mac_of(ring: &KeyRing) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&ring.mac_key[..])
        .expect("HMAC takes any key length")
}

fn value_aad(store: &str, record_key: &str, schema_version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + store.len() + record_key.len());
    aad.extend_from_slice(b"tidesync/v1\0");
    aad.extend_from_slice(store.as_bytes());
    aad.push(0);
    aad.extend_from_slice(record_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&schema_version.to_be_bytes());
    aad
}

/// Seals and opens stored values, and hashes record keys.
///
/// Holds the key ring in memory (zeroized on drop). `seal` counts uses of the
/// current data key and rotates it after [`ROTATE_AFTER`] seals; when the
/// counter leaves its reserved block, [`StoreCipher::take_dirty_ring`] returns
/// the key ring to store (in the same transaction as the values).
pub struct StoreCipher {
    ring: KeyRing,
    /// One keyed AES-256-GCM per data key (round keys and GHASH key are
    /// expanded once, and zeroized on drop).
    aeads: Vec<(u32, Aes256Gcm)>,
    /// HMAC-SHA256 keyed with the ring's MAC key, cloned per hash.
    mac: Hmac<Sha256>,
    master: Zeroizing<[u8; 32]>,
    used: u64,
    rotate_after: u64,
    dirty: bool,
    schema_version: u32,
}

impl std::fmt::Debug for StoreCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCipher")
            .field("current_key", &self.ring.current)
            .field("keys", &self.ring.keys.len())
            .finish_non_exhaustive()
    }
}

impl StoreCipher {
    /// A new cipher with a random master key and a first random data key.
    pub fn generate(schema_version: u32) -> Result<Self, CipherError> {
        let master = random_key()?;
        let ring = KeyRing::generate()?;
        Ok(StoreCipher {
            aeads: aeads_of(&ring),
            mac: mac_of(&ring),
            ring,
            master,
            used: 0,
            rotate_after: ROTATE_AFTER,
            dirty: true,
            schema_version,
        })
    }

    /// Opens a stored key ring with the master key.
    pub fn open(
        master: Zeroizing<[u8; 32]>,
        sealed_ring: &[u8],
        schema_version: u32,
    ) -> Result<Self, CipherError> {
        let ring = KeyRing::open(&master, sealed_ring)?;
        // Everything up to the reserved mark may have been used before a crash.
        let used = ring.reserved;
        Ok(StoreCipher {
            aeads: aeads_of(&ring),
            mac: mac_of(&ring),
            ring,
            master,
            used,
            rotate_after: ROTATE_AFTER,
            dirty: false,
            schema_version,
        })
    }

    fn aead(&self, id: u32) -> Result<&Aes256Gcm, CipherError> {
        self.aeads
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a)
            .ok_or(CipherError::UnknownKey(id))
    }

    /// The master key, for wrapping it under a KEK.
    pub fn master_key(&self) -> &[u8; 32] {
        &self.master
    }

    /// The current data key (tests that scan storage for key bytes).
    #[cfg(all(test, target_arch = "wasm32"))]
    pub(crate) fn current_data_key(&self) -> [u8; 32] {
        *self.ring.key(self.ring.current).expect("current key")
    }

    /// Lowers the rotation threshold (tests of rotation).
    #[doc(hidden)]
    pub fn set_rotate_after(&mut self, n: u64) {
        self.rotate_after = n;
    }

    /// Id of the data key new values are sealed with.
    pub fn current_key_id(&self) -> u32 {
        self.ring.current
    }

    /// Seals made with the current data key (as far as this process knows).
    pub fn current_key_uses(&self) -> u64 {
        self.used
    }

    /// Counts one seal with the current key: rotates first if the key is
    /// used up, and reserves a new counter block when needed.
    fn count_seal(&mut self) -> Result<(), CipherError> {
        if self.used >= self.rotate_after {
            self.ring.rotate()?;
            self.aeads = aeads_of(&self.ring);
            self.used = 0;
            self.ring.reserved = 0;
            self.dirty = true;
        }
        self.used += 1;
        if self.used > self.ring.reserved {
            self.ring.reserved = self.used - 1 + COUNTER_BLOCK;
            self.dirty = true;
        }
        Ok(())
    }

    /// The sealed key ring, if it changed since it was last taken (new key,
    /// new counter block). The backend must store it in the same transaction
    /// as the values sealed since.
    pub fn take_dirty_ring(&mut self) -> Result<Option<Vec<u8>>, CipherError> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        self.ring.seal(&self.master).map(Some)
    }

    /// The ring taken by [`take_dirty_ring`](Self::take_dirty_ring) was not
    /// stored after all (the transaction failed): store it with the next one.
    pub fn mark_ring_dirty(&mut self) {
        self.dirty = true;
    }

    /// The sealed key ring, unconditionally.
    pub fn sealed_ring(&self) -> Result<Vec<u8>, CipherError> {
        self.ring.seal(&self.master)
    }

    /// Merges the stored key ring (read inside the commit's transaction)
    /// into this one: keys another connection added are kept, the counter
    /// never goes back, and the stored integrity mark is taken.
    pub fn merge_stored_ring(&mut self, sealed: &[u8]) -> Result<(), CipherError> {
        let stored = KeyRing::open(&self.master, sealed)?;
        let (current, reserved) = (stored.current, stored.reserved);
        let before = self.ring.current;
        if self.ring.merge(stored)? {
            self.dirty = true;
            self.aeads = aeads_of(&self.ring);
        }
        if self.ring.current != before {
            // Another connection rotated: its key is current now, and up to
            // its reservation may have been used.
            self.used = reserved;
        } else if current == self.ring.current {
            // The same key, counted by another connection too: count its
            // block as begun.
            self.used = self.used.max(reserved.saturating_sub(COUNTER_BLOCK));
        }
        Ok(())
    }

    /// The integrity mark of the ring as last read or set; `None` for a
    /// ring written before marks existed.
    pub fn mark(&self) -> Option<Mark> {
        self.ring.mark
    }

    /// Sets the integrity mark the next sealed ring carries.
    pub fn set_mark(&mut self, mark: Mark) {
        self.ring.mark = Some(mark);
        self.dirty = true;
    }

    /// The keyed tag of one stored record for the integrity mark: binds the
    /// object store, the record key and the sealed value (through its GCM
    /// tag), and cannot be computed without the ring's MAC key.
    pub fn record_tag(&self, store: &str, record_key: &str, sealed: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"tidesync/mark/v1\0");
        mac.update(store.as_bytes());
        mac.update(&[0]);
        mac.update(record_key.as_bytes());
        mac.update(&[0]);
        mac.update(&sealed[sealed.len().saturating_sub(TAG_LEN)..]);
        mac.finalize().into_bytes().into()
    }

    /// Seals `plaintext` as the value of `record_key` in `store`.
    pub fn seal(
        &mut self,
        store: &str,
        record_key: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        self.count_seal()?;
        let key_id = self.ring.current;
        let aead = self.aead(key_id)?;
        let body = body::encode(plaintext)?;
        let aad = value_aad(store, record_key, self.schema_version);
        let sealed = gcm_seal_with(aead, &aad, &body)?;
        let mut out = Vec::with_capacity(5 + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed by [`seal`](Self::seal) for the same store and key.
    pub fn open_value(
        &self,
        store: &str,
        record_key: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        if sealed.is_empty() {
            return Err(CipherError::Tampered("empty value".into()));
        }
        if sealed[0] != FORMAT_VERSION {
            return Err(CipherError::UnsupportedVersion(sealed[0]));
        }
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(CipherError::Tampered("truncated value".into()));
        }
        let key_id = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        let aead = self.aead(key_id)?;
        let aad = value_aad(store, record_key, self.schema_version);
        let body = gcm_open_with(aead, &aad, &sealed[5..])
            .ok_or_else(|| CipherError::Tampered(format!("record {record_key:?} in {store:?}")))?;
        body::decode(&body)
    }

    /// The keyed hash (HMAC-SHA256) of a record key, hex, for `table`: equal
    /// inputs give equal outputs, so it can be a storage key, and nothing of
    /// the input can be read from it.
    pub fn hash_key(&self, table: &str, key: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(table.as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        crate::hash::hex(&mac.finalize().into_bytes())
    }
}

// Run natively and, in the browser suite, in Chromium.
#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> StoreCipher {
        StoreCipher::generate(1).unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn seal_then_open_round_trips_small_and_large_values() {
        let mut c = cipher();
        for len in [0usize, 1, 64, 95, 96, 1024, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let s = c.seal("entities", "k1", &v).unwrap();
            assert_eq!(&c.open_value("entities", "k1", &s).unwrap()[..], &v[..]);
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn sealed_values_hide_the_plaintext_and_compress() {
        let mut c = cipher();
        let v = br#"{"guest":"Zoe Lambert","room":"1204","note":"late checkout, late checkout, late checkout"}"#.repeat(20);
        let s = c.seal("entities", "k", &v).unwrap();
        assert!(s.len() < v.len() / 4, "compressed before sealing");
        assert!(!s.windows(5).any(|w| w == b"Lambe"));
        assert_eq!(s[0], FORMAT_VERSION);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn incompressible_values_are_stored_raw() {
        let mut c = cipher();
        let v: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let s = c.seal("s", "k", &v).unwrap();
        assert!(s.len() <= v.len() + 1 + 5 + 12 + 16);
        assert_eq!(&c.open_value("s", "k", &s).unwrap()[..], &v[..]);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn nonces_are_random() {
        let mut c = cipher();
        let a = c.seal("s", "k", b"same").unwrap();
        let b = c.seal("s", "k", b"same").unwrap();
        assert_ne!(a[5..17], b[5..17]);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_tampered_value_fails_to_open() {
        let mut c = cipher();
        let mut s = c.seal("entities", "k", b"hello world").unwrap();
        let last = s.len() - 1;
        s[last] ^= 1;
        assert!(matches!(
            c.open_value("entities", "k", &s),
            Err(CipherError::Tampered(_))
        ));
        s.truncate(10);
        assert!(matches!(
            c.open_value("entities", "k", &s),
            Err(CipherError::Tampered(_))
        ));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_value_moved_to_another_record_store_or_schema_fails() {
        let mut c = cipher();
        let s = c.seal("entities", "k1", b"hello").unwrap();
        assert!(c.open_value("entities", "k2", &s).is_err());
        assert!(c.open_value("outbox", "k1", &s).is_err());
        let sealed_ring = c.sealed_ring().unwrap();
        let other = StoreCipher::open(Zeroizing::new(*c.master_key()), &sealed_ring, 2).unwrap();
        assert!(other.open_value("entities", "k1", &s).is_err());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn unknown_versions_are_refused() {
        let mut c = cipher();
        let mut s = c.seal("s", "k", b"x").unwrap();
        s[0] = 9;
        assert_eq!(
            c.open_value("s", "k", &s),
            Err(CipherError::UnsupportedVersion(9))
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn keyed_hashes_are_stable_per_table_and_hide_the_key() {
        let c = cipher();
        let a = c.hash_key("entities", "rooms\0r-1204");
        assert_eq!(a, c.hash_key("entities", "rooms\0r-1204"));
        assert_ne!(a, c.hash_key("conflicts", "rooms\0r-1204"));
        assert_ne!(a, cipher().hash_key("entities", "rooms\0r-1204"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("1204"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_data_key_rotates_and_old_values_still_open() {
        let mut c = cipher();
        c.set_rotate_after(3);
        let first = c.current_key_id();
        let old = c.seal("s", "k0", b"v0").unwrap();
        for i in 0..5 {
            c.seal("s", &format!("k{i}"), b"v").unwrap();
        }
        assert_ne!(c.current_key_id(), first);
        assert_eq!(&c.open_value("s", "k0", &old).unwrap()[..], b"v0");
        // The rotated ring is marked for storage, and survives a reopen.
        let ring = c.take_dirty_ring().unwrap().expect("ring changed");
        let reopened = StoreCipher::open(Zeroizing::new(*c.master_key()), &ring, 1).unwrap();
        assert_eq!(&reopened.open_value("s", "k0", &old).unwrap()[..], b"v0");
        assert_eq!(reopened.current_key_id(), c.current_key_id());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_counter_never_goes_back_after_a_reopen() {
        let mut c = cipher();
        let ring = c.take_dirty_ring().unwrap().unwrap();
        for _ in 0..10 {
            c.seal("s", "k", b"v").unwrap();
        }
        assert!(c.take_dirty_ring().unwrap().is_none(), "within the block");
        let reopened = StoreCipher::open(Zeroizing::new(*c.master_key()), &ring, 1).unwrap();
        assert!(reopened.current_key_uses() >= COUNTER_BLOCK);
    }

    /// Two connections (tabs) that opened one ring and rotated apart: a
    /// merge keeps every key, and the later rotation's key is current.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn rings_that_rotated_apart_merge_without_losing_a_key() {
        let mut a = cipher();
        let stored = a.take_dirty_ring().unwrap().unwrap();
        let mut b = StoreCipher::open(Zeroizing::new(*a.master_key()), &stored, 1).unwrap();
        a.set_rotate_after(1);
        b.set_rotate_after(1);
        let va = [
            a.seal("s", "a", b"a").unwrap(),
            a.seal("s", "a2", b"a2").unwrap(),
        ];
        let vb = [
            b.seal("s", "b", b"b").unwrap(),
            b.seal("s", "b2", b"b2").unwrap(),
        ];
        assert_ne!(a.current_key_id(), b.current_key_id(), "random ids");
        // b merges the ring a stored before writing its own ...
        let a_ring = a.sealed_ring().unwrap();
        b.merge_stored_ring(&a_ring).unwrap();
        let merged = b.sealed_ring().unwrap();
        let c = StoreCipher::open(Zeroizing::new(*a.master_key()), &merged, 1).unwrap();
        for (v, (k, p)) in
            va.iter()
                .chain(&vb)
                .zip([("a", &b"a"[..]), ("a2", b"a2"), ("b", b"b"), ("b2", b"b2")])
        {
            assert_eq!(&c.open_value("s", k, v).unwrap()[..], p, "{k}");
        }
        // ... and the counter of one shared key never goes back.
        let mut x = cipher();
        let ring = x.take_dirty_ring().unwrap().unwrap();
        let mut y = StoreCipher::open(Zeroizing::new(*x.master_key()), &ring, 1).unwrap();
        for _ in 0..(COUNTER_BLOCK + 2) {
            x.seal("s", "k", b"v").unwrap();
        }
        let ahead = x.take_dirty_ring().unwrap().unwrap();
        y.merge_stored_ring(&ahead).unwrap();
        let y_ring = y.sealed_ring().unwrap();
        let z = StoreCipher::open(Zeroizing::new(*x.master_key()), &y_ring, 1).unwrap();
        assert!(z.current_key_uses() >= COUNTER_BLOCK + 2);
        // A ring of another store is refused.
        let other = cipher().sealed_ring().unwrap();
        assert!(StoreCipher::open(Zeroizing::new(*x.master_key()), &other, 1).is_err());
    }

    /// A version-1 ring (no epoch, no mark) still opens, without a mark.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_version_1_ring_opens_without_a_mark() {
        let c = cipher();
        let master = *c.master_key();
        let key = [5u8; 32];
        let mut b = vec![1u8];
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&100u64.to_be_bytes());
        b.extend_from_slice(&[6u8; 32]);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&key);
        let sealed = gcm_seal(&master, b"tidesync/keyring/v1", &b).unwrap();
        let opened = StoreCipher::open(Zeroizing::new(master), &sealed, 1).unwrap();
        assert_eq!(opened.current_key_id(), 7);
        assert_eq!(opened.mark(), None);
        assert!(StoreCipher::generate(1).unwrap().mark().is_some());
    }

    /// Fails to compile if a type holding key material stops clearing it on
    /// drop (a crate feature lost in a dependency update: hmac/sha2 without
    /// `zeroize`, as before 0.13/0.11, or aes without it).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn key_holding_types_zeroize_on_drop() {
        fn zeroizes<T: zeroize::ZeroizeOnDrop>() {}
        zeroizes::<aes::Aes256>();
        // An HMAC state is two SHA-256 states and a block buffer, which
        // each clear themselves on drop (the Hmac type itself carries no
        // marker).
        zeroizes::<Sha256>();
        zeroizes::<sha2::block_api::Sha256VarCore>();
        zeroizes::<Zeroizing<[u8; 32]>>();
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_default_rotation_is_well_before_2_pow_32() {
        const { assert!(ROTATE_AFTER <= 1 << 31) };
    }
}
