//! The live channel (`GET /v1/events`, issue 17 item 6) on SQLite, over
//! loopback: pokes per branch, the gate, the subscriber caps, heartbeats
//! under the idle timeout, the age limit, dead clients and shutdown.

mod http_common;
mod live_common;

use std::time::{Duration, Instant};

use http_common::{client, code_of, relaxed, start};
use live_common::{push_room, ready, subscribe, subscribe_raw};
use tidesync::client::live::ChannelEvent;
use tidesync::transport::http::EVENTS_PATH;
use tidesync_server::http::HttpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_pokes_its_branch_at_once_with_the_cursor_and_no_other_branch() {
    let s = start(relaxed()).await;
    let (writer, reader, other) = (s.key("b1", "t1"), s.key("b1", "t2"), s.key("b2", "t3"));
    let mut mine = subscribe(&s, &reader, "b1", "t2").await;
    let mut theirs = subscribe(&s, &other, "b2", "t3").await;
    assert_eq!(ready(&mut mine).await, 0);
    assert_eq!(ready(&mut theirs).await, 0);
    for n in 1..=3u64 {
        let started = Instant::now();
        let cursor = push_room(&s, &writer, "b1", "t1", n, &format!("r{n}")).await;
        let poke = mine.next_poke(Duration::from_secs(1)).await;
        assert_eq!(poke, Some(ChannelEvent::Poke { cursor }));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // The other branch heard nothing but heartbeats.
    let heard = theirs.events_for(Duration::from_millis(300)).await;
    assert!(
        heard.iter().all(|e| *e == ChannelEvent::Ping),
        "another branch was poked: {heard:?}"
    );
    // A stream opened now starts at the head.
    let mut late = subscribe(&s, &reader, "b1", "t2").await;
    assert_eq!(ready(&mut late).await, 3);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_applies_no_key_another_branch_and_another_terminal_are_refused() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let none = client().get(s.url(EVENTS_PATH)).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(code_of(none).await, "SYNC_UNAUTHORIZED");
    let branch = subscribe_raw(&s, &key, "b2", "t1").await;
    assert_eq!(branch.status(), 403);
    assert_eq!(code_of(branch).await, "SYNC_FORBIDDEN");
    let terminal = subscribe_raw(&s, &key, "b1", "t9").await;
    assert_eq!(terminal.status(), 403);
    assert_eq!(code_of(terminal).await, "SYNC_FORBIDDEN");
    assert_eq!(s.app.pokes.subscribers(), 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_capped_per_terminal_and_per_server() {
    let s = start(HttpConfig {
        events_max_subscribers: 2,
        events_per_terminal: 1,
        ..relaxed()
    })
    .await;
    let (k1, k2, k3) = (s.key("b1", "t1"), s.key("b1", "t2"), s.key("b1", "t3"));
    let mut first = subscribe(&s, &k1, "b1", "t1").await;
    ready(&mut first).await;
    let again = subscribe_raw(&s, &k1, "b1", "t1").await;
    assert_eq!(again.status(), 429);
    assert!(again.headers().contains_key("retry-after"));
    assert_eq!(code_of(again).await, "SYNC_RATE_LIMITED");
    let mut second = subscribe(&s, &k2, "b1", "t2").await;
    ready(&mut second).await;
    let metrics = client().get(s.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("\ntidesync_events_subscribers 2\n"),
        "{metrics}"
    );
    let full = subscribe_raw(&s, &k3, "b1", "t3").await;
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let body: serde_json::Value = full.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().starts_with("events: "),
        "{body}"
    );
    // A closed stream frees its place.
    drop(first);
    let started = Instant::now();
    while s.app.pokes.subscribers() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut third = subscribe(&s, &k3, "b1", "t3").await;
    ready(&mut third).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_stream_past_the_idle_timeout_and_the_age_limit_ends_it() {
    let s = start(HttpConfig {
        idle_timeout: Duration::from_secs(1),
        events_heartbeat: Duration::from_secs(15), // clamped to 500 ms
        events_max_age: Duration::from_millis(3_000),
        ..relaxed()
    })
    .await;
    let key = s.key("b1", "t1");
    let mut stream = subscribe(&s, &key, "b1", "t1").await;
    match stream.next(Duration::from_secs(2)).await {
        Some(ChannelEvent::Ready { heartbeat_ms, .. }) => assert_eq!(heartbeat_ms, 500),
        other => panic!("{other:?}"),
    }
    let heard = stream.events_for(Duration::from_millis(2_200)).await;
    let pings = heard.iter().filter(|e| **e == ChannelEvent::Ping).count();
    assert!(pings >= 3, "heartbeats: {heard:?}");
    // Past the age limit the server ends the stream.
    let started = Instant::now();
    assert_eq!(stream.next_poke(Duration::from_secs(3)).await, None);
    assert!(started.elapsed() < Duration::from_secs(3));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_went_away_is_dropped_and_shutdown_ends_open_streams() {
    let s = start(HttpConfig {
        // Long heartbeats: a client that closes its connection is noticed
        // at once (the connection's end), not at the next heartbeat.
        events_heartbeat: Duration::from_secs(15),
        ..relaxed()
    })
    .await;
    let key = s.key("b1", "t1");
    let mut gone = subscribe(&s, &key, "b1", "t1").await;
    ready(&mut gone).await;
    assert_eq!(s.app.pokes.subscribers(), 1);
    drop(gone);
    let started = Instant::now();
    while s.app.pokes.subscribers() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a dead subscriber was kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut open = subscribe(&s, &key, "b1", "t1").await;
    ready(&mut open).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("shutdown waited for an open stream");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        open.next(Duration::from_secs(2)).await,
        None,
        "the stream ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_count_against_the_connection_cap_but_cannot_fill_it() {
    let s = start(HttpConfig {
        max_connections: 6,
        events_max_subscribers: 3,
        events_per_terminal: 0,
        ..relaxed()
    })
    .await;
    let key = s.key("b1", "t1");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut st = subscribe(&s, &key, "b1", "t1").await;
        ready(&mut st).await;
        open.push(st);
    }
    assert_eq!(
        s.app
            .stats
            .connections_open
            .load(std::sync::atomic::Ordering::SeqCst),
        3,
        "each stream holds a connection"
    );
    // A fresh client (a new connection): the stream is refused, the
    // connection is not kept, and requests still get through.
    let other = reqwest::Client::new();
    let more = other
        .get(s.url(EVENTS_PATH))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(more.status(), 503);
    let started = Instant::now();
    let health = reqwest::Client::new()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(open);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_never_compressed() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let resp = raw
        .get(s.url(EVENTS_PATH))
        .bearer_auth(&key)
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-encoding").is_none(),
        "{:?}",
        resp.headers()
    );
    let mut resp = resp;
    let first = tokio::time::timeout(Duration::from_secs(2), resp.chunk())
        .await
        .expect("the ready event is sent at once, not buffered")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"event: ready\n"), "{first:?}");
    s.shutdown().await;
}
