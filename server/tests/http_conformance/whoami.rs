//! `GET /v1/whoami`: the identity of the presented key, behind the same
//! gate as the other endpoints but without needing the branch and terminal
//! headers; and the native transport's `whoami` against it.

use super::*;
use crate::http_common::blocking;
use tidesync::{ErrorCode, KeyIdentity, Transport, TransportError};
use tidesync_server::auth::{hash_key, CredentialStore};
use tidesync_server::client::HttpTransport;
use tidesync_server::testing::issue_key;

const WHOAMI: &str = tidesync::transport::http::WHOAMI_PATH;

fn key_id(key: &str) -> String {
    key.split('_').nth(1).unwrap().to_owned()
}

fn identity(branch: &str, terminal: &str, key: &str, expires: Option<u64>) -> KeyIdentity {
    KeyIdentity {
        tenant: "acme".into(),
        branch: branch.into(),
        terminal: terminal.into(),
        key_id: key_id(key),
        expires_at_ms: expires,
    }
}

/// A 200 with the key's identity, whose body holds exactly the five
/// fields and neither the key nor its hash.
async fn identity_of(resp: reqwest::Response, key: &str) -> KeyIdentity {
    let url = resp.url().to_string();
    assert_eq!(resp.status(), 200, "{url}");
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["branch", "expires_at_ms", "key_id", "tenant", "terminal"],
        "{text}"
    );
    assert!(!text.contains(&key[20..]), "no secret in {text}");
    assert!(!text.contains(&hash_key(key)), "no key hash in {text}");
    serde_json::from_value(body).unwrap()
}

pub async fn whoami_answers_the_keys_identity_behind_the_gate(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let c = client();
    let key = s.key("b1", "t1");
    let get = |key: Option<&str>| {
        let req = c.get(s.url(WHOAMI));
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    };

    // No branch or terminal header needed: the client learns them here.
    let got = identity_of(get(Some(&key)).send().await.unwrap(), &key).await;
    assert_eq!(got, identity("b1", "t1", &key, None));
    // The right headers are accepted too.
    let resp = get(Some(&key))
        .header("x-tidesync-branch", "b1")
        .header("x-tidesync-terminal", "t1")
        .send()
        .await
        .unwrap();
    assert_eq!(identity_of(resp, &key).await, got);
    // An expiring key reports its expiry.
    let expires = tidesync_server::now_ms() + 3_600_000;
    let expiring = blocking(|| {
        issue_key(
            s.app.service.store(),
            TerminalContext::new("acme", "b2", "till-7"),
            Some(expires),
        )
    });
    let resp = get(Some(&expiring)).send().await.unwrap();
    assert_eq!(
        identity_of(resp, &expiring).await,
        identity("b2", "till-7", &expiring, Some(expires))
    );

    // Headers that are not the key's: 403, as on the other endpoints.
    let resp = get(Some(&key))
        .header("x-tidesync-terminal", "t2")
        .send()
        .await
        .unwrap();
    let (status, code, message) = refusal(resp).await;
    assert_eq!((status, code.as_str()), (403, "SYNC_FORBIDDEN"));
    assert!(
        message.starts_with("x-tidesync-terminal: ")
            && message.contains("\"t1\"")
            && message.contains("\"t2\""),
        "{message}"
    );
    let resp = get(Some(&key))
        .header("x-tidesync-branch", "b2")
        .send()
        .await
        .unwrap();
    let (status, code, message) = refusal(resp).await;
    assert_eq!((status, code.as_str()), (403, "SYNC_FORBIDDEN"));
    assert!(message.starts_with("x-tidesync-branch: "), "{message}");

    // The native transport: it sends the key only, so a transport given
    // the wrong branch and terminal still learns the right ones.
    let t = HttpTransport::new(s.base.clone(), key.clone(), "b9").with_terminal("t9");
    assert_eq!(t.whoami().await.unwrap(), got);
    let junk = HttpTransport::new(s.base.clone(), "not-a-key", "b1");
    assert!(matches!(
        junk.whoami().await,
        Err(TransportError::Unauthorized {
            code: ErrorCode::SyncUnauthorized,
            ..
        })
    ));

    // 401 with the documented body: no key, a junk key, a well-formed
    // key this server never issued, an expired key, a revoked key.
    let mut forged = key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let expired = blocking(|| {
        issue_key(
            s.app.service.store(),
            TerminalContext::new("acme", "b1", "t4"),
            Some(tidesync_server::now_ms() - 1),
        )
    });
    let revoked = s.key("b1", "t3");
    identity_of(get(Some(&revoked)).send().await.unwrap(), &revoked).await;
    let store = s.app.service.store();
    assert!(blocking(|| store
        .revoke_credential(&key_id(&revoked), tidesync_server::now_ms())
        .unwrap()));
    for (what, k, said) in [
        (
            "no key",
            None,
            "an Authorization: Bearer <key> header is required",
        ),
        ("junk", Some("not-a-key"), "the key is not valid"),
        ("forged", Some(forged.as_str()), "the key is not valid"),
        ("expired", Some(expired.as_str()), "the key has expired"),
        (
            "revoked",
            Some(revoked.as_str()),
            "the key has been revoked",
        ),
    ] {
        let resp = get(k).send().await.unwrap();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer", "{what}");
        let (status, code, message) = refusal(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "SYNC_UNAUTHORIZED"),
            "{what}"
        );
        assert_eq!(message, said, "{what}");
    }
    let gone = HttpTransport::new(s.base.clone(), revoked.clone(), "b1");
    assert!(matches!(
        gone.whoami().await,
        Err(TransportError::Unauthorized {
            code: ErrorCode::SyncUnauthorized,
            ..
        })
    ));

    // Counted per route like the other requests.
    super::assert_metrics(
        &s,
        &[
            "tidesync_http_responses_total{route=\"whoami\",status=\"200\"} 5",
            "tidesync_http_responses_total{route=\"whoami\",status=\"403\"} 2",
            "tidesync_http_responses_total{route=\"whoami\",status=\"401\"} 7",
            "tidesync_http_request_duration_seconds_count{route=\"whoami\"} 14",
        ],
    )
    .await;
    s.shutdown().await;
}
