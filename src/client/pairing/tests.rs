//! Tests of [`settle`](super::settle): every way an open can go, against
//! a memory store and a scripted server.

use super::*;
use crate::store::{MemoryStore, StoreOwner, SyncMeta};
use std::cell::Cell;

fn id(terminal: &str, branch: &str) -> KeyIdentity {
    KeyIdentity {
        tenant: "demo".into(),
        branch: branch.into(),
        terminal: terminal.into(),
        key_id: "0011223344556677".into(),
        expires_at_ms: None,
    }
}

fn asked(terminal: Option<&str>, branch: Option<&str>, key: Option<&str>) -> Asked {
    Asked {
        terminal_id: terminal.map(Into::into),
        branch_id: branch.map(Into::into),
        api_key: key.map(Into::into),
        pairing_code: None,
        remember_key: true,
    }
}

/// Settles with a server that answers `answer` and counts the asks.
fn run(
    store: &MemoryStore,
    a: Asked,
    answer: Result<KeyIdentity, TransportError>,
    asks: &Cell<u32>,
) -> Result<Settled, ClientError> {
    crate::__private::block_on(settle(
        store,
        a,
        Server {
            whoami: |_key| {
                asks.set(asks.get() + 1);
                async move { answer }
            },
            pair: |_code| async move {
                Err::<PairResponse, _>(TransportError::Server {
                    status: 500,
                    message: "not asked in this test".into(),
                })
            },
        },
        7,
    ))
}

/// Settles with a server that redeems codes with `answer` (and never
/// answers whoami).
fn run_code(
    store: &MemoryStore,
    a: Asked,
    answer: Result<PairResponse, TransportError>,
) -> Result<Settled, ClientError> {
    crate::__private::block_on(settle(
        store,
        a,
        Server {
            whoami: |_key| async move {
                panic!("a redeemed code needs no whoami");
                #[allow(unreachable_code)]
                Err::<KeyIdentity, TransportError>(TransportError::Timeout)
            },
            pair: |code: String| async move {
                assert_eq!(code, "tsp_code");
                answer
            },
        },
        8,
    ))
}

fn with_code(terminal: Option<&str>) -> Asked {
    Asked {
        terminal_id: terminal.map(Into::into),
        pairing_code: Some("tsp_code".into()),
        remember_key: true,
        ..Default::default()
    }
}

#[test]
fn a_key_of_another_tenant_with_the_same_names_is_refused() {
    let store = MemoryStore::new();
    let asks = Cell::new(0);
    run(
        &store,
        asked(None, None, Some("k1")),
        Ok(id("tab-1", "hotel-1")),
        &asks,
    )
    .unwrap();
    owned(&store, "tab-1", "hotel-1");
    let mut elsewhere = id("tab-1", "hotel-1");
    elsewhere.tenant = "someone-else".into();
    let e = run(&store, asked(None, None, Some("k2")), Ok(elsewhere), &asks).unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch, "{e}");
    assert!(e.message.contains("someone-else"), "{e}");
    let kept = crate::__private::block_on(store.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!(kept.api_key, "k1", "the store's key stands");
}

