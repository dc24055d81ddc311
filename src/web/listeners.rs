//! The page's callbacks (`subscribe`, `onStatus`) and the delivery of
//! engine events to them.

use crate::client::ClientError as ApiError;
use crate::status::{Event, Filter};
use js_sys::Function;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use wasm_bindgen::prelude::*;

/// What a callback listens to.
#[derive(Debug)]
pub(crate) enum Interest {
    /// Events matching a filter.
    Events(Filter),
    /// Status changes only, given the status itself.
    Status,
}

/// The page's callbacks, by id.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    next: Cell<u32>,
    callbacks: RefCell<Vec<(u32, Interest, Function)>>,
}

impl Listeners {
    /// Adds a callback; the id removes it.
    pub fn add(&self, interest: Interest, callback: Function) -> u32 {
        let id = self.next.get() + 1;
        self.next.set(id);
        self.callbacks.borrow_mut().push((id, interest, callback));
        id
    }

    /// Removes callback `id`.
    pub fn remove(&self, id: u32) {
        self.callbacks.borrow_mut().retain(|(x, ..)| *x != id);
    }

    /// Removes every callback.
    pub fn clear(&self) {
        self.callbacks.borrow_mut().clear();
    }

    /// Calls every callback interested in `event`. A callback that throws
    /// is logged; the others still run.
    pub fn dispatch(&self, event: &Event) {
        let Ok(js) = to_js(event) else { return };
        let status_js = match event {
            Event::Status { status } => to_js(status).ok(),
            _ => None,
        };
        // Clone the callbacks first: a callback may (un)subscribe.
        let targets: Vec<(Function, JsValue)> = self
            .callbacks
            .borrow()
            .iter()
            .filter_map(|(_, interest, f)| match interest {
                Interest::Events(filter) if filter.matches(event) => Some((f.clone(), js.clone())),
                Interest::Status => status_js.clone().map(|s| (f.clone(), s)),
                _ => None,
            })
            .collect();
        for (f, arg) in targets {
            if let Err(e) = f.call1(&JsValue::NULL, &arg) {
                web_sys::console::error_2(&"tidesync: a subscriber threw".into(), &e);
            }
        }
    }
}

/// A value as plain JS (objects, not Maps).
pub(crate) fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, ApiError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(ApiError::internal)
}
