//! CORS over loopback: preflights of allowed origins are answered before the
//! gate (and cost nothing against the limit of failed authentications),
//! every response to an allowed origin carries its Allow-Origin (errors and
//! 429s included), other origins get no CORS headers, and with no
//! `--cors-origin` there is no CORS at all.

mod http_common;

use http_common::*;
use reqwest::header::{self, HeaderMap};
use reqwest::Method;
use tidesync_server::http::HttpConfig;

const APP: &str = "http://app.example.test:5173";
const OTHER: &str = "http://evil.example.test";

fn with_cors(config: HttpConfig) -> HttpConfig {
    HttpConfig {
        cors_origins: vec![APP.to_owned(), "https://second.example.test".to_owned()],
        ..config
    }
}

async fn preflight(s: &Server, origin: &str, path: &str) -> reqwest::Response {
    client()
        .request(Method::OPTIONS, s.url(path))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type, x-tidesync-branch, x-tidesync-terminal",
        )
        .send()
        .await
        .unwrap()
}

fn no_cors_headers(h: &HeaderMap, what: &str) {
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        assert!(!h.contains_key(&name), "{what}: {name} present");
    }
}

fn varies_on_origin(h: &HeaderMap) -> bool {
    h.get_all(header::VARY)
        .iter()
        .any(|v| v.to_str().unwrap().to_ascii_lowercase().contains("origin"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_is_204_with_what_the_client_sends() {
    let s = start(with_cors(relaxed())).await;
    for path in [
        "/v1/mutations",
        "/v1/changes",
        "/v1/snapshot",
        "/v1/reconcile",
        "/v1/whoami",
    ] {
        let resp = preflight(&s, APP, path).await;
        assert_eq!(resp.status(), 204, "{path}");
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP, "{path}");
        assert!(varies_on_origin(h), "{path}: Vary: Origin");
        let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
        for m in ["GET", "POST"] {
            assert!(methods.contains(m), "{path}: {methods}");
        }
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        // Everything src/web/transport.rs sends.
        for name in [
            "authorization",
            "content-type",
            "accept",
            tidesync_server::http::BRANCH_HEADER,
            tidesync_server::http::TERMINAL_HEADER,
        ] {
            assert!(allowed.contains(name), "{path}: {name} in {allowed}");
        }
        let age: u32 = h[header::ACCESS_CONTROL_MAX_AGE]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(age > 0);
    }
    // The second configured origin matches exactly too.
    let resp = preflight(&s, "https://second.example.test", "/v1/changes").await;
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://second.example.test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_no_cors_headers() {
    let s = start(with_cors(relaxed())).await;
    let key = s.key("b1", "t1");
    for origin in [OTHER, "http://app.example.test:5174", "null"] {
        let resp = preflight(&s, origin, "/v1/mutations").await;
        no_cors_headers(resp.headers(), origin);
        let resp = client()
            .get(s.url("/v1/changes?since=0"))
            .bearer_auth(&key)
            .header(header::ORIGIN, origin)
            .send()
            .await
            .unwrap();
        // The server still answers (CORS is the browser's to enforce) ...
        assert_eq!(resp.status(), 200);
        // ... without letting the page read it.
        no_cors_headers(resp.headers(), origin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_to_an_allowed_origin_carry_allow_origin_errors_included() {
    let s = start(with_cors(HttpConfig {
        rate_per_sec: 0.001,
        burst: 2.0,
        ..HttpConfig::default()
    }))
    .await;
    let key = s.key("b1", "t1");
    let get = |path: &str, key: Option<&str>| {
        let r = client().get(s.url(path)).header(header::ORIGIN, APP);
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    };
    let check = |resp: &reqwest::Response, what: &str| {
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP, "{what}");
        assert!(varies_on_origin(h), "{what}: Vary: Origin");
        let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
        assert!(exposed.contains("retry-after"), "{what}: {exposed}");
    };
    let ok = get("/v1/changes?since=0", Some(&key)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    check(&ok, "200");
    let unauthorized = get("/v1/changes?since=0", None).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    check(&unauthorized, "401");
    let bad = get("/v1/changes?since=x", Some(&key)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    check(&bad, "400");
    let missing = get("/v1/nothing", Some(&key)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    check(&missing, "404");
    let health = get("/health", None).send().await.unwrap();
    assert_eq!(health.status(), 200);
    check(&health, "/health");
    // The burst of 2 is spent: 429, still readable by the page, with its
    // Retry-After exposed.
    let limited = get("/v1/changes?since=0", Some(&key)).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    check(&limited, "429");
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(code_of(limited).await, "SYNC_RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_do_not_count_against_the_auth_failure_limit() {
    let s = start(with_cors(HttpConfig {
        rate_per_sec: 0.0,
        auth_failure_rate: 0.001,
        auth_failure_burst: 2.0,
        ..HttpConfig::default()
    }))
    .await;
    let lookups = || {
        s.app
            .stats
            .auth_lookups
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    for _ in 0..20 {
        assert_eq!(preflight(&s, APP, "/v1/mutations").await.status(), 204);
        assert_eq!(preflight(&s, OTHER, "/v1/changes").await.status(), 204);
    }
    assert_eq!(lookups(), 0, "a preflight looks nothing up");
    // The address still has its whole burst of failures: two 401s, then 429.
    let bad = || {
        client()
            .get(s.url("/v1/changes"))
            .header(header::ORIGIN, APP)
            .bearer_auth("not-a-key")
            .send()
    };
    assert_eq!(bad().await.unwrap().status(), 401);
    assert_eq!(bad().await.unwrap().status(), 401);
    assert_eq!(bad().await.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_origins_there_are_no_cors_headers() {
    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let resp = preflight(&s, APP, "/v1/mutations").await;
    no_cors_headers(resp.headers(), "preflight");
    // Not a route for OPTIONS: the ordinary JSON refusal.
    assert_eq!(resp.status(), 405);
    let resp = client()
        .get(s.url("/v1/changes?since=0"))
        .bearer_auth(&key)
        .header(header::ORIGIN, APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    no_cors_headers(resp.headers(), "GET");
}
