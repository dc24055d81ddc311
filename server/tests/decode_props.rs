//! Property tests of request decoding and validation through the whole HTTP
//! stack (router in process, no network): whatever the body or query, the
//! server never panics and never answers 5xx; a refusal is a coded 4xx.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use tidesync::{payload_checksum, ErrorBody, MutationKind, PushResponse};
use tidesync_server::http::{self, AppState, HttpConfig};
use tidesync_server::testing::issue_key;
use tidesync_server::{Backend, SyncService, TerminalContext};
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Arc<AppState>,
    key: String,
}

fn harness() -> Harness {
    let app = AppState::new(
        SyncService::new(Backend::memory()),
        HttpConfig {
            rate_per_sec: 0.0,
            max_body_bytes: 64 * 1024,
            ..HttpConfig::default()
        },
    );
    let key = issue_key(
        app.service.store(),
        TerminalContext::new("acme", "b1", "t1"),
        None,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    Harness { rt, app, key }
}

impl Harness {
    fn send(&self, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let router = http::router(Arc::clone(&self.app));
        self.rt.block_on(async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, bytes.to_vec())
        })
    }
}

/// A 2xx, or a 4xx with a coded JSON error body; never a 5xx.
fn assert_coded(status: StatusCode, body: &[u8]) {
    assert!(!status.is_server_error(), "server error {status}");
    if status.is_client_error() {
        let e: ErrorBody = serde_json::from_slice(body)
            .unwrap_or_else(|_| panic!("uncoded {status}: {}", String::from_utf8_lossy(body)));
        assert!(!e.message.is_empty());
    } else {
        assert!(status.is_success(), "{status}");
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("01ARZ3NDEKTSV4RRFFQ69G5FAV")),
        Just(json!("create")),
        Just(json!("rooms")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("protocol".to_owned()),
                    Just("mutations".to_owned()),
                    Just("op_id".to_owned()),
                    Just("kind".to_owned()),
                    Just("payload".to_owned()),
                    Just("collection".to_owned()),
                    Just("buckets".to_owned()),
                    Just("digests".to_owned()),
                    Just("manifest".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A mutation that decodes, with arbitrary field values.
fn shaped_mutation() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned()), ".{0,30}"],
        prop_oneof![Just("t1".to_owned()), ".{0,4}"],
        prop_oneof![Just("b1".to_owned()), ".{0,4}"],
        prop_oneof![Just("rooms".to_owned()), ".{0,70}"],
        ".{0,140}",
        prop_oneof![
            Just(MutationKind::Create),
            Just(MutationKind::Patch),
            Just(MutationKind::Delete),
            Just(MutationKind::Append)
        ],
        prop::option::of(json_value()),
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(op, terminal, branch, collection, id, kind, payload, base, schema, good_sum)| {
                let payload = payload.map(|p| match p {
                    Value::Object(m) => m,
                    other => [("v".to_owned(), other)].into_iter().collect(),
                });
                let checksum = if good_sum {
                    payload_checksum(&collection, &id, kind, payload.as_ref())
                } else {
                    "0".repeat(64)
                };
                json!({
                    "op_id": op, "client_id": "c", "terminal_id": terminal, "branch_id": branch,
                    "collection": collection, "entity_id": id, "kind": kind,
                    "payload": payload, "base_version": base,
                    "hlc": {"wall_ms": 1, "counter": 0, "node": 1},
                    "schema_version": schema, "checksum": checksum,
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_bodies_get_a_coded_answer(body in json_value()) {
        let h = harness();
        for uri in ["/v1/mutations", "/v1/reconcile"] {
            let (status, bytes) = h.send("POST", uri, serde_json::to_vec(&body).unwrap());
            assert_coded(status, &bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_get_a_coded_answer(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let h = harness();
        let (status, bytes) = h.send("POST", "/v1/mutations", body);
        assert_coded(status, &bytes);
    }

    #[test]
    fn arbitrary_queries_get_a_coded_answer(q in "[a-z_=&%0-9.-]{0,40}") {
        let h = harness();
        for path in ["/v1/changes", "/v1/snapshot"] {
            let (status, bytes) = h.send("GET", &format!("{path}?{q}"), Vec::new());
            assert_coded(status, &bytes);
        }
    }

    #[test]
    fn well_shaped_batches_get_one_ack_per_mutation(
        ms in prop::collection::vec(shaped_mutation(), 0..8),
        protocol in prop_oneof![Just(1u32), any::<u32>()],
    ) {
        let h = harness();
        let n = ms.len();
        let body = json!({"protocol": protocol, "attempt": 0, "mutations": ms});
        let (status, bytes) = h.send("POST", "/v1/mutations", serde_json::to_vec(&body).unwrap());
        assert_coded(status, &bytes);
        if status.is_success() {
            let r: PushResponse = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(r.acks.len(), n);
        } else {
            prop_assert!(protocol != 1, "only a wrong protocol refuses the whole batch");
        }
    }
}
