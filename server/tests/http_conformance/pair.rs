//! `POST /v1/pair`: a one-time pairing code redeemed, once, for a new API
//! key of its terminal; refused codes counted like refused keys; and the
//! native transport's `pair` against it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use super::*;
use crate::http_common::blocking;
use tidesync::{ErrorCode, KeyIdentity, PairRequest, PairResponse, Transport, TransportError};
use tidesync_server::auth::{self, hash_key};

const PAIR: &str = tidesync::transport::http::PAIR_PATH;
const WHOAMI: &str = tidesync::transport::http::WHOAMI_PATH;
const APP: &str = "http://app.example";

fn till(terminal: &str) -> TerminalContext {
    TerminalContext::new("acme", "b1", terminal)
}

/// A stored code for `terminal`, issued at `now - age_ms`, valid for `valid_ms`.
fn code_for(s: &Server, terminal: &str, age_ms: u64, valid_ms: u64) -> String {
    let now = tidesync_server::now_ms();
    blocking(|| {
        auth::issue_pairing_code(
            s.app.service.store(),
            till(terminal),
            now - age_ms,
            valid_ms,
        )
        .unwrap()
        .0
    })
}

async fn post_pair(s: &Server, body: &Value) -> reqwest::Response {
    client()
        .post(s.url(PAIR))
        .header(header::ORIGIN, APP)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn lookups(s: &Server) -> u64 {
    s.app.stats.auth_lookups.load(Ordering::SeqCst)
}

/// The one refusal of a code that does not redeem.
async fn refused(resp: reqwest::Response, what: &str) -> String {
    let (status, code, message) = refusal(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (401, "SYNC_UNAUTHORIZED"),
        "{what}"
    );
    message
}

pub async fn a_pairing_code_redeems_once_for_a_key_that_works(backend: Backend) {
    let s = start_on(
        backend,
        HttpConfig {
            cors_origins: vec![APP.into()],
            ..relaxed()
        },
    )
    .await;
    let c = client();
    let code = code_for(&s, "till-1", 0, 60_000);

    // Redeemed: the new key and its identity, never the code or its hash.
    let resp = post_pair(&s, &json!({ "code": code })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(
        resp.headers()[header::CACHE_CONTROL],
        "no-store",
        "it carries a key"
    );
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(&code[21..]) && !text.contains(&hash_key(&code)),
        "{text}"
    );
    let paired: PairResponse = serde_json::from_str(&text).unwrap();
    let key = paired.api_key.clone();
    assert!(auth::well_formed(&key), "{text}");
    let want = KeyIdentity {
        tenant: "acme".into(),
        branch: "b1".into(),
        terminal: "till-1".into(),
        key_id: key.split('_').nth(1).unwrap().to_owned(),
        expires_at_ms: None,
    };
    assert_eq!(paired.identity, want);

    // The key works: whoami, and a push.
    let who: KeyIdentity = c
        .get(s.url(WHOAMI))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who, want);
    let pushed: PushResponse = c
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .header("x-tidesync-branch", "b1")
        .header("x-tidesync-terminal", "till-1")
        .json(&push_request(vec![create_room(
            "b1",
            "till-1",
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
    assert!(
        matches!(pushed.acks[0].result, AckResult::Applied { .. }),
        "{pushed:?}"
    );

    // Used, expired, unknown, malformed: one 401, one message.
    let used = refused(post_pair(&s, &json!({ "code": code })).await, "used").await;
    let expired_code = code_for(&s, "till-2", 10_000, 1);
    let expired = refused(
        post_pair(&s, &json!({ "code": expired_code })).await,
        "expired",
    )
    .await;
    let (unknown_code, _) = auth::new_pairing_code(till("till-3"), 0, u64::MAX).unwrap();
    let unknown = refused(
        post_pair(&s, &json!({ "code": unknown_code })).await,
        "unknown",
    )
    .await;
    assert_eq!(used, expired);
    assert_eq!(used, unknown);
    // Junk is refused the same way, without storage work.
    let before = lookups(&s);
    for junk in [
        "",
        "not-a-code",
        &key,
        &code[..code.len() - 1],
        &"x".repeat(900),
    ] {
        let message = refused(post_pair(&s, &json!({ "code": junk })).await, junk).await;
        assert_eq!(message, used, "{junk}");
    }
    assert_eq!(lookups(&s), before, "no lookup for junk");

    // Malformed bodies and unknown fields: 400, and the code is not used.
    let fresh = code_for(&s, "till-4", 0, 60_000);
    for body in [
        json!({ "code": fresh, "terminal": "till-9" }),
        json!({ "code": 7 }),
        json!({}),
        json!({ "code": [fresh] }),
        json!({ "code": fresh, "code2": fresh }),
    ] {
        let resp = post_pair(&s, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let (status, code, _) = refusal(resp).await;
        assert_eq!((status, code.as_str()), (400, "EVENT_INVALID"), "{body}");
    }
    let resp = c
        .post(s.url(PAIR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(format!("{{\"code\": \"{fresh}\"}} trailing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "trailing bytes");
    assert_eq!(refusal(resp).await.0, 400);
    // A body far larger than a code: 413 before it is read.
    let big = json!({ "code": "y".repeat(4096) });
    assert_eq!(refusal(post_pair(&s, &big).await).await.0, 413);
    let resp = post_pair(&s, &json!({ "code": fresh })).await;
    assert_eq!(resp.status(), 200, "the 400s did not use the code");

    // A preflight from the app's origin is answered like any other route's.
    let pre = c
        .request(reqwest::Method::OPTIONS, s.url(PAIR))
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);

    // The native transport: no key of its own needed.
    let t = tidesync_server::client::HttpTransport::new(s.base.clone(), "", "");
    let code = code_for(&s, "till-5", 0, 60_000);
    let got = t.pair(PairRequest { code: code.clone() }).await.unwrap();
    assert_eq!(got.identity.terminal, "till-5");
    let keyed = tidesync_server::client::HttpTransport::new(s.base.clone(), got.api_key, "b1");
    assert_eq!(keyed.whoami().await.unwrap(), got.identity);
    assert!(matches!(
        t.pair(PairRequest { code }).await,
        Err(TransportError::Unauthorized {
            code: ErrorCode::SyncUnauthorized,
            ..
        })
    ));

    // Counted per route.
    super::assert_metrics(
        &s,
        &[
            "tidesync_http_responses_total{route=\"pair\",status=\"200\"} 3",
            "tidesync_http_responses_total{route=\"pair\",status=\"401\"} 9",
            "tidesync_http_responses_total{route=\"pair\",status=\"400\"} 6",
            "tidesync_http_responses_total{route=\"pair\",status=\"413\"} 1",
        ],
    )
    .await;
    s.shutdown().await;
}

/// Many redeems of one code at once, over HTTP and straight at the store
/// from threads: exactly one key.
pub async fn concurrent_redeems_of_one_code_give_exactly_one_key(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    const N: usize = 8;

    let code = code_for(&s, "till-1", 0, 60_000);
    let body = json!({ "code": code });
    let sends = (0..N).map(|_| post_pair(&s, &body));
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&st| st == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&st| st == 401).count(),
        N - 1,
        "{statuses:?}"
    );

    let code = code_for(&s, "till-2", 0, 60_000);
    let barrier = Arc::new(Barrier::new(N));
    let outcomes: Vec<_> = blocking(|| {
        let threads: Vec<_> = (0..N)
            .map(|_| {
                let (app, code, barrier) = (Arc::clone(&s.app), code.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    auth::redeem_pairing_code(app.service.store(), &code, tidesync_server::now_ms())
                        .unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let keys: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(keys.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|f| *f == auth::PairFailure::Used),
        "{outcomes:?}"
    );
    s.shutdown().await;
}

/// Refused codes are failed authentications of their address: past the
/// burst, 429 without storage work, even for a code that would redeem.
pub async fn a_flood_of_bad_pairing_codes_is_rate_limited_like_bad_keys(backend: Backend) {
    let s = start_on(
        backend,
        HttpConfig {
            auth_failure_rate: 0.001,
            auth_failure_burst: 3.0,
            ..relaxed()
        },
    )
    .await;
    let good = code_for(&s, "till-1", 0, 60_000);
    // A redeem that succeeds gives its token back.
    let resp = post_pair(&s, &json!({ "code": good })).await;
    assert_eq!(resp.status(), 200);
    let good = code_for(&s, "till-2", 0, 60_000);
    for i in 0..3 {
        let (unknown, _) = auth::new_pairing_code(till("x"), 0, u64::MAX).unwrap();
        let junk = if i == 0 { "junk".to_owned() } else { unknown };
        refused(
            post_pair(&s, &json!({ "code": junk })).await,
            "within the burst",
        )
        .await;
    }
    let before = lookups(&s);
    for _ in 0..10 {
        let (unknown, _) = auth::new_pairing_code(till("x"), 0, u64::MAX).unwrap();
        for code in [unknown.as_str(), "junk", good.as_str()] {
            let resp = post_pair(&s, &json!({ "code": code })).await;
            assert!(resp.headers().contains_key(header::RETRY_AFTER));
            let (status, code, message) = refusal(resp).await;
            assert_eq!((status, code.as_str()), (429, "SYNC_RATE_LIMITED"));
            assert!(
                message.starts_with("too many failed authentications"),
                "{message}"
            );
        }
    }
    assert_eq!(lookups(&s), before, "no storage work over the limit");
    // Bad keys and bad codes share the address's budget.
    let resp = client()
        .get(s.url(WHOAMI))
        .bearer_auth("ts_junk")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    s.shutdown().await;
}
