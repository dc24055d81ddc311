//! Protocol conformance over HTTP (issue 17), written once and run on each
//! backend: by `conformance.rs` on SQLite and by `postgres.rs` on
//! PostgreSQL. Each check takes the store the server runs on.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header;
use serde_json::Value;
use tidesync::{AckResult, ChangesPage, Cursor, PushResponse};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::push_request;
use tidesync_server::{Backend, SyncService, TerminalContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http_common::{client, create_room, relaxed, room, Server};

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

/// A push body followed by bytes that are not whitespace is refused as a
/// whole (`400 EVENT_INVALID`, "body: …"), and nothing of it is applied;
/// without the check, `{…}xx` was decoded and applied.
pub async fn trailing_bytes_after_the_body_are_400_and_nothing_is_applied(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let body = serde_json::to_vec(&push_request(vec![create_room(
        "b1",
        "t1",
        1,
        "r1",
        room(1),
    )]))
    .unwrap();
    for tail in [&b"xx"[..], b"}", b"{}", b" 0", b"\x00", b"\n[]"] {
        let resp = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .header(header::CONTENT_TYPE, "application/json")
            .body([&body[..], tail].concat())
            .send()
            .await
            .unwrap();
        let (status, code, message) = refusal(resp).await;
        assert_eq!(status, 400, "tail {tail:?}: {message}");
        assert_eq!(code, "EVENT_INVALID");
        assert!(message.starts_with("body: "), "{message}");
    }
    // Reconcile decodes the same way.
    let resp = client()
        .post(s.url("/v1/reconcile"))
        .bearer_auth(&key)
        .body(r#"{"collection":"rooms","buckets":4}xx"#)
        .send()
        .await
        .unwrap();
    let (status, _, message) = refusal(resp).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("body: "), "{message}");

    assert_eq!(s.app.service.metrics().applied, 0);
    assert!(changes(&s, &key).await.changes.is_empty());

    // Trailing whitespace is not trailing bytes; the op was never recorded,
    // so it is applied now (not answered `duplicate`).
    let resp: PushResponse = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .body([&body[..], b" \r\n\t"].concat())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        matches!(resp.acks[0].result, AckResult::Applied { .. }),
        "{resp:?}"
    );
    s.shutdown().await;
}

