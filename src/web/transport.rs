//! [`FetchTransport`]: the core's [`Transport`] over the browser's `fetch`,
//! speaking the reference server's HTTP protocol (PROTOCOL.md): a bearer key,
//! the terminal's branch in `x-tidesync-branch`, JSON bodies.

use crate::protocol::*;
use crate::transport::http::{self, BRANCH_HEADER};
use crate::transport::{Transport, TransportError};
use async_trait::async_trait;
use js_sys::{Promise, Reflect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestInit, Response};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_with_init(input: &str, init: &RequestInit) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// A sync server reached with `fetch`.
#[derive(Debug, Clone)]
pub struct FetchTransport {
    base: String,
    key: String,
    branch: String,
    timeout_ms: u32,
}

impl FetchTransport {
    /// A transport to `base_url` (absolute, or relative to the page: `""`
    /// means the page's own origin) with a terminal's API key.
    pub fn new(base_url: &str, key: &str, branch: &str) -> Self {
        FetchTransport {
            base: base_url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            branch: branch.to_string(),
            timeout_ms: 30_000,
        }
    }

    /// Sets the request timeout.
    pub fn with_timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// Replaces the API key (rotated credentials).
    pub fn set_key(&mut self, key: &str) {
        self.key = key.to_string();
    }

    /// `GET /health`: the server answers (used as the reachability probe).
    pub async fn probe(&self) -> bool {
        let init = RequestInit::new();
        init.set_method("GET");
        let url = format!("{}{}", self.base, http::HEALTH_PATH);
        match JsFuture::from(fetch_with_init(&url, &init)).await {
            Ok(r) => r.unchecked_into::<Response>().ok(),
            Err(_) => false,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, TransportError> {
        let headers = Headers::new().map_err(unreachable)?;
        headers
            .set("authorization", &format!("Bearer {}", self.key))
            .map_err(unreachable)?;
        headers
            .set(BRANCH_HEADER, &self.branch)
            .map_err(unreachable)?;
        headers
            .set("accept", "application/json")
            .map_err(unreachable)?;
        let init = RequestInit::new();
        init.set_method(method);
        if let Some(b) = body {
            let json = serde_json::to_string(b).map_err(|e| TransportError::Server {
                status: 0,
                message: format!("request not serialisable: {e}"),
            })?;
            headers
                .set("content-type", "application/json")
                .map_err(unreachable)?;
            init.set_body(&JsValue::from_str(&json));
        }
        init.set_headers(&headers);
        let controller = AbortController::new().map_err(unreachable)?;
        init.set_signal(Some(&controller.signal()));
        let c = controller.clone();
        let on_timeout = Closure::once_into_js(move || c.abort());
        let timer = set_timeout(on_timeout.unchecked_ref(), self.timeout_ms as i32);
        let url = format!("{}{}", self.base, path_and_query);
        let result = JsFuture::from(fetch_with_init(&url, &init)).await;
        let resp: Response = match result {
            Ok(r) => r.unchecked_into(),
            Err(e) => {
                clear_timeout(&timer);
                return Err(if controller.signal().aborted() {
                    TransportError::Timeout
                } else {
                    // fetch rejects with a TypeError when the network fails.
                    TransportError::Unreachable(describe(&e))
                });
            }
        };
        let text = match resp.text().map(JsFuture::from) {
            Ok(f) => f.await,
            Err(e) => Err(e),
        };
        clear_timeout(&timer);
        let text = match text {
            Ok(t) => t.as_string().unwrap_or_default(),
            Err(e) if controller.signal().aborted() => {
                let _ = e;
                return Err(TransportError::Timeout);
            }
            Err(e) => {
                return Err(TransportError::Server {
                    status: 0,
                    message: format!("connection broke while reading: {}", describe(&e)),
                })
            }
        };
        let status = resp.status();
        if resp.ok() {
            return serde_json::from_str(&text).map_err(http::unreadable);
        }
        Err(error_for(status, &resp.headers(), &text))
    }
}

fn describe(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn unreachable(e: JsValue) -> TransportError {
    TransportError::Unreachable(describe(&e))
}

/// Maps a non-2xx answer onto a [`TransportError`] (the shared mapping).
fn error_for(status: u16, headers: &Headers, body: &str) -> TransportError {
    let retry_after = headers.get("retry-after").ok().flatten();
    http::error_for_status(status, retry_after.as_deref(), body.as_bytes())
}

fn query(pairs: &[(&str, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                js_sys::encode_uri_component(v)
                    .as_string()
                    .unwrap_or_default()
            )
        })
        .collect();
    q.join("&")
}

#[async_trait(?Send)]
impl Transport for FetchTransport {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        self.send("POST", http::PUSH_PATH, Some(&request)).await
    }

    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        let q = query(&[
            ("since", request.since.0.to_string()),
            ("limit", request.limit.to_string()),
        ]);
        self.send("GET", &format!("{}?{q}", http::CHANGES_PATH), None::<&()>)
            .await
    }

    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        let mut pairs = vec![("limit", request.limit.to_string())];
        if let Some(after) = request.after {
            pairs.push(("after_collection", after.collection));
            pairs.push(("after_id", after.id));
        }
        self.send(
            "GET",
            &format!("{}?{}", http::SNAPSHOT_PATH, query(&pairs)),
            None::<&()>,
        )
        .await
    }

    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        self.send("POST", http::RECONCILE_PATH, Some(&request))
            .await
    }
}
