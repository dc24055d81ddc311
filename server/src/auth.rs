//! Terminal credentials: random API keys bound to one terminal of one branch
//! of one tenant, stored only as SHA-256 hashes.
//!
//! A key looks like `ts_<key id>_<secret>`: `ts_` marks it as a tidesync
//! key (so secret scanners can find leaked ones), the key id (16 hex
//! characters) names it in logs and in `revoke-key`, and the secret is 32
//! random bytes in base64url. The server keeps `SHA-256(key)` and the
//! binding; the key itself is shown once, when issued. A key is valid until
//! it is revoked or, if it has one, until its expiry.
//!
//! A pairing code (`tsp_<code id>_<secret>`, the same shape with `tsp_`)
//! stands in for a key where a key must not be written down, such as a
//! pairing link, which a browser keeps in its history: it is redeemed once
//! (`POST /v1/pair`, [`redeem_pairing_code`]) for a new key of its
//! terminal, and is worth nothing once used or expired. Only its hash is
//! stored too.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::context::TerminalContext;
use crate::storage::StorageError;
pub use crate::storage::{Credential, CredentialStore, PairFailure, PairingCode};

/// Why a presented key is refused (all are 401 `SYNC_UNAUTHORIZED`; the
/// reason goes to the log, the client gets one generic message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a key this server issued.
    Invalid,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl AuthFailure {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// SHA-256 of a presented key, hex.
pub fn hash_key(key: &str) -> String {
    hex::encode(key_digest(key))
}

/// SHA-256 of a presented key, raw (what the HTTP layer's caches keep:
/// never the key itself).
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The length of every key [`new_key`] makes: `ts_`, 16 hex digits, `_`,
/// 43 base64url characters.
pub const KEY_LEN: usize = 3 + 16 + 1 + 43;

/// Whether `key` has the shape of a key this server issues (`ts_`, 16
/// lower-case hex digits, `_`, 43 base64url characters). Checked before
/// any storage work: a key of another shape cannot be valid.
pub fn well_formed(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == KEY_LEN
        && b.starts_with(b"ts_")
        && b[3..19]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        && b[19] == b'_'
        && b[20..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Makes a new key for `context`: the key (show it once) and the credential
/// to store.
pub fn new_key(
    context: TerminalContext,
    now_ms: u64,
    expires_at_ms: Option<u64>,
) -> Result<(String, Credential), getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let key_id = hex::encode(id);
    let key = format!(
        "ts_{key_id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let credential = Credential {
        key_id,
        key_hash: hash_key(&key),
        context,
        created_at_ms: now_ms,
        expires_at_ms,
        revoked_at_ms: None,
    };
    Ok((key, credential))
}

/// The length of every code [`new_pairing_code`] makes: `tsp_`, 16 hex
/// digits, `_`, 43 base64url characters.
pub const PAIRING_CODE_LEN: usize = 4 + 16 + 1 + 43;

/// How long a pairing code is valid when `issue-pairing-code` is not told.
pub const DEFAULT_PAIRING_CODE_VALIDITY_MS: u64 = 24 * 3_600_000;

/// Whether `code` has the shape of a pairing code this server issues
/// (`tsp_`, 16 lower-case hex digits, `_`, 43 base64url characters).
/// Checked before any storage work.
pub fn pairing_code_well_formed(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == PAIRING_CODE_LEN
        && b.starts_with(b"tsp_")
        && b[4..20]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        && b[20] == b'_'
        && b[21..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Makes a new pairing code for `context`, valid until `expires_at_ms`:
/// the code (show it once) and what to store.
pub fn new_pairing_code(
    context: TerminalContext,
    now_ms: u64,
    expires_at_ms: u64,
) -> Result<(String, PairingCode), getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let code_id = hex::encode(id);
    let code = format!(
        "tsp_{code_id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let stored = PairingCode {
        code_id,
        code_hash: hash_key(&code),
        context,
        created_at_ms: now_ms,
        expires_at_ms,
        redeemed_at_ms: None,
    };
    Ok((code, stored))
}

/// Makes a pairing code for `context` valid for `valid_for_ms` and stores
/// it; returns the code (shown once) and its id.
pub fn issue_pairing_code(
    store: &(impl CredentialStore + ?Sized),
    context: TerminalContext,
    now_ms: u64,
    valid_for_ms: u64,
) -> Result<(String, PairingCode), String> {
    let expires = now_ms
        .checked_add(valid_for_ms)
        .ok_or("the validity is too long")?;
    let (code, stored) =
        new_pairing_code(context, now_ms, expires).map_err(|e| format!("no randomness: {e}"))?;
    store
        .put_pairing_code(&stored)
        .map_err(|e| format!("cannot store the pairing code: {e}"))?;
    Ok((code, stored))
}

/// Redeems a presented pairing code: a code of the wrong shape is refused
/// without storage work; else, in one transaction, a code that exists, is
/// unused and unexpired is marked used and a new key of its terminal
/// (from [`new_key`], without expiry: an ordinary key, valid until
/// revoked) is stored. Returns the key (show it once) and its credential.
pub fn redeem_pairing_code(
    store: &(impl CredentialStore + ?Sized),
    code: &str,
    now_ms: u64,
) -> Result<Result<(String, Credential), PairFailure>, StorageError> {
    if !pairing_code_well_formed(code) {
        return Ok(Err(PairFailure::Malformed));
    }
    let mut key = None;
    let redeemed = store.redeem_pairing_code(&hash_key(code), now_ms, &mut |ctx| {
        let (k, credential) = new_key(ctx.clone(), now_ms, None)
            .map_err(|e| StorageError::backend(format!("no randomness: {e}")))?;
        key = Some(k);
        Ok(credential)
    })?;
    Ok(redeemed.map(|credential| {
        let key = key.take().expect("a redeemed code made a key");
        (key, credential)
    }))
}

/// Checks a presented key against the store.
pub fn verify(
    store: &(impl CredentialStore + ?Sized),
    key: Option<&str>,
    now_ms: u64,
) -> Result<Result<Credential, AuthFailure>, StorageError> {
    let Some(key) = key else {
        return Ok(Err(AuthFailure::Missing));
    };
    // Cheap shape check first: no database query for garbage.
    if !well_formed(key) {
        return Ok(Err(AuthFailure::Invalid));
    }
    verify_hash(store, &hash_key(key), now_ms)
}

/// Checks the credential stored under `key_hash` (see [`hash_key`]): one
/// storage lookup.
pub fn verify_hash(
    store: &(impl CredentialStore + ?Sized),
    key_hash: &str,
    now_ms: u64,
) -> Result<Result<Credential, AuthFailure>, StorageError> {
    let Some(c) = store.credential(key_hash)? else {
        return Ok(Err(AuthFailure::Invalid));
    };
    if c.revoked_at_ms.is_some() {
        return Ok(Err(AuthFailure::Revoked));
    }
    if c.expires_at_ms.is_some_and(|e| now_ms >= e) {
        return Ok(Err(AuthFailure::Expired));
    }
    Ok(Ok(c))
}

/// Parses a duration like `90d`, `12h`, `30m`, `45s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: add a unit (s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let ctx = TerminalContext::new("t", "b", "till-1");
        let (k1, c1) = new_key(ctx.clone(), 5, None).unwrap();
        let (k2, _) = new_key(ctx, 5, None).unwrap();
        assert_ne!(k1, k2);
        assert!(k1.starts_with(&format!("ts_{}_", c1.key_id)));
        assert_eq!(k1.len(), 3 + 16 + 1 + 43);
        assert_eq!(c1.key_hash, hash_key(&k1));
        assert!(!serde_json::to_string(&c1).unwrap().contains(&k1[20..]));
    }

    #[test]
    fn only_keys_of_the_issued_shape_are_well_formed() {
        let ctx = TerminalContext::new("t", "b", "till-1");
        for _ in 0..50 {
            let (k, _) = new_key(ctx.clone(), 5, None).unwrap();
            assert!(well_formed(&k), "{k}");
        }
        let (k, _) = new_key(ctx, 5, None).unwrap();
        let mut upper = k.clone();
        upper.replace_range(3..4, "A");
        for bad in [
            "",
            "ts_",
            "not-a-key",
            "ts_0000000000000000_nope",
            &k[..k.len() - 1],
            &format!("{k}x"),
            &upper,
            &k.replace("ts_", "tz_"),
            &format!("{}={}", &k[..30], &k[31..]),
            &format!("{}.{}", &k[..19], &k[20..]),
            &"x".repeat(4096),
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn pairing_codes_have_their_own_shape_and_only_their_hash_is_kept() {
        let ctx = TerminalContext::new("t", "b", "till-1");
        let (c1, p1) = new_pairing_code(ctx.clone(), 5, 10).unwrap();
        let (c2, _) = new_pairing_code(ctx.clone(), 5, 10).unwrap();
        assert_ne!(c1, c2);
        assert!(c1.starts_with(&format!("tsp_{}_", p1.code_id)));
        assert_eq!(c1.len(), PAIRING_CODE_LEN);
        assert_eq!(p1.code_hash, hash_key(&c1));
        assert!(pairing_code_well_formed(&c1));
        // A code is not a key, and a key is not a code.
        assert!(!well_formed(&c1));
        let (k, _) = new_key(ctx, 5, None).unwrap();
        assert!(!pairing_code_well_formed(&k));
        for bad in [
            "",
            "tsp_",
            &c1[..c1.len() - 1],
            &format!("{c1}x"),
            &c1.replace("tsp_", "tsq_"),
            &format!("{}.{}", &c1[..20], &c1[21..]),
            &format!("{}A{}", &c1[..4], &c1[5..]),
        ] {
            assert!(!pairing_code_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_pairing_code_redeems_once_for_a_key_that_verifies() {
        let store = crate::storage::MemoryServerStore::new();
        let ctx = TerminalContext::new("t", "b", "till-1");
        let (code, _) = issue_pairing_code(&store, ctx.clone(), 100, 1_000).unwrap();
        let (key, c) = redeem_pairing_code(&store, &code, 200).unwrap().unwrap();
        assert_eq!((c.context, c.expires_at_ms), (ctx, None));
        assert!(verify(&store, Some(&key), 300).unwrap().is_ok());
        assert_eq!(
            redeem_pairing_code(&store, &code, 201)
                .unwrap()
                .unwrap_err(),
            PairFailure::Used
        );
        let (late, _) =
            issue_pairing_code(&store, TerminalContext::new("t", "b", "x"), 100, 1_000).unwrap();
        assert_eq!(
            redeem_pairing_code(&store, &late, 1_100)
                .unwrap()
                .unwrap_err(),
            PairFailure::Expired
        );
        let (unknown, _) = new_pairing_code(TerminalContext::new("t", "b", "x"), 1, 2).unwrap();
        assert_eq!(
            redeem_pairing_code(&store, &unknown, 1)
                .unwrap()
                .unwrap_err(),
            PairFailure::Unknown
        );
        assert_eq!(
            redeem_pairing_code(&store, "tsp_junk", 1)
                .unwrap()
                .unwrap_err(),
            PairFailure::Malformed
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        assert!(parse_duration_ms("12").is_err());
        assert!(parse_duration_ms("x1d").is_err());
    }
}
