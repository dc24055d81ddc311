//! # tidesync
//!
//! An offline-first sync engine. The core in this crate is free of any
//! platform: it holds the protocol types, the engine (outbox, push, pull,
//! conflicts, reconcile, status) and the `Store` and `Transport` traits it is
//! generic over. The browser adapter (IndexedDB, fetch), the Node addon
//! (SQLCipher) and the reference server are thin adapters around it.
//!
//! See `README.md` for a runnable example and `PROTOCOL.md` for the wire format.

#![warn(missing_docs)]

pub mod crypto;
pub mod digest;
pub mod engine;
pub mod env;
pub mod error_code;
pub mod hlc;
pub mod outbox;
pub mod policy;
pub mod protocol;
pub mod retry;
pub mod status;
pub mod store;
pub mod throttle;
pub mod transport;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error_code::{ErrorBody, ErrorCode};

#[doc(hidden)]
pub mod __private {
    pub use futures::executor::block_on;
}
pub use engine::{Engine, EngineConfig, EngineError, Resolution, SyncReport};
pub use env::Environment;
pub use hlc::{Hlc, HlcClock};
pub use policy::ConflictPolicy;
pub use protocol::*;
pub use status::{Event, Filter, Metrics, Phase, Status};
pub use store::{MemoryStore, Store};
pub use transport::{Transport, TransportError};

/// `Send` on native targets, nothing on wasm (where JS values are not `Send`).
#[cfg(not(target_family = "wasm"))]
pub trait SendOutsideWasm: Send {}
#[cfg(not(target_family = "wasm"))]
impl<T: Send + ?Sized> SendOutsideWasm for T {}
/// `Send` on native targets, nothing on wasm (where JS values are not `Send`).
#[cfg(target_family = "wasm")]
pub trait SendOutsideWasm {}
#[cfg(target_family = "wasm")]
impl<T: ?Sized> SendOutsideWasm for T {}

/// `Sync` on native targets, nothing on wasm.
#[cfg(not(target_family = "wasm"))]
pub trait SyncOutsideWasm: Sync {}
#[cfg(not(target_family = "wasm"))]
impl<T: Sync + ?Sized> SyncOutsideWasm for T {}
/// `Sync` on native targets, nothing on wasm.
#[cfg(target_family = "wasm")]
pub trait SyncOutsideWasm {}
#[cfg(target_family = "wasm")]
impl<T: ?Sized> SyncOutsideWasm for T {}

#[cfg(test)]
mod memory_store_conformance {
    crate::store_conformance_tests!(async { crate::store::MemoryStore::new() });
}
