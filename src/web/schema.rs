//! The IndexedDB schema: object stores, versions and the upgrade, how a
//! store's values are encoded ([`Codec`]) and why an open fails
//! ([`OpenError`]). A leaf module: the store and the key set-up both use it.
//!
//! ## Schema versions (IndexedDB database version)
//! - 1: `entities` `[collection, id]`, `outbox` seq, `conflicts`
//!   `[collection, id]`, `audit` seq, `meta` `"meta"`.
//! - 2: adds `keyring` (key envelope, sealed key ring, WebCrypto KEK, mode).
//!   A version-1 database (always plain) opens as a plain store.
//! - 3: adds `pages` `[collection, n]` (packed pages of entity records) and
//!   `dirs` `collection` (each collection's page directory); see
//!   `store/pages.rs`. The records of a version-2 database stay where they
//!   are and read as they did: `entities` now holds the records written
//!   one at a time, and bulk writes fold them into pages.

use crate::crypto::{CipherError, StoreCipher};
use crate::error_code::ErrorCode;
use crate::store::StoreError;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use web_sys::IdbDatabase;

/// The IndexedDB schema version this build writes.
pub const DB_VERSION: u32 = 3;
/// Version of the record encoding, bound into every value's AAD.
pub const VALUE_SCHEMA: u32 = 1;

pub(crate) const ENTITIES: &str = "entities";
pub(crate) const OUTBOX: &str = "outbox";
pub(crate) const CONFLICTS: &str = "conflicts";
pub(crate) const AUDIT: &str = "audit";
pub(crate) const META: &str = "meta";
pub(crate) const KEYRING: &str = "keyring";
pub(crate) const PAGES: &str = "pages";
pub(crate) const DIRS: &str = "dirs";
/// Every object store of the current schema.
pub const ALL_STORES: [&str; 8] = [
    ENTITIES, OUTBOX, CONFLICTS, AUDIT, META, KEYRING, PAGES, DIRS,
];

/// Creates the object stores of every version in `(old, target]`.
pub fn upgrade(db: &IdbDatabase, old: u32, target: u32) -> Result<(), JsValue> {
    if old < 1 && target >= 1 {
        for s in [ENTITIES, OUTBOX, CONFLICTS, AUDIT, META] {
            db.create_object_store(s)?;
        }
    }
    if old < 2 && target >= 2 {
        db.create_object_store(KEYRING)?;
    }
    if old < 3 && target >= 3 {
        db.create_object_store(PAGES)?;
        db.create_object_store(DIRS)?;
    }
    Ok(())
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The key material does not open this store. Nothing was changed.
    #[error("wrong key or passphrase for this store")]
    WrongKey,
    /// The store is encrypted and no key was given, or the other way round.
    #[error("{0}")]
    KeyMismatch(String),
    /// Key setup failed.
    #[error("key setup failed: {0}")]
    Cipher(CipherError),
    /// IndexedDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpenError {
    /// The stable code (`STORE_WRONG_KEY`, `STORE_KEY_MISMATCH`, or the
    /// store's own).
    pub fn code(&self) -> ErrorCode {
        match self {
            OpenError::WrongKey => ErrorCode::StoreWrongKey,
            OpenError::KeyMismatch(_) | OpenError::Cipher(_) => ErrorCode::StoreKeyMismatch,
            OpenError::Store(s) => s.code(),
        }
    }
}

impl From<CipherError> for OpenError {
    fn from(e: CipherError) -> Self {
        match e {
            CipherError::WrongKey => OpenError::WrongKey,
            e => OpenError::Cipher(e),
        }
    }
}

/// How values are encoded: plain JSON, or sealed by the store's cipher.
pub(crate) enum Codec {
    Plain,
    Sealed(Box<RefCell<StoreCipher>>),
}

impl From<OpenError> for crate::client::ClientError {
    fn from(e: OpenError) -> Self {
        crate::client::ClientError::new(e.code(), e.to_string())
    }
}
