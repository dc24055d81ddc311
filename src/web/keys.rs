//! Key material for an [`IdbStore`](super::IdbStore): creates the store's
//! random master key on first open and keeps it only wrapped (passphrase,
//! host key, or a non-extractable WebCrypto key kept in IndexedDB), and
//! unwraps it on later opens. A wrong key changes nothing.

use super::idb;
use super::schema::{Codec, OpenError, KEYRING, META, VALUE_SCHEMA};
use crate::crypto::{KdfParams, KeyEnvelope, StoreCipher, WrapKind};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbDatabase;
use zeroize::Zeroizing;

/// The key material a store is opened with.
pub enum KeySource {
    /// No encryption (tests, benchmarks, non-sensitive data).
    Plain,
    /// A passphrase; the KEK is derived with PBKDF2-SHA256.
    Passphrase {
        /// The passphrase.
        passphrase: Zeroizing<String>,
        /// Derivation strength ([`KdfParams::production`] outside tests).
        kdf: KdfParams,
    },
    /// A key the host supplies (e.g. from Electron safeStorage), ≥ 16 bytes.
    HostKey(Zeroizing<Vec<u8>>),
    /// A non-extractable AES-GCM key that the browser keeps in IndexedDB.
    WebCrypto,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Plain => "Plain",
            KeySource::Passphrase { .. } => "Passphrase(..)",
            KeySource::HostKey(_) => "HostKey(..)",
            KeySource::WebCrypto => "WebCrypto",
        })
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = SubtleCrypto)]
    type Subtle;
    #[wasm_bindgen(method, catch, js_name = generateKey)]
    fn generate_key_js(
        this: &Subtle,
        alg: &Object,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = encrypt)]
    fn encrypt_js(
        this: &Subtle,
        alg: &Object,
        key: &JsValue,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = decrypt)]
    fn decrypt_js(
        this: &Subtle,
        alg: &Object,
        key: &JsValue,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

fn subtle() -> Result<Subtle, OpenError> {
    Reflect::get(&js_sys::global(), &"crypto".into())
        .and_then(|c| Reflect::get(&c, &"subtle".into()))
        .ok()
        .filter(|s| s.is_object())
        .map(|s| s.unchecked_into::<Subtle>())
        .ok_or_else(|| {
            OpenError::KeyMismatch("WebCrypto is unavailable (needs a secure context)".into())
        })
}

fn gcm_params(iv: &[u8]) -> Object {
    let o = Object::new();
    let _ = Reflect::set(&o, &"name".into(), &"AES-GCM".into());
    let _ = Reflect::set(&o, &"iv".into(), &Uint8Array::from(iv));
    let _ = Reflect::set(
        &o,
        &"additionalData".into(),
        &Uint8Array::from(KeyEnvelope::webcrypto_aad()),
    );
    o
}

fn js_err(e: JsValue) -> OpenError {
    OpenError::Store(idb::store_error(&e))
}

async fn webcrypto_wrap(master: &[u8; 32]) -> Result<(JsValue, Vec<u8>), OpenError> {
    let subtle = subtle()?;
    let alg = Object::new();
    let _ = Reflect::set(&alg, &"name".into(), &"AES-GCM".into());
    let _ = Reflect::set(&alg, &"length".into(), &256.into());
    let usages: Array = ["encrypt", "decrypt"]
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect();
    let kek = JsFuture::from(
        subtle
            .generate_key_js(&alg, false, &usages)
            .map_err(js_err)?,
    )
    .await
    .map_err(js_err)?;
    let mut iv = [0u8; 12];
    getrandom::fill(&mut iv)
        .map_err(|e| OpenError::Cipher(crate::crypto::CipherError::Random(e.to_string())))?;
    // The master key's only JS copy: cleared once WebCrypto has read it
    // (encrypt copies its input before it resolves).
    let plain = Uint8Array::from(&master[..]);
    let sealed = subtle.encrypt_js(&gcm_params(&iv), &kek, &plain);
    let ct = match sealed {
        Ok(p) => JsFuture::from(p).await,
        Err(e) => Err(e),
    };
    plain.fill(0, 0, plain.length());
    let ct = ct.map_err(js_err)?;
    let mut wrapped = iv.to_vec();
    wrapped.extend(Uint8Array::new(&ct).to_vec());
    Ok((kek, wrapped))
}

async fn webcrypto_unwrap(kek: &JsValue, wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, OpenError> {
    if wrapped.len() < 12 || kek.is_undefined() {
        return Err(OpenError::WrongKey);
    }
    let subtle = subtle()?;
    let p = subtle
        .decrypt_js(
            &gcm_params(&wrapped[..12]),
            kek,
            &Uint8Array::from(&wrapped[12..]),
        )
        .map_err(|_| OpenError::WrongKey)?;
    let plain = JsFuture::from(p).await.map_err(|_| OpenError::WrongKey)?;
    let view = Uint8Array::new(&plain);
    let bytes = Zeroizing::new(view.to_vec());
    // Clear the JS copy of the master key.
    view.fill(0, 0, view.length());
    Ok(crate::crypto::ring::master_from_slice(&bytes)?)
}

/// Opens the store's cipher with `key`, creating the key material on the
/// first open of an empty database.
pub(crate) async fn open_cipher(db: &IdbDatabase, key: KeySource) -> Result<Codec, OpenError> {
    for _attempt in 0..2 {
        let tx = idb::transaction(db, &[KEYRING, META], false, false)?;
        let os = tx.object_store(KEYRING).map_err(js_err)?;
        let mode_r = idb::issued(os.get(&"mode".into()))?;
        let env_r = idb::issued(os.get(&"envelope".into()))?;
        let ring_r = idb::issued(os.get(&"ring".into()))?;
        let kek_r = idb::issued(os.get(&"kek".into()))?;
        let meta_r = idb::issued(tx.object_store(META).map_err(js_err)?.count())?;
        let mode = idb::request(&mode_r).await?.as_string();
        let env = idb::request(&env_r).await?.as_string();
        let ring = idb::request(&ring_r).await?;
        let kek = idb::request(&kek_r).await?;
        let has_data = idb::request(&meta_r).await?.as_f64().unwrap_or(0.0) > 0.0;

        match (mode.as_deref(), &key) {
            (Some("plain"), KeySource::Plain) => return Ok(Codec::Plain),
            (Some("plain"), _) => {
                return Err(OpenError::KeyMismatch(
                    "refusing to open: a key was given but this database holds no \
                     encrypted store (it may have been replaced). Nothing was read or changed"
                        .into(),
                ))
            }
            (Some("sealed"), KeySource::Plain) => {
                return Err(OpenError::KeyMismatch(
                    "this store is encrypted; a key is required".into(),
                ))
            }
            (Some("sealed"), k) => {
                let env: KeyEnvelope = env
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or_else(|| {
                        OpenError::Store(crate::store::StoreError::Corrupt(
                            "key envelope missing or unreadable".into(),
                        ))
                    })?;
                let master = match (k, &env.wrap) {
                    (KeySource::Passphrase { passphrase, .. }, WrapKind::Passphrase { .. }) => {
                        env.unwrap_with_passphrase(passphrase)?
                    }
                    (KeySource::HostKey(hk), WrapKind::HostKey) => env.unwrap_with_host_key(hk)?,
                    (KeySource::WebCrypto, WrapKind::WebCrypto) => {
                        webcrypto_unwrap(&kek, &env.wrapped_master).await?
                    }
                    (_, w) => {
                        return Err(OpenError::KeyMismatch(format!(
                            "this store's key is wrapped by {}",
                            match w {
                                WrapKind::Passphrase { .. } => "a passphrase",
                                WrapKind::HostKey => "a host key",
                                WrapKind::WebCrypto => "a WebCrypto key",
                            }
                        )))
                    }
                };
                let ring = ring
                    .dyn_ref::<Uint8Array>()
                    .map(|a| a.to_vec())
                    .ok_or_else(|| {
                        OpenError::Store(crate::store::StoreError::Corrupt(
                            "key ring missing".into(),
                        ))
                    })?;
                let cipher = StoreCipher::open(master, &ring, VALUE_SCHEMA)?;
                return Ok(Codec::Sealed(Box::new(RefCell::new(cipher))));
            }
            (Some(other), _) => {
                return Err(OpenError::KeyMismatch(format!(
                    "unknown store mode {other:?}"
                )))
            }
            (None, KeySource::Plain) => {
                if create(db, "plain", None).await? {
                    return Ok(Codec::Plain);
                }
            }
            (None, _) if has_data => {
                return Err(OpenError::KeyMismatch(
                    "refusing to open: a key was given but this database holds unencrypted \
                     data (it may have been replaced). Nothing was read or changed"
                        .into(),
                ))
            }
            (None, k) => {
                let mut cipher = StoreCipher::generate(VALUE_SCHEMA)?;
                let (env, kek) = match k {
                    KeySource::Passphrase { passphrase, kdf } => (
                        KeyEnvelope::wrap_with_passphrase(cipher.master_key(), passphrase, *kdf)?,
                        None,
                    ),
                    KeySource::HostKey(hk) => (
                        KeyEnvelope::wrap_with_host_key(cipher.master_key(), hk)?,
                        None,
                    ),
                    KeySource::WebCrypto => {
                        let (kek, wrapped) = webcrypto_wrap(cipher.master_key()).await?;
                        (
                            KeyEnvelope {
                                version: 1,
                                wrap: WrapKind::WebCrypto,
                                wrapped_master: wrapped,
                            },
                            Some(kek),
                        )
                    }
                    KeySource::Plain => unreachable!("handled above"),
                };
                let ring = cipher.take_dirty_ring()?.unwrap_or(cipher.sealed_ring()?);
                let env = serde_json::to_string(&env).expect("envelope serialises");
                if create(db, "sealed", Some((env, ring, kek))).await? {
                    return Ok(Codec::Sealed(Box::new(RefCell::new(cipher))));
                }
            }
        }
        // Another tab created the key material meanwhile: read it.
    }
    Err(OpenError::KeyMismatch(
        "could not set up the store's key".into(),
    ))
}

/// Writes the key material of a new store; `false` if another connection
/// got there first.
async fn create(
    db: &IdbDatabase,
    mode: &str,
    sealed: Option<(String, Vec<u8>, Option<JsValue>)>,
) -> Result<bool, OpenError> {
    let tx = idb::transaction(db, &[KEYRING], true, true)?;
    let done = idb::completion(&tx);
    let os = tx.object_store(KEYRING).map_err(js_err)?;
    // `add` fails if another tab wrote the mode first; the abort reports it.
    let issue = || -> Result<(), JsValue> {
        os.add_with_key(&mode.into(), &"mode".into())?;
        if let Some((env, ring, kek)) = &sealed {
            os.put_with_key(&env.into(), &"envelope".into())?;
            os.put_with_key(&Uint8Array::from(&ring[..]), &"ring".into())?;
            if let Some(k) = kek {
                os.put_with_key(k, &"kek".into())?;
            }
        }
        Ok(())
    };
    if let Err(e) = issue() {
        let _ = tx.abort();
        let _ = done.await;
        return Err(js_err(e));
    }
    match done.await {
        Ok(_) => Ok(true),
        Err(e) if idb::error_name(&e) == "ConstraintError" => Ok(false),
        Err(e) => Err(js_err(e)),
    }
}
