//! What the HTTP layer remembers about presented keys, by their SHA-256
//! (never the key itself), so that unauthenticated load does little
//! storage work:
//!
//! * [`KeyMemory::is_unknown`]: keys that storage recently said are not
//!   valid (a negative cache): asked again within [`HttpConfig::unknown_key_ttl`]
//!   they are refused without a lookup. A key issued after it was refused
//!   works once its entry has expired (the TTL is short for that reason:
//!   `issue-key` runs in another process, which cannot tell this one).
//! * [`KeyMemory::is_known`]: keys that storage recently said are valid.
//!   This only decides **admission**: a known key is looked up on every
//!   request like any other (so revocation and expiry take effect on the
//!   next request), but it is not held up by the per-address limit on
//!   failed authentications, so a flood of junk keys from a terminal's
//!   address (a shared NAT) does not lock the terminal out.
//!
//! Both are bounded: at [`MAX_ENTRIES`] entries, expired ones are dropped,
//! and if that is not enough, all of them.
//!
//! [`HttpConfig::unknown_key_ttl`]: super::HttpConfig::unknown_key_ttl

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most entries each of the two tables holds.
pub const MAX_ENTRIES: usize = 65_536;

/// How long a valid key counts as known without being presented again.
pub const KNOWN_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

type Digest = [u8; 32];

/// A bounded map of digests to their expiry.
#[derive(Debug, Default)]
struct Expiring {
    entries: Mutex<HashMap<Digest, Instant>>,
}

impl Expiring {
    fn contains(&self, d: &Digest, now: Instant) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(d) {
            Some(&until) if until > now => true,
            Some(_) => {
                entries.remove(d);
                false
            }
            None => false,
        }
    }

    fn insert(&self, d: Digest, until: Instant, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&d) {
            entries.retain(|_, &mut u| u > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(d, until);
    }

    fn remove(&self, d: &Digest) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(d);
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The two tables (see the module docs).
#[derive(Debug)]
pub struct KeyMemory {
    unknown_ttl: Duration,
    unknown: Expiring,
    known: Expiring,
}

impl KeyMemory {
    /// Tables that remember a refused key for `unknown_ttl` (zero: never).
    pub fn new(unknown_ttl: Duration) -> Self {
        KeyMemory {
            unknown_ttl,
            unknown: Expiring::default(),
            known: Expiring::default(),
        }
    }

    /// Storage recently refused this key.
    pub fn is_unknown(&self, d: &Digest) -> bool {
        !self.unknown_ttl.is_zero() && self.unknown.contains(d, Instant::now())
    }

    /// Storage recently accepted this key.
    pub fn is_known(&self, d: &Digest) -> bool {
        self.known.contains(d, Instant::now())
    }

    /// Storage accepted this key.
    pub fn accepted(&self, d: Digest) {
        let now = Instant::now();
        self.unknown.remove(&d);
        self.known.insert(d, now + KNOWN_KEY_TTL, now);
    }

    /// Storage refused this key (unknown, expired or revoked).
    pub fn refused(&self, d: Digest) {
        self.known.remove(&d);
        if !self.unknown_ttl.is_zero() {
            let now = Instant::now();
            self.unknown.insert(d, now + self.unknown_ttl, now);
        }
    }

    /// How many keys each table holds: (unknown, known).
    pub fn len(&self) -> (usize, usize) {
        (self.unknown.len(), self.known.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Digest {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&n.to_le_bytes());
        d
    }

    #[test]
    fn refused_keys_expire_and_accepted_ones_are_known() {
        let m = KeyMemory::new(Duration::from_millis(50));
        assert!(!m.is_unknown(&d(1)));
        m.refused(d(1));
        assert!(m.is_unknown(&d(1)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!m.is_unknown(&d(1)), "expired");
        m.refused(d(2));
        m.accepted(d(2));
        assert!(!m.is_unknown(&d(2)) && m.is_known(&d(2)));
        m.refused(d(2));
        assert!(!m.is_known(&d(2)), "a refused key is no longer known");
        let off = KeyMemory::new(Duration::ZERO);
        off.refused(d(3));
        assert!(!off.is_unknown(&d(3)));
    }

    #[test]
    fn the_tables_are_bounded() {
        let m = KeyMemory::new(Duration::from_secs(60));
        for n in 0..(MAX_ENTRIES as u32 + 10) {
            m.refused(d(n));
        }
        assert!(m.len().0 <= MAX_ENTRIES);
        assert!(
            m.is_unknown(&d(MAX_ENTRIES as u32 + 9)),
            "the newest is kept"
        );
    }
}
