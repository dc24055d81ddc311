//! The data key is random and stored only wrapped (`<file>.key`): by a host
//! key or a passphrase. Neither key is on disk in the clear; a wrong one is
//! `STORE_WRONG_KEY` and changes nothing; the envelope tells a wrong key
//! from a damaged first page.

mod common;

use common::*;
use futures::executor::block_on;
use tidesync::crypto::KdfParams;
use tidesync::store::{Store, WriteBatch, WriteOp};
use tidesync::ErrorCode;
use tidesync_sqlcipher::{envelope_path, KeySource, OpenError, SqlCipherStore};
use zeroize::Zeroizing;

const HOST_KEY: &[u8] = b"host-key-from-safeStorage-0123456789";

fn host(k: &[u8]) -> KeySource {
    KeySource::HostKey(Zeroizing::new(k.to_vec()))
}

fn pass(p: &str) -> KeySource {
    KeySource::Passphrase {
        passphrase: Zeroizing::new(p.into()),
        kdf: KdfParams::insecure_fast_for_tests(),
    }
}

fn write_one(store: &SqlCipherStore) {
    block_on(store.commit(WriteBatch {
        ops: vec![WriteOp::PutOutbox(
            tidesync::store::conformance::sample_outbox_entry(1),
        )],
    }))
    .unwrap();
}

#[test]
fn a_host_key_opens_what_it_created_and_is_never_on_disk() {
    let path = fresh_path("host");
    let store = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap();
    assert!(store.is_encrypted());
    write_one(&store);
    let mut files = raw_files(&path);
    files.push((
        "envelope".into(),
        std::fs::read(envelope_path(&path)).unwrap(),
    ));
    store.close();
    let hex: String = HOST_KEY.iter().map(|b| format!("{b:02x}")).collect();
    for (name, bytes) in &files {
        assert!(!contains(bytes, HOST_KEY), "{name} holds the host key");
        assert!(
            !contains(bytes, hex.as_bytes()),
            "{name} holds the host key in hex"
        );
        assert!(!contains(bytes, b"client-a"), "{name} holds plaintext");
    }
    let store = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap();
    assert_eq!(block_on(store.outbox()).unwrap().len(), 1);
}

#[test]
fn a_wrong_host_key_or_passphrase_is_wrong_key_and_changes_nothing() {
    let path = fresh_path("host-wrong");
    write_one(&SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap());
    let snapshot = |p: &std::path::Path| {
        let mut f = raw_files(p);
        f.push(("env".into(), std::fs::read(envelope_path(p)).unwrap()));
        f
    };
    let before = snapshot(&path);
    let err = SqlCipherStore::open_keyed(&path, host(b"another-host-key-0123456789")).unwrap_err();
    assert_eq!(err, OpenError::WrongKey);
    assert_eq!(err.code(), ErrorCode::StoreWrongKey);
    assert_eq!(snapshot(&path), before);

    let err = SqlCipherStore::open_keyed(&path, pass("hunter2")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch, "{err}");
    let err = SqlCipherStore::open_keyed(&path, KeySource::Plain).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch, "{err}");
    assert_eq!(snapshot(&path), before);

    let path = fresh_path("pass-wrong");
    write_one(&SqlCipherStore::open_keyed(&path, pass("correct horse")).unwrap());
    let err = SqlCipherStore::open_keyed(&path, pass("correct horse!")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreWrongKey);
    let store = SqlCipherStore::open_keyed(&path, pass("correct horse")).unwrap();
    assert_eq!(block_on(store.outbox()).unwrap().len(), 1);
}

#[test]
fn a_short_host_key_is_refused() {
    let err = SqlCipherStore::open_keyed(fresh_path("short"), host(b"short")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch, "{err}");
}

#[test]
fn with_the_envelope_a_damaged_first_page_is_corrupt_not_a_wrong_key() {
    let path = fresh_path("page1");
    let store = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap();
    write_one(&store);
    store.close();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2048] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreCorrupt, "{err}");
}

#[test]
fn a_missing_envelope_is_a_key_mismatch() {
    let path = fresh_path("no-envelope");
    write_one(&SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap());
    std::fs::remove_file(envelope_path(&path)).unwrap();
    let err = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreKeyMismatch);
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn change_key_rewraps_the_data_key() {
    let path = fresh_path("rekey");
    write_one(&SqlCipherStore::open_keyed(&path, pass("old pass")).unwrap());
    let db_before = std::fs::read(&path).unwrap();
    assert_eq!(
        SqlCipherStore::change_key(&path, &pass("not it"), &host(HOST_KEY)).unwrap_err(),
        OpenError::WrongKey
    );
    SqlCipherStore::change_key(&path, &pass("old pass"), &host(HOST_KEY)).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        db_before,
        "the database is not rewritten"
    );
    assert_eq!(
        SqlCipherStore::open_keyed(&path, pass("old pass"))
            .unwrap_err()
            .code(),
        ErrorCode::StoreKeyMismatch
    );
    let store = SqlCipherStore::open_keyed(&path, host(HOST_KEY)).unwrap();
    assert_eq!(block_on(store.outbox()).unwrap().len(), 1);
}

#[test]
fn destroy_removes_the_envelope_too() {
    let path = fresh_path("destroy");
    SqlCipherStore::open_keyed(&path, host(HOST_KEY))
        .unwrap()
        .close();
    assert!(envelope_path(&path).exists());
    SqlCipherStore::destroy(&path).unwrap();
    assert!(!envelope_path(&path).exists());
    assert!(!path.exists());
}
