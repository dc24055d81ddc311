//! Shared set-up of the store's tests: fresh files under cargo's target tmp.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tidesync_sqlcipher::{SqlCipherStore, StoreKey};
use zeroize::Zeroizing;

/// A path for a new database file, unique to this process and call.
pub fn fresh_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tidesync-sqlcipher");
    std::fs::create_dir_all(&dir).unwrap();
    let n = N.fetch_add(1, Ordering::SeqCst);
    let path = dir.join(format!("{name}-{}-{n}.db", std::process::id()));
    SqlCipherStore::destroy(&path).unwrap();
    path
}

/// The test key: recognisable bytes, to look for them in the raw file.
pub const KEY: [u8; 32] = *b"tidesync-test-key-0123456789abcd";

pub fn raw_key() -> StoreKey {
    StoreKey::raw(KEY)
}

pub fn passphrase(p: &str) -> StoreKey {
    StoreKey::Passphrase(Zeroizing::new(p.to_string()))
}

/// Every byte of a store's files: the database, its -wal and -shm.
pub fn raw_files(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::fs::read(&p).ok().map(|b| (format!("file{s}"), b))
        })
        .collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
