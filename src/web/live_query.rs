//! `TideSync::live`, the browser's read loop around the core's live query
//! (`client::live_query`): the core keeps the result and says what an
//! event did to it; this module reads the page when asked (once per burst)
//! and calls the page's callback.

use super::api::TideSync;
use super::listeners::to_js;
use super::session::Session;
use crate::client::live_query::{LiveQuery, LiveSpec, Update};
use crate::client::ClientError as ApiError;
use crate::status::{Event, Filter};
use js_sys::Function;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
impl TideSync {
    /// Calls `callback` with the rows of a page query at once, then with
    /// the new rows whenever they change (this tab's writes, pulls, other
    /// tabs), never twice with the same rows. A write to a shown row is
    /// applied to the result without a read; other changes inside the page
    /// read it again, once per burst (core: `client::live_query`). Returns
    /// the function that unsubscribes; a failed read goes to `onError`.
    pub fn live(
        &self,
        query: JsValue,
        callback: Function,
        on_error: Option<Function>,
    ) -> Result<JsValue, JsValue> {
        let spec: LiveSpec = super::json::to_json(&query, "query")
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| ApiError::bad_argument(format!("query: {e}")))
            })
            .map_err(ApiError::into_js)?;
        let filter = Filter::Collection {
            collection: spec.collection.clone(),
        };
        let live = Rc::new(Live {
            query: RefCell::new(LiveQuery::new(spec).map_err(ApiError::into_js)?),
            reading: Cell::new(false),
            again: Cell::new(false),
            closed: Cell::new(false),
            callback,
            on_error,
        });
        let weak = Rc::downgrade(&self.session);
        let handler: Rc<dyn Fn(&Event)> = {
            let live = live.clone();
            let weak = weak.clone();
            Rc::new(move |event| {
                if live.closed.get() {
                    return;
                }
                if live.reading.get() {
                    // A read in flight may predate this event: read again.
                    if live.query.borrow().touches(event) {
                        live.again.set(true);
                    }
                    return;
                }
                let update = live.query.borrow_mut().apply(event);
                match update {
                    Update::Unchanged => {}
                    Update::Changed => live.deliver(),
                    Update::Requery => {
                        if let Some(session) = weak.upgrade() {
                            Live::read(live.clone(), session);
                        }
                    }
                }
            })
        };
        let id = self.session.listeners.add_native(filter, handler);
        Live::read(live.clone(), self.session.clone());
        Ok(Closure::<dyn FnMut()>::new(move || {
            live.closed.set(true);
            if let Some(s) = weak.upgrade() {
                s.listeners.remove(id);
            }
        })
        .into_js_value())
    }
}

/// One live query of a page (see [`TideSync::live`]).
struct Live {
    query: RefCell<LiveQuery>,
    /// A read is in flight.
    reading: Cell<bool>,
    /// An event came during it: read again when it ends.
    again: Cell<bool>,
    closed: Cell<bool>,
    callback: Function,
    on_error: Option<Function>,
}

impl Live {
    fn deliver(&self) {
        let Ok(rows) = to_js(self.query.borrow().rows()) else {
            return;
        };
        if let Err(e) = self.callback.call1(&JsValue::NULL, &rows) {
            web_sys::console::error_2(&"tidesync: a live query callback threw".into(), &e);
        }
    }

    /// Reads the page (again while events came during the read), then
    /// delivers the rows if they changed.
    fn read(live: Rc<Live>, session: Rc<Session>) {
        if live.reading.replace(true) {
            live.again.set(true);
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                live.again.set(false);
                let command = live.query.borrow().read();
                let page = session.call(command).await.and_then(|v| {
                    serde_json::from_value::<crate::engine::QueryPage>(v)
                        .map_err(ApiError::internal)
                });
                if live.closed.get() {
                    break;
                }
                match page {
                    Ok(page) => {
                        // Delivered even when another read follows: the
                        // result kept is always the one delivered.
                        if live.query.borrow_mut().set(page) {
                            live.deliver();
                        }
                    }
                    Err(e) => {
                        if let Some(f) = &live.on_error {
                            let _ = f.call1(&JsValue::NULL, &e.into_js());
                        }
                        live.reading.set(false);
                        return;
                    }
                }
                if !live.again.get() {
                    break;
                }
            }
            live.reading.set(false);
        });
    }
}
