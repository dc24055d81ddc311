//! The browser adapter (compiled for wasm32 only): the IndexedDB store, the
//! fetch transport, the browser environment, multi-tab coordination and the
//! wasm-bindgen API that the npm package in `pkg/` exposes.

pub mod api;
mod bench;
pub mod env;
mod idb;
pub mod keys;
pub mod store;
pub mod tabs;
pub mod transport;

pub use env::BrowserEnv;
pub use keys::KeySource;
pub use store::{IdbStore, OpenError};
pub use transport::FetchTransport;

#[cfg(test)]
mod tests;
