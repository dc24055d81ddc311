//! The browser adapter (compiled for wasm32 only): the IndexedDB store, the
//! fetch transport, the browser environment, multi-tab coordination and the
//! wasm-bindgen API that the npm package in `pkg/` exposes.
//!
//! - `api`: the JS surface (`TideSync`), argument conversion only;
//! - the commands and the scheduler are the core's (`crate::client`);
//! - `session`: leading or following, the engine's lifetime in this tab;
//! - `tabs`: the Web Lock, the tab channel and its messages;
//! - `listeners`: the page's callbacks; `navigator`: network and DOM helpers;
//! - `sync_loop`: the browser's timer and probe for the core's scheduler;
//! - `store`, `schema`, `keys`, `idb`: the encrypted IndexedDB store;
//! - `transport`, `env`: fetch and the clock.

pub mod api;
mod bench;
pub mod env;
mod idb;
mod json;
pub mod keys;
mod listeners;
mod live_query;
mod navigator;
pub mod schema;
mod scorer;
mod session;
pub mod store;
mod sync_loop;
pub mod tabs;
pub mod transport;

pub use env::BrowserEnv;
pub use keys::KeySource;
pub use store::{IdbStore, OpenError};
pub use transport::FetchTransport;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_engines;
#[cfg(test)]
mod tests_integrity;
#[cfg(test)]
mod tests_pages;
