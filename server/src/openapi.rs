//! The OpenAPI 3.0 document of the HTTP API, generated from the code: the
//! paths from the route constants the router serves
//! ([`tidesync::transport::http`], [`crate::http::READY_PATH`]), the bodies
//! from the wire types' JSON Schemas (`schemars`, the core's `openapi`
//! feature), the query parameters from the handlers' query types. Published
//! as `docs/openapi.json`; a test fails when that file is not what this
//! generates (`TIDESYNC_BLESS=1` rewrites it), and scripts/test-server.sh
//! runs schemathesis against it and a live server.
//!
//! Statuses are the ones PROTOCOL.md lists per endpoint; every refusal has
//! the [`tidesync::ErrorBody`] body. The body schemas state what the
//! request-level decoding accepts (a body outside them is `400`); the
//! envelope limits of one mutation (its op id, collection name, lengths,
//! checksum) are judged per mutation, answered by a `rejected` ack inside a
//! `200`, and so are not schema constraints here.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use tidesync::transport::http as paths;
use tidesync::{
    ChangesPage, ErrorBody, KeyIdentity, PairRequest, PairResponse, PushRequest, PushResponse,
    ReconcileRequest, ReconcileResponse, SnapshotPage, PROTOCOL_VERSION,
};

use crate::http::{ChangesQuery, SnapshotQuery, METRICS_PATH, READY_PATH};

/// What a refusal status means, for the document (PROTOCOL.md's table).
const REFUSALS: &[(u16, &str)] = &[
    (
        400,
        "EVENT_INVALID: the body or query is malformed or invalid; the message names the field",
    ),
    (
        401,
        "SYNC_UNAUTHORIZED: missing, malformed, unknown, expired or revoked key",
    ),
    (
        403,
        "SYNC_FORBIDDEN: x-tidesync-branch or x-tidesync-terminal is not the key's",
    ),
    (
        408,
        "EVENT_INVALID: the body did not arrive within --body-timeout",
    ),
    (
        409,
        "EVENT_IN_FLIGHT: an op id of the batch is being processed by another request",
    ),
    (
        410,
        "CURSOR_UNKNOWN: since is ahead of the branch's change log; take a new snapshot",
    ),
    (
        413,
        "PAYLOAD_TOO_LARGE (body, batch) or MANIFEST_TOO_LARGE (reconcile)",
    ),
    (
        415,
        "EVENT_INVALID: Content-Encoding other than gzip, br, identity",
    ),
    (429, "SYNC_RATE_LIMITED: wait Retry-After seconds"),
    (
        500,
        "STORAGE_FAILED or INTERNAL: nothing of the request was committed",
    ),
    (
        503,
        "INTERNAL: --max-connections connections are open; see Retry-After",
    ),
];