/// Malformed JSON is reported as `body: …`, a wrong value with the path of
/// its field, and never with serde_path_to_error's `?` placeholders.
pub async fn decoding_errors_start_with_body_or_the_field_path(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let cases: [(&str, &str); 6] = [
        (r#"{"protocol":1,"mutations":[{"op_id":"#, "body: "),
        (r#"{"protocol":1,"mutations":[{]}"#, "body: "),
        (r#"{"protocol":1,"mutations":[1,"#, "mutations[0]: "),
        ("", "body: "),
        (r#"{"protocol":"one","mutations":[]}"#, "protocol: "),
        (
            r#"{"protocol":1,"mutations":[{"kind":"explode"}]}"#,
            "mutations[0].kind: ",
        ),
    ];
    for (body, prefix) in cases {
        let resp = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = refusal(resp).await;
        assert_eq!((status, code.as_str()), (400, "EVENT_INVALID"), "{body}");
        assert!(
            message.starts_with(prefix),
            "{body}: {message:?} should start with {prefix:?}"
        );
        assert!(!message.contains("?:"), "{message}");
    }
    s.shutdown().await;
}

/// 404, 405 and 415 (refusals axum and tower-http make, not a handler)
/// carry the protocol's JSON error body with the documented code and
/// message prefix. They had empty bodies.
pub async fn refusals_outside_the_handlers_have_the_json_error_body(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let c = client();

    for path in ["/nope", "/v1", "/v1/nope", "/v1/mutations/x"] {
        for req in [c.get(s.url(path)), c.post(s.url(path)).body("{}")] {
            let (status, code, message) = refusal(req.send().await.unwrap()).await;
            assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{path}");
            assert!(message.starts_with("path: "), "{message}");
        }
    }

    for (method, path) in [
        (reqwest::Method::GET, "/v1/mutations"),
        (reqwest::Method::PUT, "/v1/changes"),
        (reqwest::Method::POST, "/v1/snapshot"),
        (reqwest::Method::GET, "/v1/reconcile"),
        (reqwest::Method::DELETE, "/health"),
        (reqwest::Method::PATCH, "/metrics"),
    ] {
        let resp = c
            .request(method.clone(), s.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().contains_key(header::ALLOW),
            "{method} {path}: 405 names the allowed methods"
        );
        let (status, code, message) = refusal(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (405, "NOT_FOUND"),
            "{method} {path}"
        );
        assert!(message.starts_with("method: "), "{message}");
    }

    // Request bodies may be gzip, br or identity; anything else is 415.
    for encoding in ["compress", "x-unknown", "gzip, br"] {
        for path in ["/v1/mutations", "/v1/reconcile"] {
            let resp = c
                .post(s.url(path))
                .bearer_auth(&key)
                .header(header::CONTENT_ENCODING, encoding)
                .header(header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let (status, code, message) = refusal(resp).await;
            assert_eq!(
                (status, code.as_str()),
                (415, "EVENT_INVALID"),
                "{encoding} {path}"
            );
            assert!(message.starts_with("content-encoding: "), "{message}");
        }
    }
    // The refusals are counted like any response.
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidesync_http_responses_total{route=\"mutations\",status=\"415\"} 3"),
        "{metrics}"
    );
    assert_eq!(s.app.service.metrics().applied, 0);
    s.shutdown().await;
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

/// A declared `Content-Length` over the limit is refused (`413
/// PAYLOAD_TOO_LARGE`, "body: …") from the headers alone: the answer
/// arrives although not one byte of the body was sent. Before, the server
/// waited for a body it would refuse anyway. A chunked body over the limit
/// is refused with the same JSON body.
pub async fn bodies_over_the_limit_are_413_before_the_body_is_read(backend: Backend) {
    let s = start_on(
        backend,
        HttpConfig {
            max_body_bytes: 2048,
            ..relaxed()
        },
    )
    .await;
    let key = s.key("b1", "t1");
    let addr: SocketAddr = s.addr;

    for path in ["/v1/mutations", "/v1/reconcile"] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(r.status, 413, "{path}: {}", r.headers);
        assert!(r.headers.to_ascii_lowercase().contains("application/json"));
        let (code, message) = json_body(&r);
        assert_eq!(code, "PAYLOAD_TOO_LARGE");
        assert!(message.starts_with("body: "), "{message}");
        assert!(message.contains("100000000"), "{message}");
    }

    // Just at the limit is read and decoded (then refused as JSON, 400).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = vec![b' '; 2048];
    let head = format!(
        "POST /v1/mutations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let r = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(r.status, 400, "{}", r.headers);

    // Chunked, no length declared: cut off at the limit.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/mutations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut bytes = head.into_bytes();
    for _ in 0..3 {
        bytes.extend_from_slice(b"400\r\n"); // 1024 bytes per chunk
        bytes.extend(std::iter::repeat_n(b' ', 1024));
        bytes.extend_from_slice(b"\r\n");
    }
    stream.write_all(&bytes).await.unwrap();
    let r = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(r.status, 413, "{}", r.headers);
    let (code, message) = json_body(&r);
    assert_eq!(code, "PAYLOAD_TOO_LARGE");
    assert!(message.starts_with("body: "), "{message}");

    assert_eq!(s.app.service.metrics().applied, 0);
    s.shutdown().await;
}

/// One terminal name issued on two branches of one tenant, both sending
/// the same op id: each branch applies its own write (the ledger and the
/// in-flight set are keyed by branch too). Before, the second branch's
/// write was answered `duplicate` with the first branch's cursor and
/// silently dropped.
pub async fn the_same_terminal_and_op_id_on_two_branches_are_both_applied(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let k1 = s.key("b1", "till");
    let k2 = s.key("b2", "till");
    let push = |key: &str, m: tidesync::Mutation| {
        let req = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(key)
            .json(&push_request(vec![m]));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let r: PushResponse = resp.json().await.unwrap();
            r.acks[0].result.clone()
        }
    };
    let applied = |version, cursor| AckResult::Applied {
        version,
        cursor: Cursor(cursor),
    };
    // b1 gets a change first, so that its cursors and b2's differ.
    let first = create_room("b1", "till", 100, "r0", room(0));
    assert_eq!(push(&k1, first).await, applied(1, 1));
    let on_b1 = create_room("b1", "till", 1, "r1", room(1));
    let on_b2 = create_room("b2", "till", 1, "r1", room(1));
    assert_eq!(on_b1.op_id, on_b2.op_id);
    assert_eq!(on_b1.checksum, on_b2.checksum);
    assert_eq!(push(&k1, on_b1.clone()).await, applied(1, 2));
    assert_eq!(push(&k2, on_b2.clone()).await, applied(1, 1));

    let page = changes(&s, &k2).await;
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].id, "r1");
    // Retries are duplicates, each with its own branch's result.
    assert_eq!(
        push(&k1, on_b1).await,
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(2)
        }
    );
    assert_eq!(
        push(&k2, on_b2).await,
        AckResult::Duplicate {
            version: 1,
            cursor: Cursor(1)
        }
    );
    assert_eq!(s.app.service.metrics().applied, 3);

    // An op in flight on b1 does not hold up the same op id on b2.
    let busy = create_room("b1", "till", 7, "r7", room(7));
    let guard = s
        .app
        .in_flight
        .claim(&TerminalContext::new("acme", "b1", "till"), [&busy.op_id])
        .unwrap();
    let resp = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&k1)
        .json(&push_request(vec![busy]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let free = create_room("b2", "till", 7, "r7", room(7));
    assert_eq!(push(&k2, free).await, applied(1, 2));
    drop(guard);
    s.shutdown().await;
}

/// Percent-encoded values a hostile or broken client may put in a query.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "%00",
        "a%00b",
        "%FF",
        "%FF%FE%FD",
        "%C0%80",
        "%ED%A0%80",
        "%F4%90%80%80",
        "%EF%BF%BF",
        "%",
        "%zz",
        "%%%",
        "+",
        "%0A%0D",
        "%1B%5B2J",
        "-1",
        "0x10",
        "1e3",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775808",
        "4294967296",
        "rooms",
        "",
        "%22%27%3B--",
        "%5C",
    ]
    .map(str::to_owned)
    .to_vec();
    v.push("a".repeat(16 * 1024));
    v.push("%FF".repeat(4 * 1024));
    v.push("%00".repeat(4 * 1024));
    v.push(format!("r{}", "%E2%82%AC".repeat(2000)));
    v
}

