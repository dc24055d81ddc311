//! Who a store belongs to and which key it syncs with, settled once, in the
//! core, before a binding opens the engine ([`settle`]).
//!
//! A terminal is *paired* by opening its store with the API key alone: the
//! server says what the key was issued for (`GET /v1/whoami`), the store
//! records that terminal and branch as its owner ([`SyncMeta::owner`]) and,
//! in a store that keeps secrets, the key itself
//! ([`StoredCredential`]). Later opens need neither the ids nor the key,
//! offline too. Whatever the app passes is checked against what the store
//! and the server know: a store or a key of another terminal or branch is
//! `TERMINAL_MISMATCH` at open, before anything is queued under the wrong
//! name.
//!
//! [`SyncMeta::owner`]: crate::store::SyncMeta::owner

use super::ClientError;
use crate::error_code::ErrorCode;
use crate::protocol::{KeyIdentity, PairResponse};
use crate::store::{Store, StoreOwner, StoredCredential, WriteBatch, WriteOp};
use crate::transport::TransportError;
use std::future::Future;

/// How [`settle`] reaches the server: `whoami(key)` asks what a key was
/// issued for (`GET /v1/whoami`), `pair(code)` redeems a pairing code
/// (`POST /v1/pair`). A binding builds each from a transport of its own.
#[allow(missing_debug_implementations)] // two closures
pub struct Server<W, P> {
    /// `GET /v1/whoami` with the key.
    pub whoami: W,
    /// `POST /v1/pair` with the code.
    pub pair: P,
}

/// What a binding's `open` was given about the terminal.
#[derive(Default)]
pub struct Asked {
    /// `terminalId`, if given.
    pub terminal_id: Option<String>,
    /// `branchId`, if given.
    pub branch_id: Option<String>,
    /// `apiKey`, if given (a credentials callback's keys are the host's to
    /// keep, and are not stored).
    pub api_key: Option<String>,
    /// `pairingCode`, if given: a one-time code redeemed at the server for
    /// the terminal's key (`POST /v1/pair`), which the store then keeps.
    pub pairing_code: Option<String>,
    /// Keep a given key in the store (default true; a store that does not
    /// keep secrets never keeps one). `false` also removes a stored key.
    pub remember_key: bool,
}

impl std::fmt::Debug for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asked")
            .field("terminal_id", &self.terminal_id)
            .field("branch_id", &self.branch_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<secret>"))
            .field(
                "pairing_code",
                &self.pairing_code.as_ref().map(|_| "<secret>"),
            )
            .field("remember_key", &self.remember_key)
            .finish()
    }
}

/// What the engine opens with.
#[derive(Clone, PartialEq, Eq)]
pub struct Settled {
    /// The terminal.
    pub terminal_id: String,
    /// Its branch.
    pub branch_id: String,
    /// The key to sync with: the one given, else the stored one.
    pub api_key: Option<String>,
    /// What the server said the key belongs to, when it was asked now or
    /// at pairing.
    pub identity: Option<KeyIdentity>,
    /// The key is kept in the store.
    pub key_stored: bool,
}

impl std::fmt::Debug for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settled")
            .field("terminal_id", &self.terminal_id)
            .field("branch_id", &self.branch_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<secret>"))
            .field("identity", &self.identity)
            .field("key_stored", &self.key_stored)
            .finish()
    }
}

fn mismatch(
    what: &str,
    have: &StoreOwner,
    asked_terminal: &str,
    asked_branch: &str,
) -> ClientError {
    ClientError::new(
        ErrorCode::TerminalMismatch,
        format!(
            "{what} terminal {:?} of branch {:?}, not terminal {:?} of branch {:?}; \
             nothing was queued or stored",
            have.terminal_id, have.branch_id, asked_terminal, asked_branch
        ),
    )
}

fn owner_of(id: &KeyIdentity) -> StoreOwner {
    StoreOwner {
        terminal_id: id.terminal.clone(),
        branch_id: id.branch.clone(),
    }
}

/// Checks the parts of `asked` that were given against `have`.
fn agrees(have: &StoreOwner, terminal: Option<&str>, branch: Option<&str>) -> bool {
    terminal.is_none_or(|t| t == have.terminal_id) && branch.is_none_or(|b| b == have.branch_id)
}

