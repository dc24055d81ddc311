//! The HTTP API over loopback against a real server on SQLite: every gate
//! rule, replay semantics, compression, health and metrics.

mod http_common;

use std::io::Write;
use std::time::Duration;

use http_common::*;
use reqwest::header;
use serde_json::{json, Value};
use tidesync::{AckResult, ChangesPage, PushResponse};
use tidesync_server::auth::CredentialStore;
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::{issue_key, push_request};
use tidesync_server::TerminalContext;

/// One request of each `/v1` endpoint, with `key` (if any).
async fn every_endpoint(s: &Server, key: Option<&str>) -> Vec<reqwest::Response> {
    let c = client();
    let with_key = |r: reqwest::RequestBuilder| match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    };
    let reconcile = json!({"collection": "rooms", "buckets": 4});
    vec![
        with_key(c.post(s.url("/v1/mutations")).json(&push_request(vec![])))
            .send()
            .await
            .unwrap(),
        with_key(c.get(s.url("/v1/changes?since=0")))
            .send()
            .await
            .unwrap(),
        with_key(c.get(s.url("/v1/snapshot"))).send().await.unwrap(),
        with_key(c.post(s.url("/v1/reconcile")).json(&reconcile))
            .send()
            .await
            .unwrap(),
        with_key(c.get(s.url("/v1/whoami"))).send().await.unwrap(),
    ]
}

