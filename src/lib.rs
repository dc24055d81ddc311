//! # tidesync
//!
//! An offline-first sync engine. The core in this crate is free of any
//! platform: it holds the protocol types, the engine (outbox, push, pull,
//! conflicts, reconcile, status) and the `Store` and `Transport` traits it is
//! generic over. The browser adapter (IndexedDB, fetch), the Node addon
//! (SQLCipher) and the reference server are thin adapters around it.
//!
//! See `README.md` for the design and `PROTOCOL.md` for the wire format.
//!
//! ## Example: working offline
//!
//! A terminal with no route to its server keeps working: every write lands in
//! the local store together with its outbox entry, and waits there.
//!
//! ```
//! use futures::executor::block_on;
//! use serde_json::json;
//! use tidesync::{env::SimEnv, *};
//!
//! /// A transport for a cable that was pulled out.
//! struct Unplugged;
//! #[async_trait::async_trait]
//! impl Transport for Unplugged {
//!     async fn push(&self, _: PushRequest) -> Result<PushResponse, TransportError> {
//!         Err(TransportError::Unreachable("no route".into()))
//!     }
//!     async fn changes(&self, _: ChangesRequest) -> Result<ChangesPage, TransportError> {
//!         Err(TransportError::Unreachable("no route".into()))
//!     }
//!     async fn snapshot(&self, _: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
//!         Err(TransportError::Unreachable("no route".into()))
//!     }
//!     async fn reconcile(&self, _: ReconcileRequest) -> Result<ReconcileResponse, TransportError> {
//!         Err(TransportError::Unreachable("no route".into()))
//!     }
//! }
//!
//! # fn main() -> Result<(), EngineError> { block_on(async {
//! let config = EngineConfig::new("tablet-7", "hk-lead", "lobby")
//!     .with_policy("rooms", ConflictPolicy::MergeThreeWay);
//! let store = MemoryStore::new();
//! let engine = Engine::open(store.clone(), Unplugged, SimEnv::new(0, 1), config.clone()).await?;
//! let fields = |v: serde_json::Value| v.as_object().cloned().unwrap();
//! engine.create("rooms", Some("101"), fields(json!({"status": "dirty"}))).await?;
//! engine.patch("rooms", "101", fields(json!({"status": "clean"}))).await?;
//! let report = engine.sync_now().await?;
//! assert_eq!(report.error, Some(ErrorCode::SyncOffline));
//! assert_eq!(engine.status().await.phase, Phase::Offline);
//!
//! // A restart loses nothing: the queue and the local view are in the store.
//! drop(engine);
//! let engine = Engine::open(store, Unplugged, SimEnv::new(0, 2), config).await?;
//! assert_eq!(engine.status().await.pending, 2);
//! assert_eq!(engine.get("rooms", "101").await?.unwrap().fields["status"], "clean");
//! # Ok(()) }) }
//! ```

#![warn(missing_docs)]

pub mod canonical;
pub mod client;
pub mod crypto;
pub mod digest;
pub mod engine;
pub mod env;
pub mod error_code;
pub mod hash;
pub mod hlc;
pub mod migrate;
pub mod outbox;
pub mod policy;
pub mod protocol;
pub mod retry;
pub mod rules;
pub mod scoring;
pub mod status;
pub mod store;
pub mod throttle;
pub mod transport;
#[cfg(all(target_arch = "wasm32", feature = "web"))]
pub mod web;

pub use error_code::{ErrorBody, ErrorCode};

#[doc(hidden)]
pub mod __private {
    pub use futures::executor::block_on;
}
pub use engine::{Engine, EngineConfig, EngineError, Resolution, Subscription, SyncReport};
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
