//! # tidesync-sqlcipher
//!
//! The native [`Store`](tidesync::Store) of tidesync: one SQLite file,
//! encrypted page by page by SQLCipher (bundled with rusqlite; nothing of
//! SQLite is needed on the system at run time), for the Node addon and any
//! native client.
//!
//! - **One transaction per batch.** [`Store::commit`](tidesync::Store::commit)
//!   runs a whole [`WriteBatch`](tidesync::store::WriteBatch) in one
//!   `BEGIN IMMEDIATE … COMMIT`; a failure at any write rolls all of it back.
//! - **Durable on return.** WAL mode with `synchronous = FULL`: the commit
//!   returns after the WAL is synced. Temporary storage stays in memory, so
//!   no plaintext spills into temp files.
//! - **Keys.** A raw 32-byte key (`PRAGMA key = "x'…'"`: no KDF, opens in
//!   well under a millisecond) or a passphrase (SQLCipher's PBKDF2, ~0.2 s
//!   per open), or no key at all. A wrong key is
//!   [`StoreError::WrongKey`](tidesync::store::StoreError) and writes nothing; an
//!   encrypted file opened without a key (or a plain one with a key) is
//!   `KeyMismatch`. Every page carries SQLCipher's HMAC, so a flipped byte
//!   reads as `Corrupt`, never as other data.
//! - **Schema.** The numbered SQL files of `migrations/sqlcipher/`
//!   ([`migrations`]), each applied once in its own transaction and recorded
//!   with its checksum.
//!
//! ```no_run
//! use tidesync_sqlcipher::{SqlCipherStore, StoreKey};
//! let key = [7u8; 32]; // from the OS keychain or the host, never from disk
//! let store = SqlCipherStore::open("desk.tidesync", StoreKey::raw(key))?;
//! # Ok::<(), tidesync_sqlcipher::OpenError>(())
//! ```

mod keys;
pub mod migrations;
mod store;

pub use keys::{envelope_path, KeySource};
pub use store::{OpenError, SqlCipherStore, StoreKey};