async fn assert_all_401(s: &Server, key: Option<&str>, what: &str) {
    for resp in every_endpoint(s, key).await {
        let url = resp.url().path().to_owned();
        assert_eq!(resp.status(), 401, "{what} on {url}");
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer",
            "{what} on {url}"
        );
        assert_eq!(code_of(resp).await, "SYNC_UNAUTHORIZED", "{what} on {url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_invalid_expired_and_revoked_keys_are_401_on_every_endpoint() {
    // Four refused keys on each of five endpoints is 20 failed
    // authentications from this address, the default burst: room for
    // the valid key after them.
    let s = start(HttpConfig {
        auth_failure_burst: 100.0,
        ..relaxed()
    })
    .await;
    assert_all_401(&s, None, "no key").await;
    assert_all_401(&s, Some("not-a-key"), "garbage").await;
    let good = s.key("b1", "t1");
    // Same shape, one character changed: not a key this server issued.
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_all_401(&s, Some(&forged), "forged").await;

    let expired = issue_key(
        s.app.service.store(),
        TerminalContext::new("acme", "b1", "t2"),
        Some(tidesync_server::now_ms() - 1),
    );
    assert_all_401(&s, Some(&expired), "expired").await;

    // A valid key works on every endpoint ...
    for resp in every_endpoint(&s, Some(&good)).await {
        assert_eq!(resp.status(), 200, "{}", resp.url());
    }
    // ... until it is revoked.
    let key_id = good.split('_').nth(1).unwrap();
    assert!(s
        .app
        .service
        .store()
        .revoke_credential(key_id, tidesync_server::now_ms())
        .unwrap());
    assert_all_401(&s, Some(&good), "revoked").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_terminal_is_403_at_first_contact() {
    let s = start(relaxed()).await;
    let k1 = s.key("b1", "t1");
    let c = client();
    // A terminal that says it is t2 but holds t1's key: refused on every
    // endpoint before anything is applied, with a message naming both.
    let resp = c
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k1)
        .header("x-tidesync-terminal", "t2")
        .json(&push_request(vec![create_room(
            "b1",
            "t2",
            1,
            "r1",
            room(1),
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "SYNC_FORBIDDEN");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("\"t1\"") && msg.contains("\"t2\""), "{msg}");
    for path in ["/v1/changes", "/v1/snapshot"] {
        let resp = c
            .get(s.url(path))
            .bearer_auth(&k1)
            .header("x-tidesync-terminal", "t2")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(code_of(resp).await, "SYNC_FORBIDDEN");
    }
    // Nothing was applied; the right terminal id passes.
    let resp = c
        .get(s.url("/v1/changes"))
        .bearer_auth(&k1)
        .header("x-tidesync-terminal", "t1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(0), "{page}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_branch_is_403_and_never_visible() {
    let s = start(relaxed()).await;
    let k1 = s.key("b1", "t1");
    let k2 = s.key("b2", "t2");
    let c = client();
    // Asking for another branch than the credential's: 403 on every endpoint.
    for path in ["/v1/changes", "/v1/snapshot"] {
        let resp = c
            .get(s.url(path))
            .bearer_auth(&k1)
            .header("x-tidesync-branch", "b2")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(code_of(resp).await, "SYNC_FORBIDDEN");
    }
    // A mutation addressed to another branch is refused (per mutation).
    let resp: PushResponse = c
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k1)
        .json(&push_request(vec![create_room(
            "b2",
            "t1",
            1,
            "r1",
            room(1),
        )]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(matches!(
        &resp.acks[0].result,
        AckResult::Rejected { code, .. } if *code == tidesync::ErrorCode::SyncForbidden
    ));
    // And what b2 writes, b1 never reads.
    let resp = c
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k2)
        .json(&push_request(vec![create_room(
            "b2",
            "t2",
            2,
            "r2",
            room(2),
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: ChangesPage = c
        .get(s.url("/v1/changes?since=0"))
        .bearer_auth(&k1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page.changes.is_empty());
    // The envelope's terminal must be the credential's.
    let resp: PushResponse = c
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k1)
        .json(&push_request(vec![create_room(
            "b1",
            "t9",
            3,
            "r3",
            room(3),
        )]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(matches!(
        &resp.acks[0].result,
        AckResult::Rejected { code, message } if *code == tidesync::ErrorCode::EventInvalid
            && message.starts_with("terminal_id")
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_payload_too_large() {
    let s = start(HttpConfig {
        max_body_bytes: 2048,
        ..relaxed()
    })
    .await;
    let key = s.key("b1", "t1");
    let big: Vec<_> = (0..20)
        .map(|i| create_room("b1", "t1", i, &format!("r{i}"), room(i)))
        .collect();
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&push_request(big))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(code_of(resp).await, "PAYLOAD_TOO_LARGE");

    // A small gzip body that inflates past the limit is refused too.
    let mut padded = serde_json::to_vec(&push_request(vec![])).unwrap();
    padded.pop(); // the closing brace
    padded.extend_from_slice(b",\"pad\":\"");
    padded.extend(std::iter::repeat_n(b'x', 100_000));
    padded.extend_from_slice(b"\"}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&padded).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 2048);
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .header(header::CONTENT_ENCODING, "gzip")
        .header(header::CONTENT_TYPE, "application/json")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(code_of(resp).await, "PAYLOAD_TOO_LARGE");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_request_bodies_are_accepted() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let body = serde_json::to_vec(&push_request(vec![create_room(
        "b1",
        "t1",
        1,
        "r1",
        room(1),
    )]))
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r: PushResponse = resp.json().await.unwrap();
    assert!(matches!(r.acks[0].result, AckResult::Applied { .. }));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_429_with_retry_after_per_terminal() {
    let s = start(HttpConfig {
        rate_per_sec: 0.5,
        burst: 2.0,
        ..HttpConfig::default()
    })
    .await;
    let k1 = s.key("b1", "t1");
    let k2 = s.key("b1", "t2");
    let get = |k: String| {
        let url = s.url("/v1/changes?since=0");
        async move { client().get(url).bearer_auth(k).send().await.unwrap() }
    };
    assert_eq!(get(k1.clone()).await.status(), 200);
    assert_eq!(get(k1.clone()).await.status(), 200);
    let limited = get(k1.clone()).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(code_of(limited).await, "SYNC_RATE_LIMITED");
    // Another terminal has its own bucket.
    assert_eq!(get(k2).await.status(), 200);
    let metrics = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidesync_rate_limited_total 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_op_in_flight_is_409_event_in_flight() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let m = create_room("b1", "t1", 1, "r1", room(1));
    let ctx = TerminalContext::new("acme", "b1", "t1");
    // Another request holds op 1 (as a concurrent push would).
    let guard = s.app.in_flight.claim(&ctx, [&m.op_id]).unwrap();
    let send = || {
        client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&push_request(vec![
                create_room("b1", "t1", 2, "r2", room(2)),
                m.clone(),
            ]))
            .send()
    };
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "EVENT_IN_FLIGHT");
    assert!(body["message"].as_str().unwrap().starts_with("op_id"));
    // Nothing of the refused request was applied, and nothing stays claimed.
    assert_eq!(s.app.service.metrics().applied, 0);
    assert_eq!(s.app.in_flight.len(), 1);
    drop(guard);
    let resp: PushResponse = send().await.unwrap().json().await.unwrap();
    assert!(resp
        .acks
        .iter()
        .all(|a| matches!(a.result, AckResult::Applied { .. })));
    assert!(s.app.in_flight.is_empty());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_one_op_apply_it_once() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let body = push_request(vec![create_room("b1", "t1", 1, "r1", room(1))]);
    let sends = (0..8).map(|_| {
        client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    });
    let results = futures::future::join_all(sends).await;
    let mut ok = 0;
    for r in results {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            409 => assert_eq!(code_of(r).await, "EVENT_IN_FLIGHT"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1);
    assert_eq!(s.app.service.metrics().applied, 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_400_event_invalid_naming_the_field() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let mut m = serde_json::to_value(create_room("b1", "t1", 1, "r1", room(1))).unwrap();
    m["kind"] = json!("explode");
    let cases = [
        (
            json!({"protocol": 1, "mutations": [m]}),
            "mutations[0].kind",
        ),
        (json!({"protocol": 1}), "body"),
        (json!({"protocol": "one", "mutations": []}), "protocol"),
        (json!({"protocol": 2, "mutations": []}), "protocol"),
    ];
    for (body, field) in cases {
        let resp = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["code"], "EVENT_INVALID");
        let msg = b["message"].as_str().unwrap();
        assert!(msg.starts_with(field), "{msg:?} should name {field}");
    }
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    for (path, field) in [
        ("/v1/changes?since=abc", "since"),
        ("/v1/changes?limit=-1", "limit"),
        ("/v1/snapshot?after_collection=rooms", "after_id"),
        ("/v1/snapshot?after_id=x", "after_collection"),
    ] {
        let resp = client()
            .get(s.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["code"], "EVENT_INVALID");
        assert!(b["message"].as_str().unwrap().contains(field), "{b}");
    }
    // A well-formed request with a bad envelope: a per-mutation rejection naming the field.
    let mut bad = create_room("b1", "t1", 5, "r5", room(5));
    bad.checksum = "0".repeat(64);
    let r: PushResponse = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&push_request(vec![bad]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(matches!(&r.acks[0].result,
        AckResult::Rejected { code, message } if *code == tidesync::ErrorCode::EventInvalid
            && message.starts_with("checksum")));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_gets_the_stored_result_and_a_changed_payload_is_event_duplicate() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let push = |body| {
        let req = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let r: PushResponse = req.send().await.unwrap().json().await.unwrap();
            r.acks[0].result.clone()
        }
    };
    let m = create_room("b1", "t1", 1, "r1", room(1));
    let first = push(push_request(vec![m.clone()])).await;
    let AckResult::Applied { version, cursor } = first else {
        panic!("{first:?}")
    };
    let again = push(push_request(vec![m.clone()])).await;
    assert_eq!(again, AckResult::Duplicate { version, cursor });
    let changed = create_room("b1", "t1", 1, "r1", json!({"number": 1, "status": "clean"}));
    let refused = push(push_request(vec![changed])).await;
    assert!(matches!(refused,
        AckResult::Rejected { code, .. } if code == tidesync::ErrorCode::EventDuplicate));
    assert_eq!(s.app.service.metrics().applied, 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_compressed_when_asked() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let body = push_request(
        (0..50)
            .map(|i| create_room("b1", "t1", i, &format!("r{i}"), room(i)))
            .collect(),
    );
    client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    // A client that does not decode by itself, to see the raw encoding.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    for enc in ["gzip", "br"] {
        let resp = raw
            .get(s.url("/v1/changes?since=0"))
            .bearer_auth(&key)
            .header(header::ACCEPT_ENCODING, enc)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], enc);
    }
    let plain = raw
        .get(s.url("/v1/changes?since=0"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    let page: ChangesPage = plain.json().await.unwrap();
    assert_eq!(page.changes.len(), 50);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let h: Value = client()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h, json!({"status": "ok", "backend": "sqlite"}));
    client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&push_request(vec![create_room(
            "b1",
            "t1",
            1,
            "r1",
            room(1),
        )]))
        .send()
        .await
        .unwrap();
    client().get(s.url("/v1/changes")).send().await.unwrap(); // 401
    let m = client().get(s.url("/metrics")).send().await.unwrap();
    assert!(m.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = m.text().await.unwrap();
    for line in [
        "tidesync_mutations_total{result=\"applied\"} 1",
        "tidesync_mutations_received_total 1",
        "tidesync_auth_failures_total{reason=\"missing\"} 1",
        "tidesync_http_responses_total{route=\"mutations\",status=\"200\"} 1",
        "tidesync_http_request_duration_seconds_count{route=\"mutations\"} 1",
        "tidesync_http_request_duration_seconds_bucket{route=\"mutations\",le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let nf = client().get(s.url("/nope")).send().await.unwrap();
    assert_eq!(nf.status(), 404);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batch_in_progress() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let body = push_request(
        (0..400)
            .map(|i| create_room("b1", "t1", i, &format!("r{i}"), room(i)))
            .collect(),
    );
    let app = std::sync::Arc::clone(&s.app);
    let req = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&body)
        .send();
    let pending = tokio::spawn(req);
    // Wait until the server has the batch, then ask it to stop.
    while app
        .stats
        .mutations_received
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.shutdown().await;
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let r: PushResponse = resp.json().await.unwrap();
    assert_eq!(r.acks.len(), 400);
    assert_eq!(app.service.metrics().applied, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_concurrency_is_bounded_by_the_worker_count() {
    let s = start(HttpConfig {
        storage_workers: 2,
        ..relaxed()
    })
    .await;
    let keys: Vec<String> = (0..8).map(|t| s.key("b1", &format!("t{t}"))).collect();
    let sends = keys.iter().enumerate().map(|(t, key)| {
        let terminal = format!("t{t}");
        let body = push_request(
            (0..40)
                .map(|i| {
                    let n = t as u64 * 1000 + i;
                    create_room("b1", &terminal, n, &format!("r{n}"), room(n))
                })
                .collect(),
        );
        client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(key)
            .json(&body)
            .send()
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let max = s
        .app
        .stats
        .storage_busy_max
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&max),
        "at most 2 storage calls at once, saw {max}"
    );
    assert_eq!(s.app.service.metrics().applied, 320);
    s.shutdown().await;
}
