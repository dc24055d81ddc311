//! What differs between the browser engines scripts/test-web.sh runs
//! (headless Chromium, Firefox ESR, WebKitGTK), and the behaviour the
//! adapter keeps in each:
//!
//! - the APIs the adapter needs are there in every one (IndexedDB with
//!   `durability`, WebCrypto, Web Locks, BroadcastChannel, a secure
//!   context); the optional ones differ and are only logged:
//!   `navigator.storage` (absent in WebKitGTK), `navigator.connection` and
//!   `performance.memory` (Chromium only);
//! - `navigator.storage.persist()`: Chromium answers at once, Firefox leaves
//!   it pending on a permission prompt, WebKitGTK has no `navigator.storage`:
//!   the adapter asks without waiting and swallows a refusal;
//! - Web Locks: one tab leads, the next is elected on release; without Web
//!   Locks every tab leads;
//! - BroadcastChannel: a tab's messages reach the others and not itself;
//! - every IndexedDB request and transaction handler is released once it
//!   fired (what the heap test checks where the heap cannot be read).
//!
//! Durability "strict" as the engine reports it is asserted in
//! `tests::a_commit_is_one_strict_readwrite_transaction_over_every_store_it_touches`,
//! the non-extractable WebCrypto key read back from IndexedDB in
//! `tests::a_raw_scan_of_every_object_store_finds_no_plaintext_ids_or_key`.

use super::navigator;
use super::store::IdbStore;
use super::tabs::{self, TabChannel};
use super::tests::{passphrase, put, raw, secret_record, unique};
use crate::protocol::EntityKey;
use crate::store::*;
use futures::future::{select, Either};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

// The JS of the browser tests (tests.rs uses the transaction spy): one
// snippet module, since each is one more request for the page to load, and
// wasm-bindgen-test-runner's server (0.2.130) sometimes leaves one of five
// concurrent snippet requests from Chromium unanswered, hanging the run.
#[wasm_bindgen(inline_js = r#"
export function engine_report() {
  const has = (o, k) => o != null && k in o;
  const storage = self.navigator && navigator.storage;
  return JSON.stringify({
    userAgent: navigator.userAgent,
    secureContext: self.isSecureContext === true,
    indexedDB: typeof indexedDB === 'object' && indexedDB !== null,
    durability: has(self.IDBTransaction && IDBTransaction.prototype, 'durability'),
    subtle: !!(self.crypto && crypto.subtle && typeof crypto.subtle.generateKey === 'function'),
    locks: !!(navigator.locks && typeof navigator.locks.request === 'function'),
    broadcastChannel: typeof BroadcastChannel === 'function',
    // Optional: logged, not required.
    storagePersist: !!(storage && typeof storage.persist === 'function'),
    storageEstimate: !!(storage && typeof storage.estimate === 'function'),
    connection: !!navigator.connection,
    performanceMemory: !!(self.performance && performance.memory),
  });
}

export function fake_storage(mode) {
  const seen = { persist: 0, unhandled: 0 };
  const onUnhandled = (e) => { seen.unhandled++; e.preventDefault(); };
  self.addEventListener('unhandledrejection', onUnhandled);
  const value = mode === 'absent' ? undefined : {
    persist() {
      seen.persist++;
      // 'pending': Firefox's unanswered permission prompt.
      return mode === 'pending'
        ? new Promise(() => {})
        : Promise.reject(new DOMException('refused', 'NotAllowedError'));
    },
  };
  // An own property shadows Navigator.prototype's getter; delete restores it.
  Object.defineProperty(navigator, 'storage', { value, configurable: true });
  return {
    persist_calls: () => seen.persist,
    unhandled: () => seen.unhandled,
    restore: () => {
      delete navigator.storage;
      self.removeEventListener('unhandledrejection', onUnhandled);
    },
  };
}

export function hide_locks() {
  Object.defineProperty(navigator, 'locks', { value: undefined, configurable: true });
  return () => { delete navigator.locks; };
}

export function spy_transactions() {
  const orig = IDBDatabase.prototype.transaction;
  const seen = [];
  IDBDatabase.prototype.transaction = function (stores, mode, options) {
    const tx = orig.call(this, stores, mode, options);
    seen.push({
      stores: [].concat(stores).join(','), mode: mode || 'readonly',
      durability: (options && options.durability) || 'default',
      // What the engine says it does: an engine that ignored the option
      // would report 'default' here, or lack the attribute.
      reported: 'durability' in tx ? tx.durability : 'absent',
    });
    return tx;
  };
  return { seen: () => JSON.stringify(seen), restore: () => { IDBDatabase.prototype.transaction = orig; } };
}

