//! [`HttpTransport`]: the core's [`Transport`] over HTTP (reqwest).
//!
//! The key comes from the one given, or from a [`KeyCallback`] (the Node
//! addon's `credentials` option) before a request when none is held and
//! again after a 401 (once per request: if it gives another key the request
//! is retried, else the 401 stands), as the browser package's does.
//!
//! A request that reaches no server is told apart by how it failed
//! ([`no_answer`]): the host has no network (`ENETUNREACH`, `ENETDOWN`, or
//! a failed name lookup with no route off the machine) is
//! [`TransportError::Unreachable`] (`SYNC_OFFLINE`); anything else while the
//! host is online (connection refused, a failed name lookup, a URL this
//! build cannot speak, e.g. `https` without TLS) is tried once more and then
//! [`TransportError::NoServer`] (`SYNC_UNREACHABLE`, an error with its
//! reason). A server on a loopback address is never offline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header;
use serde::de::DeserializeOwned;
use tidesync::client::live::{ChannelEnd, PokeChannel, PokeSink};
use tidesync::client::scheduler::HostFuture;
use tidesync::transport::http::{self, BRANCH_HEADER, TERMINAL_HEADER};
use tidesync::{
    ChangesPage, ChangesRequest, ErrorCode, KeyIdentity, PairRequest, PairResponse, PushRequest,
    PushResponse, ReconcileRequest, ReconcileResponse, SnapshotPage, SnapshotRequest, Transport,
    TransportError,
};

/// What a [`KeyCallback`] answers: the current key (`None`: it has none
/// yet), or why it failed (a message for the status, never the key).
pub type KeyAnswer = Result<Option<String>, String>;

/// Gives the terminal's current API key when asked: the host's credentials
/// callback (it may refresh or rotate the key). Asked before a request when
/// no key is held, after a 401 (once per request), and by
/// [`HttpTransport::refresh_key`].
pub trait KeyCallback: Send + Sync {
    /// The current key.
    fn current_key(&self) -> Pin<Box<dyn Future<Output = KeyAnswer> + Send + '_>>;
}

/// The key held and the callback that gives a new one, shared by the
/// transport's clones (the scheduler's, the live channel's, the binding's).
#[derive(Default)]
struct Credentials {
    key: Mutex<Option<String>>,
    callback: Option<Arc<dyn KeyCallback>>,
}

impl Credentials {
    fn held(&self) -> Option<String> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A sync server reached over HTTP with one terminal's key.
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    credentials: Arc<Credentials>,
    branch: String,
    terminal: Option<String>,
    client: reqwest::Client,
}

/// Never the key.
impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .field("key", &self.credentials.held().map(|_| "<secret>"))
            .field("has_callback", &self.credentials.callback.is_some())
            .field("branch", &self.branch)
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

/// How long to wait before the one more try of a request that reached no
/// server while the host is online (the browser package waits as long).
const RETRY_MS: u64 = 300;

/// How a request that got no answer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The host has no network: offline.
    Offline,
    /// The host is online but no server answered: an error to show.
    NoServer,
}

/// The kind of a connect failure that got no answer, from the OS error it
/// carries (`kind`, if any), whether the server's host is a loopback
/// address, and (asked only when it matters) whether the host has a route
/// off the machine.
pub(crate) fn classify(
    kind: Option<std::io::ErrorKind>,
    loopback: bool,
    has_route: impl FnOnce() -> bool,
) -> Failure {
    use std::io::ErrorKind as K;
    if loopback {
        return Failure::NoServer;
    }
    match kind {
        Some(K::NetworkUnreachable | K::NetworkDown) => Failure::Offline,
        // The network carried the attempt: the server's host refused it,
        // reset it or is not on its link.
        Some(
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::HostUnreachable
            | K::AddrNotAvailable
            | K::TimedOut,
        ) => Failure::NoServer,
        // A failed name lookup and the rest: offline only if the host has
        // no route anywhere (no network interface up but loopback).
        _ if has_route() => Failure::NoServer,
        _ => Failure::Offline,
    }
}