#[test]
fn a_key_kept_unchecked_is_checked_when_the_server_answers() {
    let store = MemoryStore::new();
    let asks = Cell::new(0);
    let both = asked(Some("tab-1"), Some("hotel-1"), Some("k-of-tab-2"));
    run(&store, both, Err(offline()), &asks).unwrap();
    owned(&store, "tab-1", "hotel-1");
    // Offline again: nothing to ask, it opens.
    run(&store, asked(None, None, None), Err(offline()), &asks).unwrap();
    assert_eq!(asks.get(), 2, "asked each time, while unchecked");
    // The server answers: the key is another terminal's.
    let e = run(
        &store,
        asked(None, None, None),
        Ok(id("tab-2", "hotel-1")),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch, "{e}");
    // A right key, confirmed: kept with its identity, not asked again.
    let fresh = MemoryStore::new();
    run(
        &fresh,
        asked(Some("tab-1"), Some("hotel-1"), Some("k1")),
        Err(offline()),
        &asks,
    )
    .unwrap();
    let n = asks.get();
    run(
        &fresh,
        asked(None, None, None),
        Ok(id("tab-1", "hotel-1")),
        &asks,
    )
    .unwrap();
    let c = crate::__private::block_on(fresh.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!(c.identity, Some(id("tab-1", "hotel-1")));
    run(&fresh, asked(None, None, None), Err(offline()), &asks).unwrap();
    assert_eq!(
        asks.get(),
        n + 1,
        "a confirmed key is not asked about again"
    );
}

#[test]
fn empty_ids_are_no_ids() {
    let store = MemoryStore::new();
    let asks = Cell::new(0);
    let e = run(
        &store,
        asked(Some(""), Some(""), None),
        Err(offline()),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotPaired);
}

#[test]
fn no_secret_in_debug_output() {
    let mut a = asked(Some("t"), Some("b"), Some("the-key"));
    a.pairing_code = Some("the-code".into());
    let s = format!(
        "{a:?} {:?}",
        Settled {
            terminal_id: "t".into(),
            branch_id: "b".into(),
            api_key: Some("the-key".into()),
            identity: None,
            key_stored: true,
        }
    );
    let r = format!(
        "{:?} {:?}",
        crate::protocol::PairRequest {
            code: "the-code".into()
        },
        PairResponse {
            api_key: "the-key".into(),
            identity: id("t", "b")
        }
    );
    for text in [s, r] {
        assert!(
            !text.contains("the-key") && !text.contains("the-code"),
            "{text}"
        );
    }
}

#[test]
fn a_pairing_code_is_redeemed_for_a_key_the_store_keeps() {
    let store = MemoryStore::new();
    let answer = PairResponse {
        api_key: "k-new".into(),
        identity: id("tab-3", "hotel-1"),
    };
    let s = run_code(&store, with_code(None), Ok(answer.clone())).unwrap();
    assert_eq!(
        (s.terminal_id.as_str(), s.branch_id.as_str()),
        ("tab-3", "hotel-1")
    );
    assert_eq!((s.api_key.as_deref(), s.key_stored), (Some("k-new"), true));
    let c = crate::__private::block_on(store.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!((c.api_key.as_str(), c.stored_at_ms), ("k-new", 8));
    assert_eq!(c.identity, Some(id("tab-3", "hotel-1")));

    // A used code: the server's refusal, at open, and nothing changes.
    let used = TransportError::Unauthorized {
        code: ErrorCode::SyncUnauthorized,
        message: "pairing code unknown, used or expired".into(),
    };
    let fresh = MemoryStore::new();
    let e = run_code(&fresh, with_code(None), Err(used)).unwrap_err();
    assert_eq!(e.code, ErrorCode::SyncUnauthorized);
    assert!(e.message.contains("pairing"), "{e}");
    assert_eq!(
        crate::__private::block_on(fresh.load_credential()).unwrap(),
        None
    );

    // The code of another terminal than the store's, or the ids given.
    owned(&store, "tab-3", "hotel-1");
    let other = PairResponse {
        api_key: "k-other".into(),
        identity: id("tab-4", "hotel-1"),
    };
    let e = run_code(&store, with_code(None), Ok(other.clone())).unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch, "{e}");
    let e = run_code(&MemoryStore::new(), with_code(Some("tab-9")), Ok(other)).unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch, "{e}");
    let kept = crate::__private::block_on(store.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!(kept.api_key, "k-new", "the store's key stands");

    // A code and a key, or a code the store could not keep: refused
    // before the code is spent.
    let mut both = with_code(None);
    both.api_key = Some("k".into());
    let mut forget = with_code(None);
    forget.remember_key = false;
    for a in [both, forget] {
        let e = run_code(&MemoryStore::new(), a, Ok(answer.clone())).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadArgument, "{e}");
    }
}

/// The state an engine leaves after opening as `terminal` of `branch`.
fn owned(store: &MemoryStore, terminal: &str, branch: &str) {
    let mut meta: SyncMeta = crate::store::conformance::sample_meta();
    meta.owner = Some(StoreOwner {
        terminal_id: terminal.into(),
        branch_id: branch.into(),
    });
    crate::__private::block_on(store.commit(WriteBatch {
        ops: vec![WriteOp::PutMeta(meta)],
    }))
    .unwrap();
}

fn offline() -> TransportError {
    TransportError::Unreachable("offline".into())
}

