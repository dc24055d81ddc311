//! Refusals outside the handlers (404, 405, 415) and bodies over the limit (413): the JSON error body.

use super::*;

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
