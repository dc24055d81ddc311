//! The live channel (`GET /v1/events`) against real servers on loopback:
//! helpers shared by the SQLite tests (`tests/live.rs`) and the PostgreSQL
//! one (two nodes on one database, `tests/postgres.rs`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tidesync::client::live::{ChannelEvent, SseParser};
use tidesync::transport::http::{BRANCH_HEADER, EVENTS_PATH, PUSH_PATH, TERMINAL_HEADER};

use crate::http_common::{client, create_room, room, Server};
use tidesync_server::testing::push_request;

/// An open stream and its parser.
pub struct Stream {
    pub resp: reqwest::Response,
    parser: SseParser,
    queued: Vec<ChannelEvent>,
}

/// `GET /v1/events` with `key`, as terminal `terminal` of `branch`.
pub async fn subscribe_raw(
    s: &Server,
    key: &str,
    branch: &str,
    terminal: &str,
) -> reqwest::Response {
    client()
        .get(s.url(EVENTS_PATH))
        .bearer_auth(key)
        .header(BRANCH_HEADER, branch)
        .header(TERMINAL_HEADER, terminal)
        .send()
        .await
        .unwrap()
}

/// A stream that must open (200, `text/event-stream`).
pub async fn subscribe(s: &Server, key: &str, branch: &str, terminal: &str) -> Stream {
    let resp = subscribe_raw(s, key, branch, terminal).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Stream {
        resp,
        parser: SseParser::default(),
        queued: Vec::new(),
    }
}

impl Stream {
    /// The next event within `max`; `None` if the stream ended, panics on
    /// a timeout.
    pub async fn next(&mut self, max: Duration) -> Option<ChannelEvent> {
        let started = Instant::now();
        loop {
            if !self.queued.is_empty() {
                return Some(self.queued.remove(0));
            }
            let left = max
                .checked_sub(started.elapsed())
                .unwrap_or_else(|| panic!("no event within {max:?}"));
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Err(_) => panic!("no event within {max:?}"),
                Ok(Ok(Some(bytes))) => self.queued.extend(self.parser.push(&bytes).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
            }
        }
    }

    /// The next event other than a heartbeat, within `max`.
    pub async fn next_poke(&mut self, max: Duration) -> Option<ChannelEvent> {
        let started = Instant::now();
        loop {
            let left = max.saturating_sub(started.elapsed());
            match self.next(left).await? {
                ChannelEvent::Ping => continue,
                e => return Some(e),
            }
        }
    }

    /// Every event until `for_` has passed (the stream staying open).
    pub async fn events_for(&mut self, for_: Duration) -> Vec<ChannelEvent> {
        let until = Instant::now() + for_;
        let mut out = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Err(_) => return out,
                Ok(Ok(Some(bytes))) => out.extend(self.parser.push(&bytes).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => panic!("the stream ended; got {out:?}"),
            }
        }
    }
}

/// Pushes one create of room `id` as `terminal` of `branch`; returns the
/// cursor it was applied at.
pub async fn push_room(
    s: &Server,
    key: &str,
    branch: &str,
    terminal: &str,
    n: u64,
    id: &str,
) -> u64 {
    let req = push_request(vec![create_room(branch, terminal, n, id, room(n))]);
    let resp = client()
        .post(s.url(PUSH_PATH))
        .bearer_auth(key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["acks"][0]["status"], "applied", "{v}");
    v["acks"][0]["cursor"].as_u64().unwrap()
}

/// The `ready` event a stream opens with: its cursor.
pub async fn ready(stream: &mut Stream) -> u64 {
    match stream.next(Duration::from_secs(5)).await {
        Some(ChannelEvent::Ready { cursor, .. }) => cursor,
        other => panic!("expected ready, got {other:?}"),
    }
}
