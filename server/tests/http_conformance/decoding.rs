//! Strict decoding: trailing bytes, and where an error message points.

use super::*;

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
