//! The core's store conformance suite on SQLCipher files: plain, with a raw
//! key, and with a passphrase.

mod common;

mod plain {
    tidesync::store_conformance_tests!(async {
        tidesync_sqlcipher::SqlCipherStore::open(
            crate::common::fresh_path("plain"),
            tidesync_sqlcipher::StoreKey::Plain,
        )
        .unwrap()
    });
}

mod raw_key {
    tidesync::store_conformance_tests!(async {
        tidesync_sqlcipher::SqlCipherStore::open(
            crate::common::fresh_path("raw"),
            crate::common::raw_key(),
        )
        .unwrap()
    });
}

mod passphrase {
    tidesync::store_conformance_tests!(async {
        tidesync_sqlcipher::SqlCipherStore::open(
            crate::common::fresh_path("pass"),
            crate::common::passphrase("correct horse battery staple"),
        )
        .unwrap()
    });
}