/// No byte sequence in a query parameter yields a 5xx on any endpoint:
/// NUL bytes, invalid UTF-8, overlong encodings, numbers out of range,
/// very long values. Each refusal is the JSON error body. On PostgreSQL
/// `GET /v1/snapshot?after_collection=%00&after_id=%00` was a 500 (a NUL is
/// an error there), and a client retries a 5xx forever.
pub async fn no_query_parameter_yields_a_5xx(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let c = client();
    // Something to page through.
    for i in 0..3 {
        let resp = c
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&push_request(vec![create_room(
                "b1",
                "t1",
                i + 1,
                &format!("r{i}"),
                room(i),
            )]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let values = hostile_values();
    let mut queries: Vec<String> = Vec::new();
    for v in &values {
        for name in [
            "since",
            "limit",
            "after_collection",
            "after_id",
            "x",
            "%00",
            "%FF",
        ] {
            queries.push(format!("{name}={v}"));
        }
        queries.push(format!("after_collection={v}&after_id={v}"));
        queries.push(format!("after_collection=rooms&after_id={v}"));
        queries.push(format!("after_collection={v}&after_id=r1"));
        queries.push(format!("since=0&since={v}"));
        queries.push(v.clone());
    }
    let mut checked = 0;
    for path in [
        "/v1/changes",
        "/v1/snapshot",
        "/health",
        "/metrics",
        "/v1/mutations",
        "/v1/reconcile",
    ] {
        for q in &queries {
            let url = format!("{}?{q}", s.url(path));
            let req = if path.starts_with("/v1/mutations") {
                c.post(&url).json(&push_request(vec![]))
            } else if path.starts_with("/v1/reconcile") {
                c.post(&url)
                    .json(&serde_json::json!({"collection": "rooms", "buckets": 4}))
            } else {
                c.get(&url)
            };
            let resp = req.bearer_auth(&key).send().await.unwrap();
            let status = resp.status().as_u16();
            let short: String = q.chars().take(80).collect();
            assert!(status < 500, "{path}?{short}…: {status}");
            if status >= 400 {
                let (_, code, message) = refusal(resp).await;
                assert!(
                    !message.is_empty() && code != "INTERNAL" && code != "STORAGE_FAILED",
                    "{path}?{short}: {code} {message}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
    // The case of the report, and a NUL after a valid collection: refused as
    // a bad query naming the parameter.
    for q in [
        "after_collection=%00&after_id=%00",
        "after_collection=rooms&after_id=%00",
        "after_collection=rooms&after_id=r%001",
    ] {
        let resp = c
            .get(format!("{}?{q}", s.url("/v1/snapshot")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let (status, code, message) = refusal(resp).await;
        assert_eq!((status, code.as_str()), (400, "EVENT_INVALID"), "{q}");
        assert!(message.starts_with("after_"), "{q}: {message}");
    }
    // An undecodable parameter is named first; a query string wrong as a
    // whole is `query: …`.
    for (path, q, prefix) in [
        ("/v1/changes", "since=abc", "since: "),
        ("/v1/changes", "since=-1", "since: "),
        ("/v1/changes", "limit=%FF", "limit: "),
        ("/v1/changes", "limit=4294967296", "limit: "),
        (
            "/v1/snapshot",
            "limit=x&after_collection=rooms&after_id=r1",
            "limit: ",
        ),
        ("/v1/changes", "since=1&since=2", "query: "),
        (
            "/v1/snapshot",
            "after_collection=%FF&after_id=r1",
            "after_collection: ",
        ),
        (
            "/v1/snapshot",
            "after_collection=rooms&after_id=%0A",
            "after_id: ",
        ),
        ("/v1/snapshot", "after_collection=rooms", "after_id: "),
    ] {
        let resp = c
            .get(format!("{}?{q}", s.url(path)))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let (status, code, message) = refusal(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "EVENT_INVALID"),
            "{path}?{q}"
        );
        assert!(
            message.starts_with(prefix),
            "{path}?{q}: {message:?} should start with {prefix:?}"
        );
    }
    // An after_id longer than any entity id (128 bytes) is refused; 128
    // bytes of a 3-byte character count as 384.
    for (id, status) in [
        ("a".repeat(128), 200),
        ("a".repeat(129), 400),
        ("%E2%82%AC".repeat(42), 200),
        ("%E2%82%AC".repeat(43), 400),
    ] {
        let resp = c
            .get(format!(
                "{}?after_collection=rooms&after_id={id}",
                s.url("/v1/snapshot")
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{id}");
    }
    // Paging still works after all that.
    let resp = c
        .get(s.url("/v1/snapshot?after_collection=rooms&after_id=r0"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: tidesync::SnapshotPage = resp.json().await.unwrap();
    let ids: Vec<_> = page.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    s.shutdown().await;
}

/// Entity ids are limited in bytes of UTF-8 (128), not in characters, and
/// the client's check (`tidesync::validate_mutation` with the default
/// limits, which the engine runs before accepting a write) and the
/// server's verdict agree at the boundary. Collections: 64 bytes.
pub async fn id_limits_are_bytes_and_client_and_server_agree(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let limits = tidesync::Limits::default();
    assert_eq!((limits.max_id_len, limits.max_collection_len), (128, 64));
    let ctx = TerminalContext::new("acme", "b1", "t1");
    let cases: Vec<(String, String, bool)> = vec![
        ("rooms".into(), "a".repeat(128), true),
        ("rooms".into(), "a".repeat(129), false),
        ("rooms".into(), "€".repeat(42), true),  // 126 bytes
        ("rooms".into(), "€".repeat(43), false), // 43 characters, 129 bytes
        ("rooms".into(), format!("{}é", "a".repeat(126)), true), // 128 bytes
        ("rooms".into(), format!("{}é", "a".repeat(127)), false), // 129 bytes
        ("rooms".into(), "🛎".repeat(32), true),  // 128 bytes
        ("rooms".into(), "a\u{85}b".into(), false), // a C1 control character
        (format!("r{}", "a".repeat(63)), "x".into(), true),
        (format!("r{}", "a".repeat(64)), "x".into(), false),
    ];
    for (n, (collection, id, ok)) in cases.into_iter().enumerate() {
        let m = tidesync_server::testing::mutation(
            &ctx,
            tidesync_server::testing::op_id(n as u64 + 1),
            tidesync::MutationKind::Create,
            &collection,
            &id,
            Some(room(n as u64)),
            0,
        );
        let client_says = tidesync::validate_mutation(&m, &limits);
        assert_eq!(client_says.is_ok(), ok, "client on {collection}/{id}");
        let resp: PushResponse = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&push_request(vec![m]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match (&resp.acks[0].result, ok) {
            (AckResult::Applied { .. }, true) => {}
            (AckResult::Rejected { code, message }, false) => {
                assert_eq!(*code, tidesync::ErrorCode::EventInvalid);
                let field = if id == "x" {
                    "collection: "
                } else {
                    "entity_id: "
                };
                assert!(message.starts_with(field), "{message}");
                assert_eq!(
                    Some(message.as_str()),
                    client_says.as_ref().err().map(|e| e.message.as_str()),
                    "the same words on both sides"
                );
            }
            (other, _) => panic!("{collection}/{id}: server {other:?}, client {client_says:?}"),
        }
    }
    s.shutdown().await;
}
