//! Multi-tab coordination: one tab leads (holds a Web Lock named after the
//! database, owns the engine and runs the sync); the others reach it over a
//! BroadcastChannel and hear its events on the same channel.
//!
//! Web Locks and BroadcastChannel are declared here with a small extern
//! block (web-sys keeps `LockManager` behind its unstable APIs).

use crate::client::{ClientError as ApiError, Command};
use futures::channel::oneshot;
use js_sys::{Object, Promise, Reflect};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = LockManager)]
    type Locks;
    #[wasm_bindgen(method, js_name = request)]
    fn request_with_options(
        this: &Locks,
        name: &str,
        options: &Object,
        callback: &js_sys::Function,
    ) -> Promise;
}

fn locks() -> Option<Locks> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let l = Reflect::get(&nav, &"locks".into()).ok()?;
    l.is_object().then(|| l.unchecked_into())
}

/// A held (or awaited) leadership lock; dropping it does not release it,
/// [`Leadership::release`] does.
#[derive(Debug, Default)]
pub struct Leadership {
    release: Rc<RefCell<Option<js_sys::Function>>>,
}

impl Leadership {
    /// Gives the lock up (another tab may take over).
    pub fn release(&self) {
        if let Some(f) = self.release.borrow_mut().take() {
            let _ = f.call0(&JsValue::NULL);
        }
    }
}

/// Tries to lead now: `Some` if this tab took the lock, `None` if another
/// tab holds it. Without Web Locks (insecure context) every tab leads.
pub async fn try_lead(name: &str) -> Option<Leadership> {
    let Some(locks) = locks() else {
        return Some(Leadership::default());
    };
    let release: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
    let hold = {
        let release = release.clone();
        Promise::new(&mut |resolve, _| *release.borrow_mut() = Some(resolve))
    };
    let (tx, rx) = futures::channel::oneshot::channel::<bool>();
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null();
        let _ = tx.send(got);
        if got {
            hold.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let _ = locks.request_with_options(name, &options, callback.unchecked_ref());
    match rx.await {
        Ok(true) => Some(Leadership { release }),
        _ => None,
    }
}

/// Waits for the lock in the background and calls `elected` once this tab
/// holds it (when the leading tab closes or goes away).
pub fn campaign(name: &str, elected: impl FnOnce() + 'static) -> Leadership {
    let release: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
    let Some(locks) = locks() else {
        elected();
        return Leadership { release };
    };
    let hold = {
        let release = release.clone();
        Promise::new(&mut |resolve, _| *release.borrow_mut() = Some(resolve))
    };
    let callback = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        elected();
        hold.into()
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
    // Rejects with AbortError if the page goes away while waiting: ignored.
    let p = locks.request_with_options(name, &options, callback.unchecked_ref());
    wasm_bindgen_futures::spawn_local(async move {
        let _ = JsFuture::from(p).await;
    });
    Leadership { release }
}

/// A BroadcastChannel carrying JSON text messages between the tabs of one
/// database.
pub struct TabChannel {
    channel: web_sys::BroadcastChannel,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
}

impl std::fmt::Debug for TabChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TabChannel")
    }
}

impl TabChannel {
    /// Joins the channel `name`; `on_message` gets every other tab's message.
    pub fn join(name: &str, mut on_message: impl FnMut(String) + 'static) -> Option<TabChannel> {
        let channel = web_sys::BroadcastChannel::new(name).ok()?;
        let cb =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if let Some(s) = e.data().as_string() {
                    on_message(s);
                }
            });
        channel.set_onmessage(Some(cb.as_ref().unchecked_ref()));
        Some(TabChannel {
            channel,
            _on_message: cb,
        })
    }

    /// Sends to every other tab.
    pub fn post(&self, message: &str) {
        let _ = self.channel.post_message(&JsValue::from_str(message));
    }

    /// Leaves the channel.
    pub fn close(&self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

/// Messages between the tabs of one database (JSON on the [`TabChannel`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum TabMessage {
    /// A follower asks the leader to run a command.
    Req {
        id: u64,
        from: String,
        #[serde(rename = "op")]
        command: Command,
    },
    /// The leader's answer.
    Res {
        id: u64,
        to: String,
        result: Result<serde_json::Value, ApiError>,
    },
    /// An engine event, from the leader.
    Ev { event: crate::status::Event },
}

/// A follower's calls waiting for the leader's answer.
#[derive(Debug, Default)]
pub(crate) struct Rpc {
    next: std::cell::Cell<u64>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Result<serde_json::Value, ApiError>>>>,
}

impl Rpc {
    /// A new call: its id and the receiver of its answer.
    pub fn start(&self) -> (u64, oneshot::Receiver<Result<serde_json::Value, ApiError>>) {
        let id = self.next.get() + 1;
        self.next.set(id);
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(id, tx);
        (id, rx)
    }

    /// The leader answered call `id`.
    pub fn answer(&self, id: u64, result: Result<serde_json::Value, ApiError>) {
        if let Some(tx) = self.waiting.borrow_mut().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Call `id` gave up waiting.
    pub fn forget(&self, id: u64) {
        self.waiting.borrow_mut().remove(&id);
    }

    /// Fails every waiting call with `error`.
    pub fn fail_all(&self, error: ApiError) {
        for (_, tx) in self.waiting.borrow_mut().drain() {
            let _ = tx.send(Err(error.clone()));
        }
    }
}