export function spy_idb_handlers() {
  const requests = [], transactions = [], undo = [];
  const wrap = (proto, names, sink) => {
    for (const n of names) {
      const orig = proto[n];
      if (typeof orig !== 'function') continue;
      proto[n] = function (...args) { const r = orig.apply(this, args); sink.push(r); return r; };
      undo.push(() => { proto[n] = orig; });
    }
  };
  wrap(IDBObjectStore.prototype,
    ['get', 'getAll', 'getAllKeys', 'put', 'add', 'delete', 'count', 'openCursor', 'clear'], requests);
  wrap(IDBIndex.prototype, ['get', 'getAll', 'getAllKeys', 'count', 'openCursor'], requests);
  wrap(IDBFactory.prototype, ['open', 'deleteDatabase'], requests);
  wrap(IDBDatabase.prototype, ['transaction'], transactions);
  return {
    requests: () => requests.length,
    transactions: () => transactions.length,
    unreleased: () => JSON.stringify([
      ...requests.filter(r => r.onsuccess || r.onerror)
        .map(r => 'request on ' + (r.source && r.source.name)),
      ...transactions.filter(t => t.oncomplete || t.onabort)
        .map(t => 'transaction on ' + Array.from(t.objectStoreNames).join(',')),
    ]),
    restore: () => { undo.reverse().forEach(f => f()); },
  };
}
"#)]
extern "C" {
    fn engine_report() -> String;

    type FakeStorage;
    fn fake_storage(mode: &str) -> FakeStorage;
    #[wasm_bindgen(method, structural)]
    fn persist_calls(this: &FakeStorage) -> u32;
    #[wasm_bindgen(method, structural)]
    fn unhandled(this: &FakeStorage) -> u32;
    #[wasm_bindgen(method, structural)]
    fn restore(this: &FakeStorage);

    fn hide_locks() -> js_sys::Function;

    /// Records each transaction opened until `restore`: its stores, mode,
    /// the durability asked for and the one the engine reports.
    pub(super) type TxSpy;
    pub(super) fn spy_transactions() -> TxSpy;
    #[wasm_bindgen(method, structural)]
    pub(super) fn seen(this: &TxSpy) -> String;
    #[wasm_bindgen(method, structural)]
    pub(super) fn restore(this: &TxSpy);

    /// Watches every IndexedDB request and transaction made until `restore`.
    pub(super) type HandlerSpy;
    pub(super) fn spy_idb_handlers() -> HandlerSpy;
    #[wasm_bindgen(method, structural)]
    pub(super) fn requests(this: &HandlerSpy) -> u32;
    #[wasm_bindgen(method, structural)]
    pub(super) fn transactions(this: &HandlerSpy) -> u32;
    /// JSON list of the requests and transactions still holding a handler.
    #[wasm_bindgen(method, structural)]
    pub(super) fn unreleased(this: &HandlerSpy) -> String;
    #[wasm_bindgen(method, structural)]
    pub(super) fn restore(this: &HandlerSpy);
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// `f`'s output, or `None` after `ms`.
async fn within<T>(ms: u32, f: impl std::future::Future<Output = T>) -> Option<T> {
    match select(Box::pin(f), Box::pin(sleep(ms))).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// A store that opens and commits: the adapter works after what was done.
async fn a_store_still_commits() {
    let name = unique("engine");
    let s = IdbStore::open(&name, passphrase("engine")).await.unwrap();
    let key = EntityKey::new("guests", "101");
    put(&s, vec![WriteOp::PutEntity(secret_record("101"))]).await;
    assert!(s.get(&key).await.unwrap().is_some());
    s.close();
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
fn the_engine_offers_what_the_adapter_needs() {
    let report: serde_json::Value = serde_json::from_str(&engine_report()).unwrap();
    web_sys::console::log_1(&format!("engine: {report}").into());
    for needed in [
        "secureContext",
        "indexedDB",
        "durability",
        "subtle",
        "locks",
        "broadcastChannel",
    ] {
        assert_eq!(report[needed], true, "{needed} missing: {report}");
    }
}

#[wasm_bindgen_test]
async fn persistence_is_asked_without_waiting_and_a_refusal_is_swallowed() {
    // Firefox: the promise never settles (an unanswered prompt).
    let fake = fake_storage("pending");
    let asked = navigator::request_persistence();
    assert!(asked);
    assert_eq!(fake.persist_calls(), 1);
    a_store_still_commits().await;
    fake.restore();

    // A refusal: no unhandled rejection reaches the page.
    let fake = fake_storage("reject");
    assert!(navigator::request_persistence());
    sleep(100).await;
    assert_eq!(fake.persist_calls(), 1);
    let unhandled = fake.unhandled();
    fake.restore();
    assert_eq!(
        unhandled, 0,
        "the refusal surfaced as an unhandled rejection"
    );

    // WebKitGTK: no navigator.storage at all.
    let fake = fake_storage("absent");
    assert!(!navigator::request_persistence());
    a_store_still_commits().await;
    fake.restore();
}

#[wasm_bindgen_test]
async fn one_tab_leads_and_the_next_is_elected_when_it_releases() {
    let name = unique("tidesync-leader");
    let first = tabs::try_lead(&name).await.expect("the lock is free");
    assert!(
        tabs::try_lead(&name).await.is_none(),
        "a second tab does not lead while the first holds the lock"
    );
    let (elected_tx, elected) = futures::channel::oneshot::channel::<()>();
    let second = tabs::campaign(&name, move || {
        let _ = elected_tx.send(());
    });
    let mut elected = Box::pin(elected);
    assert!(
        within(200, &mut elected).await.is_none(),
        "not elected while the first tab leads"
    );
    first.release();
    assert!(
        within(5_000, &mut elected).await.is_some(),
        "elected once the first tab released the lock"
    );
    assert!(
        tabs::try_lead(&name).await.is_none(),
        "the second tab holds it"
    );
    second.release();
    // The engine lets the lock go once the held promise settles, a task or
    // so after `release()`.
    let mut again = None;
    for _ in 0..100 {
        again = tabs::try_lead(&name).await;
        if again.is_some() {
            break;
        }
        sleep(50).await;
    }
    again.expect("free again after both released").release();
}

#[wasm_bindgen_test]
async fn without_web_locks_every_tab_leads() {
    let restore = hide_locks();
    let name = unique("tidesync-leader");
    let a = tabs::try_lead(&name).await;
    let b = tabs::try_lead(&name).await;
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let _c = tabs::campaign(&name, move || {
        let _ = tx.send(());
    });
    restore.call0(&JsValue::NULL).unwrap();
    assert!(a.is_some() && b.is_some());
    assert!(rx.await.is_ok(), "a campaign is elected at once");
}

#[wasm_bindgen_test]
async fn tab_messages_reach_the_other_tabs_and_not_the_sender() {
    let name = unique("tidesync-tabs");
    let to_a: Rc<RefCell<Vec<String>>> = Rc::default();
    let to_b: Rc<RefCell<Vec<String>>> = Rc::default();
    let a = {
        let to_a = to_a.clone();
        TabChannel::join(&name, move |m| to_a.borrow_mut().push(m)).unwrap()
    };
    let b = {
        let to_b = to_b.clone();
        TabChannel::join(&name, move |m| to_b.borrow_mut().push(m)).unwrap()
    };
    a.post("hello");
    for _ in 0..100 {
        if !to_b.borrow().is_empty() {
            break;
        }
        sleep(20).await;
    }
    sleep(50).await;
    assert_eq!(*to_b.borrow(), vec!["hello".to_string()]);
    assert!(
        to_a.borrow().is_empty(),
        "the sender hears nothing of its own"
    );
    b.close();
    a.post("after b left");
    sleep(100).await;
    assert_eq!(to_b.borrow().len(), 1, "a closed channel hears nothing");
    a.close();
}

#[wasm_bindgen_test]
async fn every_request_and_transaction_handler_is_released_once_it_fired() {
    let spy = spy_idb_handlers();
    let name = unique("handlers");
    let s = IdbStore::open(&name, passphrase("handlers")).await.unwrap();
    let keys: Vec<EntityKey> = (0..5)
        .map(|i| EntityKey::new("guests", format!("{i}")))
        .collect();
    put(
        &s,
        keys.iter()
            .map(|k| WriteOp::PutEntity(secret_record(&k.id)))
            .chain([WriteOp::PutOutbox(
                crate::store::conformance::sample_outbox_entry(1),
            )])
            .collect(),
    )
    .await;
    assert_eq!(s.get_many(&keys).await.unwrap().len(), 5);
    assert_eq!(s.scan("guests").await.unwrap().len(), 5);
    assert_eq!(s.collections().await.unwrap(), vec!["guests".to_string()]);
    assert_eq!(s.outbox().await.unwrap().len(), 1);
    // A request that fails: a second `add` of the same key.
    let db = raw(&name).await;
    let tx = super::idb::transaction(&db, &[super::schema::META], true, false).unwrap();
    let done = super::idb::completion(&tx);
    let os = tx.object_store(super::schema::META).unwrap();
    let k = JsValue::from_str("handlers-test");
    let first = super::idb::issued(os.add_with_key(&JsValue::from(1), &k)).unwrap();
    let second = super::idb::issued(os.add_with_key(&JsValue::from(2), &k)).unwrap();
    assert!(super::idb::request(&first).await.is_ok());
    let err = super::idb::request(&second).await.unwrap_err();
    assert!(err.to_string().contains("ConstraintError"), "{err}");
    let _ = done.await;
    db.close();
    s.close();
    IdbStore::destroy(&name).await.unwrap();
    let (requests, transactions) = (spy.requests(), spy.transactions());
    let unreleased = spy.unreleased();
    spy.restore();
    assert!(requests >= 15, "{requests} requests watched");
    assert!(transactions >= 5, "{transactions} transactions watched");
    assert_eq!(unreleased, "[]", "handlers left behind");
}
