//! The browser adapter (compiled for wasm32 only): the IndexedDB store, the
//! fetch transport, the browser environment, multi-tab coordination and the
//! wasm-bindgen API that the npm package in `pkg/` exposes.

mod idb;
pub mod keys;
pub mod store;

pub use keys::KeySource;
pub use store::{IdbStore, OpenError};

#[cfg(test)]
mod tests;
