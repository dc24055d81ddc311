//! The service test suite, shared by every backend (`tests/memory.rs`,
//! `tests/sqlite.rs`, `tests/postgres.rs`): each of those test binaries sets
//! `crate::BACKEND` and includes these modules.

mod concurrency;
mod feed;
mod invariants;
mod push;
mod reconcile;
