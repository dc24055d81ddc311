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
use crate::protocol::{KeyIdentity, PairRequest, PairResponse};
use crate::store::{Store, StoreOwner, StoredCredential, WriteBatch, WriteOp};
use crate::transport::{Transport, TransportError};
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

/// [`settle`] over transports the binding makes: `transport_for(key)` is a
/// transport to the server presenting `key` (`""`: none) and no branch or
/// terminal, as `whoami` and `pair` need. Both bindings open through it.
pub async fn settle_with<S, T, M>(
    store: &S,
    asked: Asked,
    transport_for: M,
    now_ms: u64,
) -> Result<Settled, ClientError>
where
    S: Store,
    T: Transport,
    M: Fn(&str) -> T,
{
    let make = &transport_for;
    let server = Server {
        whoami: move |key: String| {
            let t = make(&key);
            async move { t.whoami().await }
        },
        pair: move |code: String| {
            let t = make("");
            async move { t.pair(PairRequest { code }).await }
        },
    };
    settle(store, asked, server, now_ms).await
}

#[cfg(test)]
mod tests;