/// Whether the host has a route off the machine, IPv4 or IPv6: a UDP
/// socket "connected" to a documentation address (RFC 5737, RFC 3849). That
/// only looks the route up; no packet is sent.
pub fn host_has_route() -> bool {
    use std::net::UdpSocket;
    [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")]
        .into_iter()
        .any(|(local, remote)| {
            UdpSocket::bind(local)
                .and_then(|s| s.connect(remote))
                .is_ok()
        })
}

/// Whether `base` (a URL) names a loopback host.
fn is_loopback(base: &str) -> bool {
    let Some(host) = reqwest::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// The OS error a failed request carries, if any.
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// A failed request's error with its causes (reqwest's own message stops
/// at "error sending request"). No key: it travels in a header.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !out.ends_with(&part) {
            out.push_str(": ");
            out.push_str(&part);
        }
        source = s.source();
    }
    out
}

/// Why a request got no answer, for the status.
fn reason(kind: Option<std::io::ErrorKind>) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        Some(K::ConnectionRefused) => "the server refused the connection",
        Some(K::ConnectionReset | K::ConnectionAborted) => "the connection was reset",
        Some(K::HostUnreachable) => "the server's host is unreachable",
        Some(K::NetworkUnreachable | K::NetworkDown) => "the host has no network",
        _ => "the server could not be reached (DNS, TLS or connection failure)",
    }
}

/// Why a request got no answer.
enum NoAnswer {
    Timeout,
    /// Sent, but the connection broke: it may have been processed.
    Broken(String),
    /// Not delivered: offline, or no server (see [`classify`]).
    Failed(Failure, String),
}

impl HttpTransport {
    /// A transport to `base_url` (e.g. `http://127.0.0.1:8080`) presenting
    /// `key` for `branch` (an empty key: none held, see
    /// [`with_key_callback`](Self::with_key_callback)). Requests time out
    /// after 30 s.
    pub fn new(
        base_url: impl Into<String>,
        key: impl Into<String>,
        branch: impl Into<String>,
    ) -> Self {
        Self::with_timeout(base_url, key, branch, Duration::from_secs(30))
    }

    /// As [`HttpTransport::new`] with a request timeout.
    pub fn with_timeout(
        base_url: impl Into<String>,
        key: impl Into<String>,
        branch: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a client without TLS always builds");
        let key = key.into();
        HttpTransport {
            base: base_url.into().trim_end_matches('/').to_owned(),
            credentials: Arc::new(Credentials {
                key: Mutex::new((!key.is_empty()).then_some(key)),
                callback: None,
            }),
            branch: branch.into(),
            terminal: None,
            client,
        }
    }

    /// Takes the key from `callback` too: before a request when none is
    /// held, and again after a 401 (once per request; if it gives another
    /// key the request is sent again with it, else the 401 stands). The
    /// key given to [`new`](Self::new), if any, is tried first.
    pub fn with_key_callback(mut self, callback: Arc<dyn KeyCallback>) -> Self {
        self.credentials = Arc::new(Credentials {
            key: Mutex::new(self.credentials.held()),
            callback: Some(callback),
        });
        self
    }

    /// States `terminal` in every request (`x-tidesync-terminal`): a key
    /// issued for another terminal is then refused at first contact
    /// (`SYNC_FORBIDDEN`) instead of dead-lettering every mutation.
    pub fn with_terminal(mut self, terminal: impl Into<String>) -> Self {
        self.terminal = Some(terminal.into());
        self
    }

