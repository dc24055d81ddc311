//! [`HttpTransport`]: the core's [`Transport`] over HTTP (reqwest).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header;
use serde::de::DeserializeOwned;
use tidesync::client::live::{ChannelEnd, PokeChannel, PokeSink};
use tidesync::client::scheduler::HostFuture;
use tidesync::transport::http::{self, BRANCH_HEADER, TERMINAL_HEADER};
use tidesync::{
    ChangesPage, ChangesRequest, KeyIdentity, PairRequest, PairResponse, PushRequest, PushResponse,
    ReconcileRequest, ReconcileResponse, SnapshotPage, SnapshotRequest, Transport, TransportError,
};

/// A sync server reached over HTTP with one terminal's key.
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    key: String,
    branch: String,
    terminal: Option<String>,
    client: reqwest::Client,
}

/// Never the key.
impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .field("key", &"<secret>")
            .field("branch", &self.branch)
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to `base_url` (e.g. `http://127.0.0.1:8080`) presenting
    /// `key` for `branch`. Requests time out after 30 s.
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
        HttpTransport {
            base: base_url.into().trim_end_matches('/').to_owned(),
            key: key.into(),
            branch: branch.into(),
            terminal: None,
            client,
        }
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
    fn keyed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// A request with the key, the branch and (if set) the terminal.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.keyed(method, path).header(BRANCH_HEADER, &self.branch);
        match &self.terminal {
            Some(t) => req.header(TERMINAL_HEADER, t),
            None => req,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, TransportError> {
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                TransportError::Timeout
            } else if e.is_connect() {
                TransportError::Unreachable(e.to_string())
            } else {
                // Sent, but the connection broke: it may have been processed.
                TransportError::Server {
                    status: 0,
                    message: e.to_string(),
                }
            }
        })?;
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
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.unwrap_or_default();
        Err(http::error_for_status(
            status.as_u16(),
            retry_after.as_deref(),
            &body,
        ))
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        self.send(
            self.request(reqwest::Method::POST, http::PUSH_PATH)
                .json(&request),
        )
        .await
    }

    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        let q = [
            ("since", request.since.0),
            ("limit", u64::from(request.limit)),
        ];
        self.send(
            self.request(reqwest::Method::GET, http::CHANGES_PATH)
                .query(&q),
        )
        .await
    }

    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        let mut q: Vec<(&str, String)> = vec![("limit", request.limit.to_string())];
        if let Some(after) = request.after {
            q.push(("after_collection", after.collection));
            q.push(("after_id", after.id));
        }
        self.send(
            self.request(reqwest::Method::GET, http::SNAPSHOT_PATH)
                .query(&q),
        )
        .await
    }

    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        self.send(
            self.request(reqwest::Method::POST, http::RECONCILE_PATH)
                .json(&request),
        )
        .await
    }

    /// Sends the key only, not the branch and terminal this transport was
    /// given: the answer is the key's identity even when they are wrong,
    /// and the caller compares.
    async fn whoami(&self) -> Result<KeyIdentity, TransportError> {
        self.send(self.keyed(reqwest::Method::GET, http::WHOAMI_PATH))
            .await
    }

    /// `POST /v1/pair` with the code in the body and nothing else: no key
    /// (this transport's may be a placeholder until it has one), no branch
    /// or terminal header (the code names them).
    async fn pair(&self, request: PairRequest) -> Result<PairResponse, TransportError> {
        self.send(
            self.client
                .post(format!("{}{}", self.base, http::PAIR_PATH))
                .json(&request),
        )
        .await
    }
}

/// The live channel (`GET /v1/events`) for the core's scheduler: the body's
/// chunks go to the core's parser as they arrive.
impl PokeChannel for HttpTransport {
    fn listen<'a>(&'a self, sink: &'a PokeSink) -> HostFuture<'a, ChannelEnd> {
        Box::pin(async move {
            let sent = self
                .request(reqwest::Method::GET, http::EVENTS_PATH)
                .header(header::ACCEPT, "text/event-stream")
                // The stream is long: the core closes a silent one itself.
                .timeout(Duration::from_secs(86_400))
                .send()
                .await;
            let mut resp = match sent {
                Ok(r) => r,
                Err(e) => return ChannelEnd::Failed(e.to_string()),
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
