//! # tidesync-http-client
//!
//! The native HTTP transport of tidesync: the core's
//! [`Transport`](tidesync::Transport) over [PROTOCOL.md](../PROTOCOL.md)'s
//! HTTP binding, on reqwest (no TLS stack; put the server behind a TLS
//! terminator, or add a reqwest TLS feature in the application). The Node
//! addon, the examples and the simulation over HTTP use it; it depends on
//! the core only, so a client never pulls in the server's axum and
//! PostgreSQL.
//!
//! What a status means is written once, in the core
//! ([`tidesync::transport::http`]): this crate only moves bytes.
//!
//! ```no_run
//! # async fn demo() {
//! use tidesync_http_client::HttpTransport;
//! let transport = HttpTransport::new("http://127.0.0.1:8080", "ts_key", "lisbon");
//! assert!(transport.probe().await, "the server answers /health");
//! # }
//! ```

mod transport;

pub use transport::{host_has_route, HttpTransport, KeyAnswer, KeyCallback};
