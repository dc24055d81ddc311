//! No query parameter yields a 5xx.

use super::*;

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
