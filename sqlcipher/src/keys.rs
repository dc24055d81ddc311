//! Where an encrypted store's key comes from, as the design has it: the
//! SQLCipher key is a random data key, stored only wrapped (in
//! `<file>.key`, a [`KeyEnvelope`] of the core's crypto module) by a key
//! the host supplies (Electron's `safeStorage`, the OS keychain) or by a
//! passphrase (PBKDF2-SHA256). Neither the data key nor the host key is
//! ever written in the clear.
//!
//! The envelope's authentication tag also tells a wrong key
//! ([`OpenError::WrongKey`]) from a damaged first page of the database
//! (`Corrupt`), which SQLCipher alone cannot tell apart.

use crate::store::{OpenError, SqlCipherStore, StoreKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use tidesync::crypto::{KdfParams, KeyEnvelope, WrapKind};
use tidesync::store::StoreError;
use zeroize::Zeroizing;

/// The key material a store is opened with.
pub enum KeySource {
    /// No encryption.
    Plain,
    /// A passphrase; the wrapping key is derived with PBKDF2-SHA256.
    Passphrase {
        /// The passphrase.
        passphrase: Zeroizing<String>,
        /// Derivation strength ([`KdfParams::production`] outside tests).
        kdf: KdfParams,
    },
    /// A key the host keeps (≥ 16 bytes), e.g. from Electron's
    /// `safeStorage` or the OS keychain.
    HostKey(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Plain => "Plain",
            KeySource::Passphrase { .. } => "Passphrase(..)",
            KeySource::HostKey(_) => "HostKey(..)",
        })
    }
}

/// The envelope beside a store: `<file>.key`.
pub fn envelope_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

fn kind_name(w: &WrapKind) -> &'static str {
    match w {
        WrapKind::Passphrase { .. } => "a passphrase",
        WrapKind::HostKey => "a host key",
        WrapKind::WebCrypto => "a WebCrypto key",
    }
}

fn cipher_error(e: tidesync::crypto::CipherError) -> OpenError {
    match e {
        tidesync::crypto::CipherError::WrongKey => OpenError::WrongKey,
        tidesync::crypto::CipherError::WeakKdf(m) => OpenError::KeyMismatch(m),
        other => OpenError::Store(StoreError::Backend(other.to_string())),
    }
}

fn io_error(what: &str, e: std::io::Error) -> OpenError {
    OpenError::Store(StoreError::Backend(format!("{what}: {e}")))
}

/// Writes the envelope durably: a temporary file, fsync, rename, fsync of
/// the directory.
fn write_envelope(path: &Path, env: &KeyEnvelope) -> Result<(), OpenError> {
    let text = serde_json::to_vec(env)
        .map_err(|e| OpenError::Store(StoreError::Backend(e.to_string())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error("key envelope", e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("key envelope", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("key envelope", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_envelope(path: &Path) -> Result<Option<KeyEnvelope>, OpenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            OpenError::Store(StoreError::Corrupt(format!(
                "{} is not a key envelope: {e}",
                path.display()
            )))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("key envelope", e)),
    }
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, OpenError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..])
        .map_err(|e| OpenError::Store(StoreError::Backend(format!("random: {e}"))))?;
    Ok(k)
}

fn wrap(master: &[u8; 32], source: &KeySource) -> Result<KeyEnvelope, OpenError> {
    match source {
        KeySource::Passphrase { passphrase, kdf } => {
            KeyEnvelope::wrap_with_passphrase(master, passphrase, *kdf)
        }
        KeySource::HostKey(k) => KeyEnvelope::wrap_with_host_key(master, k),
        KeySource::Plain => unreachable!("a plain store has no envelope"),
    }
    .map_err(cipher_error)
}

fn unwrap(env: &KeyEnvelope, source: &KeySource) -> Result<Zeroizing<[u8; 32]>, OpenError> {
    let matches = matches!(
        (&env.wrap, source),
        (WrapKind::Passphrase { .. }, KeySource::Passphrase { .. })
            | (WrapKind::HostKey, KeySource::HostKey(_))
    );
    if !matches {
        return Err(OpenError::KeyMismatch(format!(
            "the store's key is wrapped by {}",
            kind_name(&env.wrap)
        )));
    }
    match source {
        KeySource::Passphrase { passphrase, .. } => env.unwrap_with_passphrase(passphrase),
        KeySource::HostKey(k) => env.unwrap_with_host_key(k),
        KeySource::Plain => unreachable!(),
    }
    .map_err(cipher_error)
}

impl SqlCipherStore {
    /// Opens (creating if needed) the store at `path` with key material
    /// from the host: on first open a random data key is made and wrapped
    /// into `<path>.key`; later opens unwrap it. A wrong key or passphrase
    /// is [`OpenError::WrongKey`] and changes nothing.
    pub fn open_keyed(path: impl AsRef<Path>, source: KeySource) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let env_path = envelope_path(path);
        let envelope = read_envelope(&env_path)?;
        let db_exists = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if let KeySource::Plain = source {
            if envelope.is_some() && db_exists {
                return Err(OpenError::KeyMismatch(
                    "the store is encrypted and was opened without a key".into(),
                ));
            }
            return Self::open(path, StoreKey::Plain);
        }
        let master = match (db_exists, envelope) {
            (true, Some(env)) => unwrap(&env, &source)?,
            (true, None) => {
                // Let the header say whether it is plain (KeyMismatch) ...
                let header = crate::store::read_header(path);
                if header.as_ref() == Some(crate::store::PLAIN_HEADER) {
                    return Err(OpenError::KeyMismatch(
                        "the store is not encrypted and was opened with a key".into(),
                    ));
                }
                return Err(OpenError::KeyMismatch(format!(
                    "the store's key envelope {} is missing",
                    env_path.display()
                )));
            }
            // A new store (a leftover envelope without its database, from
            // an interrupted wipe, is replaced).
            (false, _) => {
                let master = random_key()?;
                write_envelope(&env_path, &wrap(&master, &source)?)?;
                master
            }
        };
        match Self::open(path, StoreKey::Raw(master)) {
            // The envelope opened, so the key is right: page 1 is damaged.
            Err(OpenError::WrongKey) => Err(OpenError::Store(StoreError::Corrupt(
                "the database's first page fails authentication".into(),
            ))),
            other => other,
        }
    }

    /// Re-wraps the store's data key under new key material (a new
    /// passphrase or host key); the database itself is not rewritten.
    pub fn change_key(
        path: impl AsRef<Path>,
        old: &KeySource,
        new: &KeySource,
    ) -> Result<(), OpenError> {
        if matches!(old, KeySource::Plain) || matches!(new, KeySource::Plain) {
            return Err(OpenError::KeyMismatch(
                "encrypting or decrypting a store in place is not supported".into(),
            ));
        }
        let env_path = envelope_path(path.as_ref());
        let env = read_envelope(&env_path)?.ok_or_else(|| {
            OpenError::KeyMismatch(format!("no key envelope at {}", env_path.display()))
        })?;
        let master = unwrap(&env, old)?;
        write_envelope(&env_path, &wrap(&master, new)?)
    }
}
