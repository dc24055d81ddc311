//! What the browser says about the network and storage (`navigator`), and
//! the DOM event listeners a session adds and must remove when it closes.

use crate::throttle::ConnectionHint;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `navigator`, in a window or a worker.
pub fn navigator() -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .filter(|n| n.is_object())
}

/// `navigator.onLine` (true when unknown).
pub fn online() -> bool {
    navigator()
        .and_then(|n| Reflect::get(&n, &"onLine".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// `navigator.connection` (Chromium only).
pub fn connection() -> Option<JsValue> {
    navigator()
        .and_then(|n| Reflect::get(&n, &"connection".into()).ok())
        .filter(|c| c.is_object())
}

/// `navigator.connection` as the core's hint.
pub fn connection_hint() -> Option<ConnectionHint> {
    let c = connection()?;
    Some(ConnectionHint {
        save_data: Reflect::get(&c, &"saveData".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        effective_type: Reflect::get(&c, &"effectiveType".into())
            .ok()
            .and_then(|v| v.as_string()),
    })
}

thread_local! {
    // The one handler for every refusal of `persist()`, kept for the page's
    // lifetime (a closure per call would never be freed where the answer
    // never comes).
    static IGNORE_REFUSAL: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// Asks the browser not to evict this origin's storage
/// (`navigator.storage.persist()`, best effort), without waiting for the
/// answer, which differs by engine: Chromium answers at once (from its site
/// engagement heuristics), Firefox asks the user and the promise stays
/// pending until they answer (for ever in a headless browser), WebKitGTK has
/// no `navigator.storage`. A refusal (a rejected promise) is swallowed, not
/// left as an unhandled rejection. Returns whether the browser was asked.
pub fn request_persistence() -> bool {
    let Some(storage) = navigator()
        .and_then(|n| Reflect::get(&n, &"storage".into()).ok())
        .filter(|s| s.is_object())
    else {
        return false;
    };
    let Some(persist) = Reflect::get(&storage, &"persist".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    else {
        return false;
    };
    let Ok(answer) = persist.call0(&storage) else {
        return false;
    };
    if let Some(p) = answer.dyn_ref::<Promise>() {
        IGNORE_REFUSAL.with(|ignore| {
            let _ = p.catch(ignore);
        });
    }
    true
}

/// One listener: its target, its event and the callback.
type Added = (JsValue, &'static str, Closure<dyn FnMut(JsValue)>);

/// Event listeners added to DOM targets (`window`, `navigator.connection`),
/// removed together.
#[derive(Default)]
pub struct DomListeners {
    added: Vec<Added>,
}

impl std::fmt::Debug for DomListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomListeners")
            .field("added", &self.added.len())
            .finish()
    }
}

impl DomListeners {
    /// Calls `f` on each `event` of `target`.
    pub fn listen(
        &mut self,
        target: JsValue,
        event: &'static str,
        f: impl FnMut(JsValue) + 'static,
    ) {
        let cb = Closure::<dyn FnMut(JsValue)>::new(f);
        if let Some(t) = target.dyn_ref::<web_sys::EventTarget>() {
            let _ = t.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
            self.added.push((target, event, cb));
        }
    }

    /// Removes every listener.
    pub fn remove_all(&mut self) {
        for (t, ev, cb) in self.added.drain(..) {
            if let Some(t) = t.dyn_ref::<web_sys::EventTarget>() {
                let _ = t.remove_event_listener_with_callback(ev, cb.as_ref().unchecked_ref());
            }
        }
    }
}