/// One route of the API.
struct Route {
    method: &'static str,
    path: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    /// Behind the gate (credential, branch, rate limit).
    authenticated: bool,
    query: Option<fn(&mut SchemaGenerator) -> Value>,
    body: Option<fn(&mut SchemaGenerator) -> Value>,
    /// The `200` response: (content type, schema).
    ok: fn(&mut SchemaGenerator) -> (&'static str, Value),
    refusals: &'static [u16],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn json_ok<T: JsonSchema>(g: &mut SchemaGenerator) -> (&'static str, Value) {
    ("application/json", schema::<T>(g))
}

fn query<T: JsonSchema>(_: &mut SchemaGenerator) -> Value {
    SchemaSettings::openapi3()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn probe(_: &mut SchemaGenerator) -> (&'static str, Value) {
    (
        "application/json",
        json!({
            "type": "object",
            "required": ["status", "backend"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "backend": {"type": "string", "enum": ["sqlite", "postgres", "memory"]},
            },
        }),
    )
}

fn event_stream(_: &mut SchemaGenerator) -> (&'static str, Value) {
    ("text/event-stream", json!({"type": "string"}))
}

fn text(_: &mut SchemaGenerator) -> (&'static str, Value) {
    ("text/plain", json!({"type": "string"}))
}

/// Every route the router serves ([`crate::http::router`]).
fn routes() -> Vec<Route> {
    const BODY: &[u16] = &[400, 401, 403, 408, 413, 415, 429, 500, 503];
    vec![
        Route {
            method: "post",
            path: paths::PUSH_PATH,
            operation_id: "push",
            summary: "Push a batch of mutations; one ack per mutation, in order",
            authenticated: true,
            query: None,
            body: Some(schema::<PushRequest>),
            ok: json_ok::<PushResponse>,
            refusals: &[400, 401, 403, 408, 409, 413, 415, 429, 500, 503],
        },
        Route {
            method: "get",
            path: paths::CHANGES_PATH,
            operation_id: "changes",
            summary: "The branch's change log strictly after a cursor, oldest first",
            authenticated: true,
            query: Some(query::<ChangesQuery>),
            body: None,
            ok: json_ok::<ChangesPage>,
            refusals: &[400, 401, 403, 410, 415, 429, 500, 503],
        },
        Route {
            method: "get",
            path: paths::SNAPSHOT_PATH,
            operation_id: "snapshot",
            summary: "A page of the branch's live entities, by (collection, id)",
            authenticated: true,
            query: Some(query::<SnapshotQuery>),
            body: None,
            ok: json_ok::<SnapshotPage>,
            refusals: &[400, 401, 403, 415, 429, 500, 503],
        },
        Route {
            method: "post",
            path: paths::RECONCILE_PATH,
            operation_id: "reconcile",
            summary: "Compare bucket digests; with a manifest, get a repair plan",
            authenticated: true,
            query: None,
            body: Some(schema::<ReconcileRequest>),
            ok: json_ok::<ReconcileResponse>,
            refusals: BODY,
        },
        Route {
            method: "get",
            path: paths::EVENTS_PATH,
            operation_id: "events",
            summary: "The live channel: Server-Sent Events (ready, poke with the new cursor, ping); no entity data",
            authenticated: true,
            query: None,
            body: None,
            ok: event_stream,
            refusals: &[401, 403, 429, 500, 503],
        },
        Route {
            method: "get",
            path: paths::WHOAMI_PATH,
            operation_id: "whoami",
            summary: "What the key was issued for (tenant, branch, terminal, key id, expiry); the branch and terminal headers are optional",
            authenticated: true,
            query: None,
            body: None,
            ok: json_ok::<KeyIdentity>,
            refusals: &[401, 403, 415, 429, 500, 503],
        },
        Route {
            method: "post",
            path: paths::PAIR_PATH,
            operation_id: "pair",
            summary: "Redeem a one-time pairing code (tidesync-server issue-pairing-code) for a new API key of its terminal; no key needed",
            authenticated: false,
            query: None,
            body: Some(schema::<PairRequest>),
            ok: json_ok::<PairResponse>,
            refusals: &[400, 401, 408, 413, 415, 429, 500, 503],
        },
        Route {
            method: "get",
            path: paths::HEALTH_PATH,
            operation_id: "health",
            summary: "Liveness: the process answers (no auth, no database)",
            authenticated: false,
            query: None,
            body: None,
            ok: probe,
            refusals: &[503],
        },
        Route {
            method: "get",
            path: READY_PATH,
            operation_id: "ready",
            summary: "Readiness: the database answers within 2 s (503 with the same body shape otherwise)",
            authenticated: false,
            query: None,
            body: None,
            ok: probe,
            refusals: &[503],
        },
        Route {
            method: "get",
            path: METRICS_PATH,
            operation_id: "metrics",
            summary: "Prometheus text format 0.0.4 (no auth; keep it internal)",
            authenticated: false,
            query: None,
            body: None,
            ok: text,
            refusals: &[503],
        },
    ]
}

fn header_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "header", "required": false,
        "description": description, "schema": {"type": "string"},
    })
}

/// Query parameters from the root schema of a query type.
fn query_params(root: &Value) -> Vec<Value> {
    let required: Vec<&str> = root["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (name, prop) in root["properties"].as_object().into_iter().flatten() {
        let mut schema = prop.clone();
        let description = schema
            .as_object_mut()
            .and_then(|s| {
                s.remove("nullable");
                s.remove("description")
            })
            .unwrap_or(Value::Null);
        out.push(json!({
            "name": name, "in": "query", "required": required.contains(&name.as_str()),
            "description": description, "schema": schema,
        }));
    }
    out
}

/// Gives integers of `format` `uint32`/`uint64` their `maximum` (schemars
/// states only `minimum: 0`): a larger number is refused at decoding (400).
fn add_integer_maxima(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("uint32") => Some(json!(u32::MAX)),
                Some("uint64") => Some(json!(u64::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                map.entry("maximum").or_insert(max);
            }
            map.values_mut().for_each(add_integer_maxima);
        }
        Value::Array(items) => items.iter_mut().for_each(add_integer_maxima),
        _ => {}
    }
}