    /// Points the transport at another server (e.g. after a restart on a new port).
    pub fn set_base_url(&mut self, base_url: impl Into<String>) {
        self.base = base_url.into().trim_end_matches('/').to_owned();
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Replaces the key held (this transport's clones see it too).
    pub fn set_key(&self, key: impl Into<String>) {
        let key = key.into();
        *self
            .credentials
            .key
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (!key.is_empty()).then_some(key);
    }

    /// Whether it was given a [`KeyCallback`].
    pub fn has_key_callback(&self) -> bool {
        self.credentials.callback.is_some()
    }

    /// Asks the [`KeyCallback`] for the current key and keeps it; `Ok(true)`
    /// if it differs from the key held before. A callback that gives no key
    /// leaves the held one; one that fails is `SYNC_UNAUTHORIZED` with its
    /// message.
    pub async fn refresh_key(&self) -> Result<bool, TransportError> {
        let Some(callback) = &self.credentials.callback else {
            return Ok(false);
        };
        let key = callback
            .current_key()
            .await
            .map_err(|message| TransportError::Unauthorized {
                code: ErrorCode::SyncUnauthorized,
                message,
            })?
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return Ok(false);
        };
        let mut held = self
            .credentials
            .key
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let changed = held.as_deref() != Some(key.as_str());
        *held = Some(key);
        Ok(changed)
    }

    /// The key to send: the one held, else the callback's.
    async fn key(&self, asked: &mut bool) -> Result<String, TransportError> {
        if let Some(k) = self.credentials.held() {
            return Ok(k);
        }
        if self.has_key_callback() {
            *asked = true;
            self.refresh_key().await?;
        }
        self.credentials
            .held()
            .ok_or_else(|| TransportError::Unauthorized {
                code: ErrorCode::SyncUnauthorized,
                message: if self.has_key_callback() {
                    "no credentials yet: options.credentials() gave no API key".into()
                } else {
                    "no credentials: open() was given neither apiKey nor credentials".into()
                },
            })
    }

    /// Whether the server answers `GET /health` with a 2xx within 5 s: the
    /// scheduler's probe while offline.
    pub async fn probe(&self) -> bool {
        self.client
            .get(format!("{}{}", self.base, http::HEALTH_PATH))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// A request with the key only.
    fn keyed(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    /// A request with the key, the branch and (if set) the terminal.
    fn request(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        let req = self
            .keyed(method, path, key)
            .header(BRANCH_HEADER, &self.branch);
        match &self.terminal {
            Some(t) => req.header(TERMINAL_HEADER, t),
            None => req,
        }
    }

    /// What a request that got no answer reports.
    fn no_answer(&self, e: &reqwest::Error) -> NoAnswer {
        if e.is_timeout() {
            return NoAnswer::Timeout;
        }
        // Not sent: no connection (refused, no route, a failed name
        // lookup) or a URL this build cannot speak.
        if e.is_connect() || e.is_builder() {
            let kind = io_kind(e);
            let failure = classify(kind, is_loopback(&self.base), host_has_route);
            return NoAnswer::Failed(failure, format!("{}: {}", reason(kind), describe(e)));
        }
        NoAnswer::Broken(describe(e))
    }

    /// Sends the request `build` makes with the key (`keyed`: the key held
    /// or the callback's; else none is needed), as described at the top.
    async fn send<T: DeserializeOwned>(
        &self,
        keyed: bool,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, TransportError> {
        let mut asked = false;
        let mut key = if keyed {
            self.key(&mut asked).await?
        } else {
            String::new()
        };
        let mut tried_again = false;
        loop {
            let resp = match build(&key).send().await {
                Ok(r) => r,
                Err(e) => match self.no_answer(&e) {
                    NoAnswer::Timeout => return Err(TransportError::Timeout),
                    NoAnswer::Broken(message) => {
                        return Err(TransportError::Server { status: 0, message })
                    }
                    NoAnswer::Failed(Failure::Offline, detail) => {
                        return Err(TransportError::Unreachable(detail))
                    }
                    NoAnswer::Failed(Failure::NoServer, detail) => {
                        // Not delivered, so safe to send again (a pairing
                        // code too): once, for a dropped connection.
                        if !tried_again {
                            tried_again = true;
                            tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                            continue;
                        }
                        return Err(TransportError::NoServer(detail));
                    }
                },
            };
            let status = resp.status();
            if status.is_success() {
                return resp.json().await.map_err(|e| {
                    if e.is_timeout() {
                        TransportError::Timeout
                    } else {
                        http::unreadable(e)
                    }
                });
            }
            if status.as_u16() == 401 && keyed && !asked && self.has_key_callback() {
                // Once per request: the callback may have a fresh key.
                asked = true;
                if self.refresh_key().await? {
                    key = self.key(&mut asked).await?;
                    continue;
                }
            }
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.bytes().await.unwrap_or_default();
            return Err(http::error_for_status(
                status.as_u16(),
                retry_after.as_deref(),
                &body,
            ));
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        self.send(true, |key| {
            self.request(reqwest::Method::POST, http::PUSH_PATH, key)
                .json(&request)
        })
        .await
    }

    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        let q = [
            ("since", request.since.0),
            ("limit", u64::from(request.limit)),
        ];
        self.send(true, |key| {
            self.request(reqwest::Method::GET, http::CHANGES_PATH, key)
                .query(&q)
        })
        .await
    }

    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        let mut q: Vec<(&str, String)> = vec![("limit", request.limit.to_string())];
        if let Some(after) = request.after {
            q.push(("after_collection", after.collection));
            q.push(("after_id", after.id));
        }
        self.send(true, |key| {
            self.request(reqwest::Method::GET, http::SNAPSHOT_PATH, key)
                .query(&q)
        })
        .await
    }

    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        self.send(true, |key| {
            self.request(reqwest::Method::POST, http::RECONCILE_PATH, key)
                .json(&request)
        })
        .await
    }

    /// Sends the key only, not the branch and terminal this transport was
    /// given: the answer is the key's identity even when they are wrong,
    /// and the caller compares.
    async fn whoami(&self) -> Result<KeyIdentity, TransportError> {
        self.send(true, |key| {
            self.keyed(reqwest::Method::GET, http::WHOAMI_PATH, key)
        })
        .await
    }

    /// `POST /v1/pair` with the code in the body and nothing else: no key
    /// (this transport may have none until it has redeemed the code), no
    /// branch or terminal header (the code names them).
    async fn pair(&self, request: PairRequest) -> Result<PairResponse, TransportError> {
        self.send(false, |_| {
            self.client
                .post(format!("{}{}", self.base, http::PAIR_PATH))
                .json(&request)
        })
        .await
    }
}

/// The live channel (`GET /v1/events`) for the core's scheduler: the body's
/// chunks go to the core's parser as they arrive.
impl PokeChannel for HttpTransport {
    fn listen<'a>(&'a self, sink: &'a PokeSink) -> HostFuture<'a, ChannelEnd> {
        Box::pin(async move {
            let mut asked = false;
            let Ok(key) = self.key(&mut asked).await else {
                return ChannelEnd::Refused {
                    status: 401,
                    retry_after_ms: None,
                };
            };
            let sent = self
                .request(reqwest::Method::GET, http::EVENTS_PATH, &key)
                .header(header::ACCEPT, "text/event-stream")
                // The stream is long: the core closes a silent one itself.
                .timeout(Duration::from_secs(86_400))
                .send()
                .await;
            let mut resp = match sent {
                Ok(r) => r,
                Err(e) => return ChannelEnd::Failed(describe(&e)),
            };
            let status = resp.status();
            if !status.is_success() {
                let retry_after_ms = http::retry_after_ms(
                    resp.headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()),
                );
                return ChannelEnd::Refused {
                    status: status.as_u16(),
                    retry_after_ms,
                };
            }
            loop {
                match resp.chunk().await {
                    Ok(Some(bytes)) => {
                        if !sink.feed(&bytes) {
                            return ChannelEnd::Failed("unreadable event stream".into());
                        }
                    }
                    Ok(None) => return ChannelEnd::Closed,
                    Err(e) => return ChannelEnd::Failed(e.to_string()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind as K;

    #[test]
    fn offline_only_without_a_network_and_never_for_loopback() {
        let never = || panic!("the route is not asked");
        assert_eq!(
            classify(Some(K::NetworkUnreachable), false, never),
            Failure::Offline
        );
        assert_eq!(
            classify(Some(K::NetworkDown), false, never),
            Failure::Offline
        );
        assert_eq!(
            classify(Some(K::ConnectionRefused), false, never),
            Failure::NoServer
        );
        assert_eq!(
            classify(Some(K::HostUnreachable), false, never),
            Failure::NoServer
        );
        // A failed name lookup: offline only with no route off the host.
        assert_eq!(classify(None, false, || true), Failure::NoServer);
        assert_eq!(classify(None, false, || false), Failure::Offline);
        assert_eq!(classify(Some(K::Other), false, || false), Failure::Offline);
        // Loopback needs no network.
        assert_eq!(
            classify(Some(K::NetworkUnreachable), true, never),
            Failure::NoServer
        );
        assert_eq!(classify(None, true, never), Failure::NoServer);
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://[::1]:9",
            "http://localhost:1",
            "http://LOCALHOST",
            "http://a.localhost",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "http://example.com",
            "http://[2001:db8::1]",
            "not a url",
            "http://localhost.example.com",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
