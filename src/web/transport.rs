//! [`FetchTransport`]: the core's [`Transport`] over the browser's `fetch`,
//! speaking the reference server's HTTP protocol (PROTOCOL.md): a bearer key,
//! the terminal's branch in `x-tidesync-branch`, JSON bodies.
//!
//! A request `fetch` rejects while the browser is online (the server
//! refused the cross-origin request, DNS, TLS, connection refused) is
//! retried once, then reported as `SYNC_UNREACHABLE`; only
//! `navigator.onLine === false` makes it `SYNC_OFFLINE`. The key comes
//! from `apiKey`, or from the `credentials` callback before the first
//! request and again after a 401 (once per request: then the 401 stands).

use super::navigator;
use crate::client::live::{ChannelEnd, PokeChannel, PokeSink};
use crate::client::scheduler::HostFuture;
use crate::error_code::ErrorCode;
use crate::protocol::*;
use crate::transport::http::{self, BRANCH_HEADER, TERMINAL_HEADER};
use crate::transport::{Transport, TransportError};
use async_trait::async_trait;
use js_sys::{Function, Promise, Reflect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
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

/// Where the API key comes from: a fixed key (`apiKey`), a callback that
/// gives the current one (`credentials`, which may refresh or rotate it),
/// both (the key first, the callback when it is refused), or neither (the
/// engine works offline; sync reports `SYNC_UNAUTHORIZED`).
#[derive(Default)]
struct Credentials {
    key: RefCell<Option<String>>,
    callback: Option<Function>,
}

/// A sync server reached with `fetch`.
#[derive(Clone)]
pub struct FetchTransport {
    base: String,
    credentials: Rc<Credentials>,
    branch: String,
    terminal: Option<String>,
    timeout_ms: u32,
}

impl std::fmt::Debug for FetchTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("FetchTransport")
            .field("base", &self.base)
            .field("branch", &self.branch)
            .field("has_key", &self.credentials.key.borrow().is_some())
            .field("has_callback", &self.credentials.callback.is_some())
            .finish_non_exhaustive()
    }
}

/// What a request reports when the browser is online and `fetch` rejects:
/// a CORS refusal, a DNS or TLS failure and a refused connection all look
/// the same to a page (a `TypeError`), so this names them all.
pub const UNREACHABLE_REASON: &str =
    "the server refused the cross-origin request or could not be reached \
     (CORS not allowed for this origin, DNS, TLS or connection refused)";

/// How long to wait before the one immediate retry of a request that
/// `fetch` rejected while the browser is online (a dropped connection).
const RETRY_MS: u32 = 300;

/// Why `fetch` gave no response.
enum NoResponse {
    Timeout,
    Network(String),
}

impl FetchTransport {
    /// A transport to `base_url` (absolute, or relative to the page: `""`
    /// means the page's own origin) with a terminal's API key (if any) and
    /// a callback giving the current key (if any): see [`Credentials`].
    pub fn new(
        base_url: &str,
        key: Option<&str>,
        callback: Option<Function>,
        branch: &str,
    ) -> Self {
        FetchTransport {
            base: base_url.trim_end_matches('/').to_string(),
            credentials: Rc::new(Credentials {
                key: RefCell::new(key.map(str::to_string)),
                callback,
            }),
            branch: branch.to_string(),
            terminal: None,
            timeout_ms: 30_000,
        }
    }

    /// States `terminal` in every request (`x-tidesync-terminal`): a key
    /// issued for another terminal is refused at first contact
    /// (`SYNC_FORBIDDEN`) instead of dead-lettering every mutation.
    pub fn with_terminal(mut self, terminal: &str) -> Self {
        self.terminal = Some(terminal.to_string());
        self
    }

    /// Sets the request timeout.
    pub fn with_timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// Replaces the API key (rotated credentials).
    pub fn set_key(&self, key: &str) {
        *self.credentials.key.borrow_mut() = Some(key.to_string());
    }

    /// Whether `open` was given a `credentials` callback.
    pub fn has_callback(&self) -> bool {
        self.credentials.callback.is_some()
    }