#[test]
fn a_key_alone_pairs_and_is_kept_then_a_bare_open_needs_no_server() {
    let store = MemoryStore::new();
    let asks = Cell::new(0);
    let s = run(
        &store,
        asked(None, None, Some("k1")),
        Ok(id("tab-1", "hotel-1")),
        &asks,
    )
    .unwrap();
    assert_eq!(
        (s.terminal_id.as_str(), s.branch_id.as_str()),
        ("tab-1", "hotel-1")
    );
    assert!(s.key_stored);
    assert_eq!(asks.get(), 1);
    let c = crate::__private::block_on(store.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!(c.api_key, "k1");
    assert_eq!(c.identity, Some(id("tab-1", "hotel-1")));
    assert!(!format!("{c:?}").contains("k1"), "Debug hides the key");

    // Offline, with nothing given (and the engine never opened): the
    // stored key and what the server said of it.
    let s = run(&store, asked(None, None, None), Err(offline()), &asks).unwrap();
    assert_eq!(
        (s.terminal_id.as_str(), s.api_key.as_deref()),
        ("tab-1", Some("k1"))
    );
    assert_eq!(asks.get(), 1, "the stored key is not asked about again");

    // Once the engine recorded its owner: the same.
    owned(&store, "tab-1", "hotel-1");
    let s = run(
        &store,
        asked(Some("tab-1"), None, None),
        Err(offline()),
        &asks,
    )
    .unwrap();
    assert_eq!(s.branch_id, "hotel-1");
    assert_eq!(asks.get(), 1);
}

#[test]
fn a_store_of_another_terminal_is_refused_before_the_server_is_asked() {
    let store = MemoryStore::new();
    owned(&store, "tab-1", "hotel-1");
    let asks = Cell::new(0);
    for a in [
        asked(Some("tab-2"), Some("hotel-1"), None),
        asked(None, Some("hotel-2"), Some("k")),
    ] {
        let e = run(&store, a, Ok(id("tab-1", "hotel-1")), &asks).unwrap_err();
        assert_eq!(e.code, ErrorCode::TerminalMismatch, "{e}");
        assert!(e.message.contains("tab-1"), "{e}");
    }
    assert_eq!(asks.get(), 0);
}

#[test]
fn a_key_of_another_terminal_is_refused_at_open_and_not_kept() {
    let asks = Cell::new(0);
    // Ids given, unpaired store.
    let store = MemoryStore::new();
    let e = run(
        &store,
        asked(Some("tab-1"), Some("hotel-1"), Some("k-of-tab-2")),
        Ok(id("tab-2", "hotel-1")),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch);
    assert!(
        e.message.contains("tab-2") && e.message.contains("API key"),
        "{e}"
    );
    // A store owned by tab-1, given tab-2's key.
    owned(&store, "tab-1", "hotel-1");
    let e = run(
        &store,
        asked(None, None, Some("k-of-tab-2")),
        Ok(id("tab-2", "hotel-1")),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch);
    // Only one id given, and the key's other id differs.
    let fresh = MemoryStore::new();
    let e = run(
        &fresh,
        asked(None, Some("hotel-9"), Some("k")),
        Ok(id("tab-1", "hotel-1")),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalMismatch);
    for s in [&store, &fresh] {
        assert_eq!(
            crate::__private::block_on(s.load_credential()).unwrap(),
            None
        );
    }
}

#[test]
fn an_unpaired_store_needs_a_key_and_the_server_once() {
    let asks = Cell::new(0);
    let store = MemoryStore::new();
    let e = run(
        &store,
        asked(Some("tab-1"), None, None),
        Err(offline()),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotPaired);
    let e = run(&store, asked(None, None, Some("k")), Err(offline()), &asks).unwrap_err();
    assert_eq!(e.code, ErrorCode::SyncOffline);
    assert!(e.message.contains("pairing"), "{e}");
    let unauthorized = TransportError::Unauthorized {
        code: ErrorCode::SyncUnauthorized,
        message: "invalid key".into(),
    };
    let e = run(
        &store,
        asked(None, None, Some("k")),
        Err(unauthorized),
        &asks,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::SyncUnauthorized);
    assert_eq!(crate::__private::block_on(store.load_meta()).unwrap(), None);
    assert_eq!(
        crate::__private::block_on(store.load_credential()).unwrap(),
        None
    );
}

#[test]
fn with_both_ids_the_open_goes_on_without_the_server_and_a_refused_key_is_not_kept() {
    let asks = Cell::new(0);
    let store = MemoryStore::new();
    let both = || asked(Some("tab-1"), Some("hotel-1"), Some("k1"));
    let unauthorized = TransportError::Unauthorized {
        code: ErrorCode::SyncUnauthorized,
        message: "revoked".into(),
    };
    let s = run(&store, both(), Err(unauthorized), &asks).unwrap();
    assert_eq!((s.terminal_id.as_str(), s.key_stored), ("tab-1", false));
    assert_eq!(
        crate::__private::block_on(store.load_credential()).unwrap(),
        None
    );
    // Offline: kept unchecked (the first request checks it).
    let s = run(&store, both(), Err(offline()), &asks).unwrap();
    assert!(s.key_stored && s.identity.is_none());
    // The same key again, still unchecked, is asked about again; so is
    // a new one.
    run(&store, both(), Err(offline()), &asks).unwrap();
    assert_eq!(asks.get(), 3);
    let mut rotated = both();
    rotated.api_key = Some("k2".into());
    let s = run(&store, rotated, Ok(id("tab-1", "hotel-1")), &asks).unwrap();
    assert_eq!(asks.get(), 4);
    assert_eq!(s.identity, Some(id("tab-1", "hotel-1")));
    let c = crate::__private::block_on(store.load_credential())
        .unwrap()
        .unwrap();
    assert_eq!(c.api_key, "k2");
    // remember_key false forgets it.
    let mut forget = asked(Some("tab-1"), Some("hotel-1"), None);
    forget.remember_key = false;
    let s = run(&store, forget, Err(offline()), &asks).unwrap();
    assert!(!s.key_stored);
    assert_eq!(
        crate::__private::block_on(store.load_credential()).unwrap(),
        None
    );
}
