//! The service test suite on the in-memory backend (the reference behaviour).

mod common;
mod suite;

const BACKEND: common::Kind = common::Kind::Memory;