/// Settles the terminal, branch and key a binding opens the engine with.
///
/// - The store's owner (set by an earlier open) stands; ids given that
///   differ from it are `TERMINAL_MISMATCH`.
/// - A key given now that the store does not hold already is checked with
///   `whoami` (the server): a key of another terminal or branch than the
///   store's or the ids given is `TERMINAL_MISMATCH`. If the server cannot
///   be asked (offline, unreachable, a refused key) and the ids are known
///   anyway, the open goes on: the first request checks the key again and
///   the status shows what it says; nothing is lost.
/// - With neither an owner nor both ids, the ids come from the key: the
///   server must answer once (pairing), or the open fails with the reason
///   (`SYNC_OFFLINE`, `SYNC_UNAUTHORIZED`, ...; without a key,
///   `NOT_PAIRED`).
/// - A key given now is kept in the store when `remember_key` and the
///   store keeps secrets, unless the server refused it; `remember_key:
///   false` removes a stored one.
pub async fn settle<S, W, F, P, G>(
    store: &S,
    asked: Asked,
    server: Server<W, P>,
    now_ms: u64,
) -> Result<Settled, ClientError>
where
    S: Store,
    W: FnOnce(String) -> F,
    F: Future<Output = Result<KeyIdentity, TransportError>>,
    P: FnOnce(String) -> G,
    G: Future<Output = Result<PairResponse, TransportError>>,
{
    let Asked {
        terminal_id,
        branch_id,
        api_key,
        pairing_code,
        remember_key,
    } = asked;
    let api_key = api_key.filter(|k| !k.is_empty());
    let pairing_code = pairing_code.filter(|c| !c.is_empty());
    // An empty id is no id (it would become a permanent owner `""`).
    let terminal_id = terminal_id.filter(|t| !t.is_empty());
    let branch_id = branch_id.filter(|b| !b.is_empty());
    if pairing_code.is_some() {
        if api_key.is_some() {
            return Err(ClientError::bad_argument(
                "options.apiKey and options.pairingCode: give one of them",
            ));
        }
        if !(remember_key && store.keeps_secrets()) {
            return Err(ClientError::bad_argument(
                "options.pairingCode: the key it gives must be kept, so it needs an \
                 encrypted database and rememberKey (a redeemed code does not work twice)",
            ));
        }
    }
    let owner = store.load_meta().await?.and_then(|m| m.owner);
    let stored = store.load_credential().await?;
    if let Some(owner) = &owner {
        if !agrees(owner, terminal_id.as_deref(), branch_id.as_deref()) {
            return Err(mismatch(
                "this database belongs to",
                owner,
                terminal_id.as_deref().unwrap_or(&owner.terminal_id),
                branch_id.as_deref().unwrap_or(&owner.branch_id),
            ));
        }
    }
    // Redeem the code: the key it gives is a new key whose terminal the
    // server has just said.
    let (api_key, redeemed) = match pairing_code {
        None => (api_key, None),
        Some(code) => {
            let r = (server.pair)(code).await.map_err(|e| {
                ClientError::new(
                    e.code(),
                    format!("pairing: the code was not redeemed ({e}); a code works once"),
                )
            })?;
            (Some(r.api_key.clone()), Some(r.identity.clone()))
        }
    };
    let stored_key = stored.as_ref().map(|c| c.api_key.as_str());
    let new_key = api_key.as_deref().filter(|k| Some(*k) != stored_key);
    // What the server said of the stored key when it was stored (if the
    // key in use is that one).
    let mut identity = match (&new_key, &stored) {
        _ if redeemed.is_some() => redeemed,
        (None, Some(c)) => c.identity.clone(),
        _ => None,
    };
    let known: Option<StoreOwner> = owner
        .clone()
        .or_else(|| match (&terminal_id, &branch_id) {
            (Some(t), Some(b)) => Some(StoreOwner {
                terminal_id: t.clone(),
                branch_id: b.clone(),
            }),
            _ => None,
        })
        // Paired, and the engine never opened (the store has no owner yet).
        .or_else(|| identity.as_ref().map(owner_of));
    let key = api_key.clone().or_else(|| stored_key.map(str::to_string));
    let mut refused = false;
    let must_ask = known.is_none();
    // A stored key the server never confirmed (kept while it was away) is
    // asked about again whenever the server can answer.
    let stored_unchecked =
        new_key.is_none() && stored.as_ref().is_some_and(|c| c.identity.is_none());
    if identity.is_none() && (new_key.is_some() || must_ask || stored_unchecked) {
        match &key {
            None => {
                return Err(ClientError::new(
                    ErrorCode::NotPaired,
                    "this database is not paired yet: give options.apiKey (its terminal \
                     and branch come from the key), or options.terminalId and options.branchId",
                ));
            }
            Some(k) => match (server.whoami)(k.clone()).await {
                Ok(id) => identity = Some(id),
                Err(e) if must_ask => {
                    return Err(ClientError::new(
                        e.code(),
                        format!(
                            "pairing: the server must say once which terminal the key \
                             belongs to ({e}); give options.terminalId and options.branchId \
                             to open without it"
                        ),
                    ));
                }
                Err(TransportError::Unauthorized { .. }) => refused = true,
                // Offline, unreachable, a server without whoami: the first
                // request checks the key.
                Err(_) => {}
            },
        }
    }
    // The tenant: the server partitions by (tenant, branch), so a key of
    // another tenant with the same branch and terminal names is another
    // terminal too.
    if let (Some(id), Some(before)) = (&identity, stored.as_ref().and_then(|c| c.identity.as_ref()))
    {
        if id.tenant != before.tenant {
            return Err(ClientError::new(
                ErrorCode::TerminalMismatch,
                format!(
                    "the API key belongs to tenant {:?}, this database to tenant {:?}; \
                     nothing was changed",
                    id.tenant, before.tenant
                ),
            ));
        }
    }
    let settled_owner = match (known, &identity) {
        (Some(known), Some(id)) => {
            let of_key = owner_of(id);
            if of_key != known || !agrees(&of_key, terminal_id.as_deref(), branch_id.as_deref()) {
                return Err(mismatch(
                    "the API key belongs to",
                    &of_key,
                    terminal_id.as_deref().unwrap_or(&known.terminal_id),
                    branch_id.as_deref().unwrap_or(&known.branch_id),
                ));
            }
            known
        }
        (Some(known), None) => known,
        (None, Some(id)) => {
            let of_key = owner_of(id);
            if !agrees(&of_key, terminal_id.as_deref(), branch_id.as_deref()) {
                return Err(mismatch(
                    "the API key belongs to",
                    &of_key,
                    terminal_id.as_deref().unwrap_or(&of_key.terminal_id),
                    branch_id.as_deref().unwrap_or(&of_key.branch_id),
                ));
            }
            of_key
        }
        // An unknown owner asked the server, or returned above.
        (None, None) => return Err(ClientError::internal("pairing settled no terminal")),
    };

    // Keep (or forget) the key.
    let keep = remember_key && store.keeps_secrets();
    let mut key_stored = keep && stored.is_some() && new_key.is_none();
    if !remember_key && stored.is_some() {
        store
            .commit(WriteBatch {
                ops: vec![WriteOp::PutCredential(None)],
            })
            .await?;
    } else if let (true, true, Some(c), Some(id)) = (keep, stored_unchecked, &stored, &identity) {
        // Now confirmed: kept with what the server said.
        store
            .commit(WriteBatch {
                ops: vec![WriteOp::PutCredential(Some(StoredCredential {
                    api_key: c.api_key.clone(),
                    identity: Some(id.clone()),
                    stored_at_ms: c.stored_at_ms,
                }))],
            })
            .await?;
    } else if let (true, Some(k), false) = (keep, new_key, refused) {
        store
            .commit(WriteBatch {
                ops: vec![WriteOp::PutCredential(Some(StoredCredential {
                    api_key: k.to_string(),
                    identity: identity.clone(),
                    stored_at_ms: now_ms,
                }))],
            })
            .await?;
        key_stored = true;
    }
    Ok(Settled {
        terminal_id: settled_owner.terminal_id,
        branch_id: settled_owner.branch_id,
        api_key: key,
        identity,
        key_stored,
    })
}

#[cfg(test)]
mod tests {
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
}
