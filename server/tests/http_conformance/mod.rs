//! Protocol conformance over HTTP (issue 17), written once and run on each
//! backend: by `conformance.rs` on SQLite and by `postgres.rs` on
//! PostgreSQL. Each check takes the store the server runs on.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header;
use serde_json::json;
use serde_json::Value;
use tidesync::{AckResult, ChangesPage, Cursor, PushResponse};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::push_request;
use tidesync_server::{Backend, SyncService, TerminalContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http_common::{client, create_room, relaxed, room, Server};

mod decoding;
mod edge_cases;
mod ids;
mod ledger;
mod pair;
mod query;
mod refusals;
mod whoami;

pub use decoding::*;
pub use edge_cases::*;
pub use ids::*;
pub use ledger::*;
pub use pair::*;
pub use query::*;
pub use refusals::*;
pub use whoami::*;

/// Asserts that the server's `/metrics` text holds every one of `lines`.
async fn assert_metrics(s: &Server, lines: &[&str]) {
    let metrics = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in lines {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

async fn start_on(backend: Backend, config: HttpConfig) -> Server {
    Server::start(SyncService::new(backend), config, "127.0.0.1:0").await
}

/// A refusal's status and JSON body, checked to be `{"code", "message"}`
/// with a JSON content type.
async fn refusal(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let url = resp.url().to_string();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        ctype.starts_with("application/json"),
        "{status} from {url}: content type {ctype:?}"
    );
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} from {url}: body {text:?} is not JSON: {e}"));
    let code = body["code"].as_str().unwrap_or_else(|| panic!("{text}"));
    let message = body["message"].as_str().unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "only code and message: {text}"
    );
    (status, code.to_owned(), message.to_owned())
}

async fn changes(s: &Server, key: &str) -> ChangesPage {
    client()
        .get(s.url("/v1/changes?since=0"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An HTTP/1.1 response read off a raw connection: status, headers, body.
pub struct RawResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

/// Reads one response (its body framed by `Content-Length`) from `stream`,
/// within `within`.
pub async fn read_response(stream: &mut tokio::net::TcpStream, within: Duration) -> RawResponse {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("a Content-Length");
                while buf.len() < end + 4 + len {
                    let n = stream.read(&mut chunk).await.expect("read the body");
                    assert!(n > 0, "connection closed inside the body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("a status line");
                return RawResponse {
                    status,
                    headers: head,
                    body: buf[end + 4..end + 4 + len].to_vec(),
                };
            }
            let n = stream.read(&mut chunk).await.expect("read the head");
            assert!(n > 0, "connection closed before a response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("a response in time")
}

pub fn json_body(r: &RawResponse) -> (String, String) {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", r.headers));
    (
        v["code"].as_str().unwrap().to_owned(),
        v["message"].as_str().unwrap().to_owned(),
    )
}
