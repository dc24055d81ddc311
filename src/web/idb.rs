//! Small IndexedDB helpers over web-sys: requests and transactions as
//! futures, transactions with `durability: "strict"`, and the mapping of
//! DOM errors onto [`StoreError`].
//!
//! The futures resolve from the request's own success event, so awaiting
//! them inside a transaction keeps it active (promise reactions run before
//! the event dispatch ends). Nothing else may be awaited inside one.

use crate::store::StoreError;
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransaction};

#[wasm_bindgen]
extern "C" {
    /// `IDBDatabase.transaction(stores, mode, options)`: web-sys keeps the
    /// options dictionary (durability) behind its unstable APIs.
    #[wasm_bindgen(js_name = IDBDatabase)]
    type DatabaseWithOptions;
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction_with_options(
        this: &DatabaseWithOptions,
        stores: &Array,
        mode: &str,
        options: &JsValue,
    ) -> Result<IdbTransaction, JsValue>;
}

/// The global `indexedDB` (window or worker).
pub fn factory() -> Result<IdbFactory, StoreError> {
    Reflect::get(&js_sys::global(), &"indexedDB".into())
        .ok()
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| StoreError::Backend("IndexedDB is not available here".into()))
}

/// The name of a DOM error (`QuotaExceededError`, ...), or its text.
pub fn error_name(e: &JsValue) -> String {
    Reflect::get(e, &"name".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn error_message(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// Maps a DOM error onto a [`StoreError`].
pub fn store_error(e: &JsValue) -> StoreError {
    let name = error_name(e);
    let msg = error_message(e);
    match name.as_str() {
        "QuotaExceededError" => StoreError::QuotaExceeded,
        // A closed, deleted or evicted database.
        "InvalidStateError" | "UnknownError" => StoreError::Gone(format!("{name}: {msg}")),
        _ => StoreError::Backend(format!("{name}: {msg}")),
    }
}

// The handlers live in JS and clear themselves when one fires: a Rust
// `Closure::once_into_js` that never fires (the error handler of a request
// that succeeded) is never freed, and it kept its request and result alive.
#[wasm_bindgen(inline_js = r#"
export function idb_request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => { req.onsuccess = null; req.onerror = null; resolve(req.result); };
    req.onerror = (e) => {
      e.preventDefault();
      req.onsuccess = null; req.onerror = null;
      reject(req.error || { name: 'UnknownError', message: 'request failed' });
    };
  });
}
export function idb_completion(tx) {
  return new Promise((resolve, reject) => {
    const clear = () => { tx.oncomplete = null; tx.onabort = null; };
    tx.oncomplete = () => { clear(); resolve(); };
    tx.onabort = () => {
      const e = tx.error || { name: 'AbortError', message: 'transaction aborted' };
      clear(); reject(e);
    };
  });
}
"#)]
extern "C" {
    fn idb_request(req: &IdbRequest) -> Promise;
    fn idb_completion(tx: &IdbTransaction) -> Promise;
}

/// Resolves with `request.result` on the next success event.
pub async fn request(req: &IdbRequest) -> Result<JsValue, StoreError> {
    if req.ready_state() == web_sys::IdbRequestReadyState::Done {
        return match req.error() {
            Ok(Some(e)) => Err(store_error(&e)),
            _ => req.result().map_err(|e| store_error(&e)),
        };
    }
    JsFuture::from(idb_request(req))
        .await
        .map_err(|e| store_error(&e))
}

/// Resolves when the transaction completes; rejects if it errors or aborts.
/// Create this future right after issuing the requests and await it once.
pub fn completion(tx: &IdbTransaction) -> JsFuture {
    JsFuture::from(idb_completion(tx))
}

/// A transaction over `stores`; `strict` asks for durability "strict" (the
/// data is on disk when it completes), otherwise the browser's default.
pub fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    readwrite: bool,
    strict: bool,
) -> Result<IdbTransaction, StoreError> {
    let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let mode = if readwrite { "readwrite" } else { "readonly" };
    let options = Object::new();
    if strict {
        let _ = Reflect::set(&options, &"durability".into(), &"strict".into());
    }
    db.unchecked_ref::<DatabaseWithOptions>()
        .transaction_with_options(&names, mode, &options)
        .map_err(|e| store_error(&e))
}

/// Opens (and creates or upgrades) a database at `version`, running
/// `upgrade(db, tx, old_version)` in the version-change transaction.
pub async fn open(
    name: &str,
    version: u32,
    upgrade: impl Fn(&IdbDatabase, u32) -> Result<(), JsValue> + 'static,
) -> Result<IdbDatabase, StoreError> {
    let req: IdbOpenDbRequest = factory()?
        .open_with_u32(name, version)
        .map_err(|e| store_error(&e))?;
    let r = req.clone();
    let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
        move |e: web_sys::IdbVersionChangeEvent| {
            let old = e.old_version() as u32;
            let db: IdbDatabase = match r.result() {
                Ok(v) => v.unchecked_into(),
                Err(_) => return,
            };
            if let Err(err) = upgrade(&db, old) {
                web_sys::console::error_2(&"tidesync: schema upgrade failed".into(), &err);
                if let Some(tx) = r.transaction() {
                    let _ = tx.abort();
                }
            }
        },
    );
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = request(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    Ok(result?.unchecked_into())
}

/// Deletes a database (waits until it is gone).
pub async fn delete(name: &str) -> Result<(), StoreError> {
    let req = factory()?
        .delete_database(name)
        .map_err(|e| store_error(&e))?;
    request(&req).await.map(|_| ())
}

/// The future of an `IDBRequest`-producing call, mapping a thrown error.
pub fn issued(r: Result<IdbRequest, JsValue>) -> Result<IdbRequest, StoreError> {
    r.map_err(|e| store_error(&e))
}
