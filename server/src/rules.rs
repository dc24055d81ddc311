//! Per-collection rules: the core's validator ([`tidesync::rules`]), which
//! the server runs on every terminal write (after the envelope checks,
//! before storage) and an engine given the same rules file runs before it
//! queues a write. A collection's `access` in the file is its
//! [`ServerPolicy`](crate::ServerPolicy) unless `--append-only` or
//! `--read-only` names it too (they must agree).

pub use tidesync::rules::*;
