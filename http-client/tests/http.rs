//! The transport over a real loopback socket: a tiny HTTP/1.1 responder
//! that records each request and answers what the test scripted. (The
//! transport against the reference server itself runs in the Node addon's
//! tests, `node/test/`.)

use std::sync::{Arc, Mutex};
use tidesync::transport::http::BRANCH_HEADER;
use tidesync::*;
use tidesync_http_client::HttpTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

/// Answers each connection's request with the next scripted response
/// (`status line`, extra headers, body).
async fn responder(
    script: Vec<(&'static str, &'static str, String)>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for (status, headers, body) in script {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let (head, mut rest) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&buf[..i]).to_string(),
                        buf[i + 4..].to_vec(),
                    );
                }
            };
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while rest.len() < len {
                let n = sock.read(&mut chunk).await.unwrap();
                rest.extend_from_slice(&chunk[..n]);
            }
            log.lock().unwrap().push(Seen {
                head,
                body: String::from_utf8_lossy(&rest).to_string(),
            });
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn requests_carry_the_key_the_branch_and_the_query() {
    let page = r#"{"changes":[],"next":7,"has_more":false}"#.to_string();
    let (url, seen) = responder(vec![("200 OK", "", page)]).await;
    let t = HttpTransport::new(format!("{url}/"), "ts_secret", "lisbon");
    let got = t
        .changes(ChangesRequest {
            since: Cursor(5),
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(got.next, Cursor(7));
    let s = seen.lock().unwrap()[0].clone();
    let first = s.head.lines().next().unwrap();
    assert_eq!(first, "GET /v1/changes?since=5&limit=50 HTTP/1.1");
    let head = s.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer ts_secret"), "{head}");
    assert!(head.contains(&format!("{BRANCH_HEADER}: lisbon")), "{head}");
}

#[tokio::test]
async fn a_push_posts_json_and_reads_the_acks() {
    let acks = r#"{"acks":[]}"#.to_string();
    let (url, seen) = responder(vec![("200 OK", "", acks)]).await;
    let t = HttpTransport::new(url, "k", "b");
    let got = t
        .push(PushRequest {
            protocol: PROTOCOL_VERSION,
            attempt: 1,
            mutations: vec![],
        })
        .await
        .unwrap();
    assert!(got.acks.is_empty());
    let s = seen.lock().unwrap()[0].clone();
    assert!(s.head.starts_with("POST /v1/mutations "), "{}", s.head);
    let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(body["mutations"], serde_json::json!([]));
    assert_eq!(body["protocol"], PROTOCOL_VERSION);
}

#[tokio::test]
async fn refusals_map_onto_the_cores_transport_errors() {
    let (url, _) = responder(vec![
        ("429 Too Many Requests", "retry-after: 3\r\n", "{}".into()),
        (
            "401 Unauthorized",
            "",
            r#"{"code":"SYNC_UNAUTHORIZED","message":"revoked"}"#.into(),
        ),
        ("503 Service Unavailable", "", "down".into()),
        ("200 OK", "", "not json".into()),
    ])
    .await;
    let t = HttpTransport::new(url, "k", "b");
    let req = || ChangesRequest {
        since: Cursor(0),
        limit: 1,
    };
    assert_eq!(
        t.changes(req()).await.unwrap_err(),
        TransportError::RateLimited {
            retry_after_ms: 3000
        }
    );
    assert_eq!(
        t.changes(req()).await.unwrap_err().code(),
        ErrorCode::SyncUnauthorized
    );
    assert!(matches!(
        t.changes(req()).await.unwrap_err(),
        TransportError::Server { status: 503, .. }
    ));
    assert!(matches!(
        t.changes(req()).await.unwrap_err(),
        TransportError::Server { status: 0, .. }
    ));
}

#[tokio::test]
async fn no_server_on_loopback_is_unreachable_not_offline_and_the_probe_says_so() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = HttpTransport::new(format!("http://127.0.0.1:{port}"), "k", "b");
    assert!(!t.probe().await);
    let err = t
        .snapshot(SnapshotRequest {
            after: None,
            limit: 10,
        })
        .await
        .unwrap_err();
    // Loopback needs no network: a refused connection there is never
    // offline, but an error with its reason.
    assert_eq!(err.code(), ErrorCode::SyncUnreachable, "{err}");
    assert!(
        err.to_string()
            .starts_with("the server refused the connection: "),
        "{err}"
    );

    let (url, seen) = responder(vec![("200 OK", "", r#"{"ok":true}"#.into())]).await;
    assert!(HttpTransport::new(url, "k", "b").probe().await);
    assert!(seen.lock().unwrap()[0].head.starts_with("GET /health "));
}

#[tokio::test]
async fn whoami_sends_the_key_only_and_reads_the_identity() {
    let identity = r#"{"tenant":"acme","branch":"lisbon","terminal":"till-1","key_id":"3f9a0c1d2e4b5a69","expires_at_ms":null}"#;
    let (url, seen) = responder(vec![
        ("200 OK", "", identity.into()),
        (
            "401 Unauthorized",
            "www-authenticate: Bearer\r\n",
            r#"{"code":"SYNC_UNAUTHORIZED","message":"the key is not valid"}"#.into(),
        ),
    ])
    .await;
    let t = HttpTransport::new(url, "ts_secret", "porto").with_terminal("till-9");
    assert_eq!(
        t.whoami().await.unwrap(),
        KeyIdentity {
            tenant: "acme".into(),
            branch: "lisbon".into(),
            terminal: "till-1".into(),
            key_id: "3f9a0c1d2e4b5a69".into(),
            expires_at_ms: None,
        }
    );
    let s = seen.lock().unwrap()[0].clone();
    assert!(s.head.starts_with("GET /v1/whoami "), "{}", s.head);
    let head = s.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer ts_secret"), "{head}");
    // Not the branch and terminal it was given: the answer says what they are.
    assert!(!head.contains("x-tidesync-"), "{head}");
    assert_eq!(
        t.whoami().await.unwrap_err(),
        TransportError::Unauthorized {
            code: ErrorCode::SyncUnauthorized,
            message: "the key is not valid".into(),
        }
    );
}
