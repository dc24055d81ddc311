//! The page's callbacks (`subscribe`, `onStatus`, and the live queries'
//! own handlers) and the delivery of engine events to them.

use crate::client::ClientError as ApiError;
use crate::status::{Event, Filter};
use js_sys::Function;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// What a callback listens to.
#[derive(Debug)]
pub(crate) enum Interest {
    /// Events matching a filter.
    Events(Filter),
    /// Status changes only, given the status itself.
    Status,
}

/// Who is called: a page's function, or a handler of this module's own
/// (a live query), given the event itself.
#[derive(Clone)]
pub(crate) enum Target {
    Js(Function),
    Native(Rc<dyn Fn(&Event)>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Js(_) => f.write_str("Js"),
            Target::Native(_) => f.write_str("Native"),
        }
    }
}

/// The page's callbacks, by id.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    next: Cell<u32>,
    callbacks: RefCell<Vec<(u32, Interest, Target)>>,
}

impl Listeners {
    /// Adds a callback; the id removes it.
    pub fn add(&self, interest: Interest, callback: Function) -> u32 {
        self.add_target(interest, Target::Js(callback))
    }

    /// Adds a handler of events matching `filter`; the id removes it.
    pub fn add_native(&self, filter: Filter, handler: Rc<dyn Fn(&Event)>) -> u32 {
        self.add_target(Interest::Events(filter), Target::Native(handler))
    }

    fn add_target(&self, interest: Interest, target: Target) -> u32 {
        let id = self.next.get() + 1;
        self.next.set(id);
        self.callbacks.borrow_mut().push((id, interest, target));
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
        // Clone the targets first: a callback may (un)subscribe.
        let targets: Vec<(bool, Target)> = self
            .callbacks
            .borrow()
            .iter()
            .filter_map(|(_, interest, t)| match interest {
                Interest::Events(filter) if filter.matches(event) => Some((false, t.clone())),
                Interest::Status if matches!(event, Event::Status { .. }) => {
                    Some((true, t.clone()))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let js = targets
            .iter()
            .any(|(status, t)| !status && matches!(t, Target::Js(_)))
            .then(|| to_js(event).ok())
            .flatten();
        let status_js = match event {
            Event::Status { status } => to_js(status).ok(),
            _ => None,
        };
        for (status, target) in targets {
            match target {
                Target::Native(handler) => handler(event),
                Target::Js(f) => {
                    let arg = if status { &status_js } else { &js };
                    let Some(arg) = arg else { continue };
                    if let Err(e) = f.call1(&JsValue::NULL, arg) {
                        web_sys::console::error_2(&"tidesync: a subscriber threw".into(), &e);
                    }
                }
            }
        }
    }
}

/// A value as plain JS (objects, not Maps).
pub(crate) fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, ApiError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(ApiError::internal)
}