/// The document.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = schema::<ErrorBody>(&mut g);
    let mut paths = Map::new();
    for r in routes() {
        let mut responses = Map::new();
        let (content_type, ok) = (r.ok)(&mut g);
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": {content_type: {"schema": ok}}}),
        );
        for status in r.refusals {
            let what = REFUSALS
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, w)| *w)
                .expect("every refusal status is described");
            let what = if r.path == READY_PATH && *status == 503 {
                "The database did not answer in time (body {\"status\": \"unavailable\", \"backend\": …}), or --max-connections connections are open (an ErrorBody)"
            } else if r.path == paths::PAIR_PATH && *status == 401 {
                "SYNC_UNAUTHORIZED: unknown, malformed, used or expired pairing code (one message for all; counts as a failed authentication of the address)"
            } else if r.path == paths::PAIR_PATH && *status == 429 {
                "SYNC_RATE_LIMITED: too many failed authentications (keys or pairing codes) from this address; wait Retry-After seconds"
            } else {
                what
            };
            let content = if r.path == READY_PATH && *status == 503 {
                json!({"application/json": {"schema": {"type": "object"}}})
            } else {
                json!({"application/json": {"schema": error}})
            };
            responses.insert(
                status.to_string(),
                json!({"description": what, "content": content}),
            );
        }
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "responses": responses,
        });
        let mut params = Vec::new();
        if r.authenticated {
            op["security"] = json!([{"bearer": []}]);
            params.push(header_param(
                paths::BRANCH_HEADER,
                "The branch the client means to sync; another than the key's is 403 SYNC_FORBIDDEN",
            ));
            params.push(header_param(
                paths::TERMINAL_HEADER,
                "The terminal the client is; another than the key's is 403 SYNC_FORBIDDEN",
            ));
        } else {
            op["security"] = json!([]);
        }
        if let Some(q) = r.query {
            params.extend(query_params(&q(&mut g)));
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body(&mut g)}},
            });
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "tidesync sync protocol",
            "version": PROTOCOL_VERSION.to_string(),
            "description": "Generated from the code by server/src/openapi.rs (tidesync-server openapi); PROTOCOL.md is the prose. Every refusal has the ErrorBody body.",
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer",
                    "description": "A terminal's API key: ts_ + 16 hex digits + _ + 43 base64url characters (tidesync-server issue-key)",
                },
            },
        },
    });
    add_integer_maxima(&mut doc);
    doc
}

/// The document as committed in `docs/openapi.json`: pretty JSON, keys
/// sorted, a final newline.
pub fn document_text() -> String {
    serde_json::to_string_pretty(&document()).expect("a JSON value serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    #[test]
    fn committed_document_is_what_the_code_generates() {
        let generated = document_text();
        if std::env::var_os("TIDESYNC_BLESS").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the code: TIDESYNC_BLESS=1 cargo test -p tidesync-server --lib openapi"
        );
    }

    #[test]
    fn the_document_names_the_wire_types_and_every_route() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "PushRequest",
            "Mutation",
            "MutationAck",
            "EntityState",
            "ErrorBody",
            "ErrorCode",
            "Hlc",
            "KeyIdentity",
            "PairRequest",
            "PairResponse",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        let mutation = &schemas["Mutation"];
        let required: Vec<&str> = mutation["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for field in [
            "op_id",
            "client_id",
            "terminal_id",
            "branch_id",
            "collection",
            "entity_id",
            "kind",
            "base_version",
            "hlc",
            "schema_version",
            "checksum",
        ] {
            assert!(required.contains(&field), "{field} is required");
        }
        assert!(!required.contains(&"payload") && !required.contains(&"offline"));
        let changes = &doc["paths"][paths::CHANGES_PATH]["get"];
        let names: Vec<&str> = changes["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"since") && names.contains(&"limit"),
            "{names:?}"
        );
        assert!(changes["responses"]["410"].is_object());
        assert_eq!(schemas["Hlc"]["properties"]["counter"]["maximum"], u32::MAX);
        assert_eq!(schemas["Hlc"]["properties"]["wall_ms"]["maximum"], u64::MAX);
        // Every path the router serves (`crate::http::router`), no other.
        let documented: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let routed: std::collections::BTreeSet<&str> = [
            paths::PUSH_PATH,
            paths::CHANGES_PATH,
            paths::SNAPSHOT_PATH,
            paths::RECONCILE_PATH,
            paths::EVENTS_PATH,
            paths::WHOAMI_PATH,
            paths::PAIR_PATH,
            paths::HEALTH_PATH,
            READY_PATH,
            METRICS_PATH,
        ]
        .into();
        assert_eq!(documented, routed);
    }
}