    /// Asks the `credentials` callback for the current key and keeps it;
    /// `Ok(true)` if it differs from the key held before.
    pub async fn refresh_key(&self) -> Result<bool, TransportError> {
        let Some(f) = &self.credentials.callback else {
            return Ok(false);
        };
        let fail = |what: String| TransportError::Unauthorized {
            code: ErrorCode::SyncUnauthorized,
            message: format!("options.credentials() {what}"),
        };
        let mut v = f
            .call0(&JsValue::NULL)
            .map_err(|e| fail(format!("threw: {}", describe(&e))))?;
        if let Some(p) = v.dyn_ref::<Promise>() {
            v = JsFuture::from(p.clone())
                .await
                .map_err(|e| fail(format!("rejected: {}", describe(&e))))?;
        }
        let key = if v.is_null() || v.is_undefined() {
            None
        } else {
            match v.as_string() {
                Some(k) if !k.is_empty() => Some(k),
                Some(_) => None,
                None => {
                    return Err(fail(
                        "must give a string (the API key), null or undefined".into(),
                    ))
                }
            }
        };
        let mut held = self.credentials.key.borrow_mut();
        let changed = key.is_some() && *held != key;
        if key.is_some() {
            *held = key;
        }
        Ok(changed)
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

    /// The key to send: the one held, else the callback's.
    async fn key(&self, asked: &mut bool) -> Result<String, TransportError> {
        if let Some(k) = self.credentials.key.borrow().clone() {
            return Ok(k);
        }
        if self.has_callback() {
            *asked = true;
            self.refresh_key().await?;
        }
        self.credentials
            .key
            .borrow()
            .clone()
            .ok_or_else(|| TransportError::Unauthorized {
                code: ErrorCode::SyncUnauthorized,
                message: if self.has_callback() {
                    "no credentials yet: options.credentials() gave no API key".into()
                } else {
                    "no credentials: open() was given neither apiKey nor credentials".into()
                },
            })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, TransportError> {
        let json =
            body.map(serde_json::to_string)
                .transpose()
                .map_err(|e| TransportError::Server {
                    status: 0,
                    message: format!("request not serialisable: {e}"),
                })?;
        let url = format!("{}{}", self.base, path_and_query);
        if !navigator::online() {
            // Not tried: the browser says it is offline (and a missing key
            // is not the error to show while offline).
            return Err(TransportError::Unreachable("the browser is offline".into()));
        }
        let mut asked = false;
        let mut key = self.key(&mut asked).await?;
        let mut retried_network = false;
        loop {
            let resp = match self.fetch_once(method, &url, &key, json.as_deref()).await {
                Ok(r) => r,
                Err(NoResponse::Timeout) => return Err(TransportError::Timeout),
                Err(NoResponse::Network(detail)) => {
                    // Only the browser saying so is offline: a request that
                    // fails while it is online is an error with its code.
                    if !navigator::online() {
                        return Err(TransportError::Unreachable(detail));
                    }
                    // A pairing code works once: if the first POST got
                    // through and only its answer was lost, a retry would
                    // only hear "used".
                    if !retried_network && path_and_query != http::PAIR_PATH {
                        retried_network = true;
                        gloo_timers::future::TimeoutFuture::new(RETRY_MS).await;
                        continue;
                    }
                    return Err(TransportError::NoServer(format!(
                        "{UNREACHABLE_REASON}: {detail}"
                    )));
                }
            };
            let (status, text) = self.read(resp).await?;
            if (200..300).contains(&status.0) {
                return serde_json::from_str(&text).map_err(http::unreadable);
            }
            if status.0 == 401 && !asked && self.has_callback() {
                // Once per request: the callback may have a fresh key.
                asked = true;
                if self.refresh_key().await? {
                    key = self.key(&mut asked).await?;
                    continue;
                }
            }
            return Err(error_for(status.0, &status.1, &text));
        }
    }

    async fn fetch_once(
        &self,
        method: &str,
        url: &str,
        key: &str,
        json: Option<&str>,
    ) -> Result<(Response, AbortController, JsValue), NoResponse> {
        let net = |e: JsValue| NoResponse::Network(describe(&e));
        let headers = self.headers(key, "application/json").map_err(net)?;
        let init = RequestInit::new();
        init.set_method(method);
        if let Some(json) = json {
            headers
                .set("content-type", "application/json")
                .map_err(net)?;
            init.set_body(&JsValue::from_str(json));
        }
        init.set_headers(&headers);
        let controller = AbortController::new().map_err(net)?;
        init.set_signal(Some(&controller.signal()));
        let c = controller.clone();
        let on_timeout = Closure::once_into_js(move || c.abort());
        let timer = set_timeout(on_timeout.unchecked_ref(), self.timeout_ms as i32);
        match JsFuture::from(fetch_with_init(url, &init)).await {
            Ok(r) => Ok((r.unchecked_into(), controller, timer)),
            Err(e) => {
                clear_timeout(&timer);
                Err(if controller.signal().aborted() {
                    NoResponse::Timeout
                } else {
                    // fetch rejects with a TypeError when the network fails
                    // or the browser refuses the response (CORS).
                    NoResponse::Network(describe(&e))
                })
            }
        }
    }

    /// The status, headers and body text of a response.
    async fn read(
        &self,
        (resp, controller, timer): (Response, AbortController, JsValue),
    ) -> Result<((u16, Headers), String), TransportError> {
        let text = match resp.text().map(JsFuture::from) {
            Ok(f) => f.await,
            Err(e) => Err(e),
        };
        clear_timeout(&timer);
        let text = match text {
            Ok(t) => t.as_string().unwrap_or_default(),
            Err(_) if controller.signal().aborted() => return Err(TransportError::Timeout),
            Err(e) => {
                return Err(TransportError::Server {
                    status: 0,
                    message: format!("connection broke while reading: {}", describe(&e)),
                })
            }
        };
        Ok(((resp.status(), resp.headers()), text))
    }
}

fn describe(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
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

/// Aborts a `fetch` when dropped: the live channel's stream closes when the
/// scheduler lets go of it.
struct AbortOnDrop(AbortController);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FetchTransport {
    /// The headers of every request: the key, the branch and terminal it
    /// is meant for, and what it accepts.
    fn headers(&self, key: &str, accept: &str) -> Result<Headers, JsValue> {
        let headers = Headers::new()?;
        // No key: `POST /v1/pair`, which a key-less transport sends.
        if !key.is_empty() {
            headers.set("authorization", &format!("Bearer {key}"))?;
        }
        // None yet while pairing: `whoami` asks which branch it is.
        if !self.branch.is_empty() {
            headers.set(BRANCH_HEADER, &self.branch)?;
        }
        if let Some(t) = &self.terminal {
            headers.set(TERMINAL_HEADER, t)?;
        }
        headers.set("accept", accept)?;
        Ok(headers)
    }

    /// One connection of the live channel: `fetch` with the key in
    /// `Authorization` (the browser's `EventSource` cannot send it, and a
    /// key in the URL would end up in logs), the body read as a stream.
    async fn listen_events(&self, sink: &PokeSink) -> Result<ChannelEnd, JsValue> {
        if !navigator::online() {
            return Ok(ChannelEnd::Failed("the browser is offline".into()));
        }
        let mut asked = false;
        let Ok(key) = self.key(&mut asked).await else {
            return Ok(ChannelEnd::Refused {
                status: 401,
                retry_after_ms: None,
            });
        };
        let headers = self.headers(&key, "text/event-stream")?;
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_headers(&headers);
        let controller = AbortController::new()?;
        init.set_signal(Some(&controller.signal()));
        let _abort = AbortOnDrop(controller);
        let url = format!("{}{}", self.base, http::EVENTS_PATH);
        let resp: Response = JsFuture::from(fetch_with_init(&url, &init))
            .await?
            .unchecked_into();
        if !resp.ok() {
            let retry_after_ms =
                http::retry_after_ms(resp.headers().get("retry-after").ok().flatten().as_deref());
            return Ok(ChannelEnd::Refused {
                status: resp.status(),
                retry_after_ms,
            });
        }
        let body = Reflect::get(&resp, &"body".into())?;
        if body.is_null() || body.is_undefined() {
            return Ok(ChannelEnd::Failed("no response body".into()));
        }
        let get_reader: Function = Reflect::get(&body, &"getReader".into())?.dyn_into()?;
        let reader = get_reader.call0(&body)?;
        let read: Function = Reflect::get(&reader, &"read".into())?.dyn_into()?;
        loop {
            let next: Promise = read.call0(&reader)?.dyn_into()?;
            let chunk = JsFuture::from(next).await?;
            if Reflect::get(&chunk, &"done".into())?.is_truthy() {
                return Ok(ChannelEnd::Closed);
            }
            let bytes = js_sys::Uint8Array::new(&Reflect::get(&chunk, &"value".into())?).to_vec();
            if !sink.feed(&bytes) {
                return Ok(ChannelEnd::Failed("unreadable event stream".into()));
            }
        }
    }
}

impl PokeChannel for FetchTransport {
    fn listen<'a>(&'a self, sink: &'a PokeSink) -> HostFuture<'a, ChannelEnd> {
        Box::pin(async move {
            self.listen_events(sink)
                .await
                .unwrap_or_else(|e| ChannelEnd::Failed(describe(&e)))
        })
    }
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

    async fn whoami(&self) -> Result<KeyIdentity, TransportError> {
        self.send("GET", http::WHOAMI_PATH, None::<&()>).await
    }

    async fn pair(&self, request: PairRequest) -> Result<PairResponse, TransportError> {
        self.send("POST", http::PAIR_PATH, Some(&request)).await
    }
}
