//! tidesync's native Node addon: the core's engine on a SQLCipher file,
//! over HTTP, for Node and Electron's main process (N-API, so one `.node`
//! loads in both without a rebuild).
//!
//! This crate is a thin translation. Commands arrive as the JSON of the
//! core's [`Command`] and run through [`tidesync::client::execute`], the
//! same function the browser package calls; the sync scheduler is the
//! core's [`scheduler::run_live`] with a tokio timer and the HTTP
//! transport's live channel; errors leave as the JSON
//! of a [`ClientError`] (`{"code","message"}`), which `index.js` turns into
//! a `TideSyncError`. The JavaScript API itself (the same as the Wasm
//! package's) is in `index.js` and `index.d.ts`.
//!
//! The `credentials` option is the HTTP transport's [`KeyCallback`]: when
//! the transport needs a key it calls the JS function (wrapped by
//! `index.js`, see [`JsCredentials`]) on the JS thread and awaits its
//! promise; what is asked when is the transport's, as in the browser's.

mod keychain;
mod scoring;

use scoring::{JsScorer, ScoreFn};

use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::StreamExt;
use napi::bindgen_prelude::{Buffer, Promise, Status};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidesync::client::scheduler::{self, HostFuture, SchedulerHost};
use tidesync::client::{self, execute, ClientError, Command};
use tidesync::crypto::KdfParams;
use tidesync::engine::Engine;
use tidesync::env::{Environment, SystemEnv};
use tidesync::error_code::ErrorCode;
use tidesync::migrate::FieldMigration;
use tidesync::protocol::OpId;
use tidesync::status::Filter;
use tidesync::ConflictPolicy;
use tidesync_http_client::{HttpTransport, KeyAnswer, KeyCallback};
use tidesync_sqlcipher::{KeySource, SqlCipherStore};
use zeroize::Zeroizing;

type NodeEngine = Engine<SqlCipherStore, HttpTransport, SystemEnv>;

/// The event callback: one JSON array of core `Event`s per call. Weak, so
/// an open client does not keep a Node process alive by itself.
type EventSink = ThreadsafeFunction<String, (), String, Status, false, true>;

/// The `credentials` option as `index.js` wraps it: called with nothing,
/// it always resolves, with the JSON `{"key": string | null}` or `{"error":
/// "threw: …"}`. Weak, as [`EventSink`].
type CredentialsFn = ThreadsafeFunction<(), Promise<String>, (), Status, false, true>;

/// The app's `credentials` callback, asked by the transport for the
/// current key. The key is never logged: it goes from the answer to the
/// transport only.
struct JsCredentials(CredentialsFn);

/// What [`CredentialsFn`] resolves with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsAnswer {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl KeyCallback for JsCredentials {
    fn current_key(&self) -> Pin<Box<dyn Future<Output = KeyAnswer> + Send + '_>> {
        Box::pin(async move {
            let failed = |what: String| format!("options.credentials() {what}");
            let promise = self
                .0
                .call_async_catch(())
                .await
                .map_err(|e| failed(format!("could not be called: {}", e.reason)))?;
            let json = promise
                .await
                .map_err(|e| failed(format!("rejected: {}", e.reason)))?;
            let answer: CredentialsAnswer = serde_json::from_str(&json)
                .map_err(|_| failed("gave an answer index.js did not make".into()))?;
            match answer.error {
                Some(what) => Err(failed(what)),
                None => Ok(answer.key),
            }
        })
    }
}

/// `open`'s options (the key travels separately, see [`key_source`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenOptions {
    path: String,
    server_url: String,
    /// The terminal's key. Optional once the store holds one (an encrypted
    /// store keeps the key it was opened with, see `remember_key`).
    #[serde(default)]
    api_key: Option<String>,
    /// A one-time pairing code, redeemed for the key (`POST /v1/pair`).
    #[serde(default)]
    pairing_code: Option<String>,
    /// Optional once the store was opened (or paired by its key) once.
    #[serde(default)]
    terminal_id: Option<String>,
    #[serde(default)]
    branch_id: Option<String>,
    /// Keep `api_key` in the encrypted store (default true; `false`
    /// removes a kept one).
    remember_key: Option<bool>,
    #[serde(default)]
    policies: BTreeMap<String, ConflictPolicy>,
    /// What a collection does with a write its scorer flags.
    #[serde(default)]
    review: BTreeMap<String, tidesync::scoring::ReviewPolicy>,
    auto_sync: Option<bool>,
    pull_interval_ms: Option<u32>,
    /// Keep the live channel open (`GET /v1/events`; default true).
    live: Option<bool>,
    /// Cap on attempts before a mutation becomes a dead letter.
    max_attempts: Option<u32>,
    /// The app's payload schema version (default 1).
    schema_version: Option<u32>,
    /// Steps that carry queued mutations forward to `schema_version`.
    #[serde(default)]
    migrations: Vec<FieldMigration>,
    /// The server's rules file, checked before a write is queued.
    #[serde(default)]
    rules: tidesync::rules::Rules,
    /// Backoff between delivery attempts.
    #[serde(default)]
    retry: tidesync::client::RetryOptions,
    /// A cap on upload bytes per second.
    max_upload_bytes_per_sec: Option<u64>,
}

fn js_error(e: ClientError) -> napi::Error {
    let body = serde_json::json!({ "code": e.code, "message": e.message });
    napi::Error::new(Status::GenericFailure, body.to_string())
}

fn bad_argument(message: impl Into<String>) -> napi::Error {
    js_error(ClientError::bad_argument(message))
}

/// Where `open`'s key comes from: material in hand, or the OS keychain
/// (`kind` `keychain`, `key` the JSON `{"service", "account"}`).
enum KeyArg {
    Source(KeySource),
    Keychain { service: String, account: String },
}

impl KeyArg {
    fn parse(kind: &str, key: Option<Buffer>) -> napi::Result<KeyArg> {
        if kind != "keychain" {
            return key_source(kind, key).map(KeyArg::Source);
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Names {
            service: String,
            account: String,
        }
        let names: Names = key
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or_else(|| bad_argument("key.keychain must name a service and an account"))?;
        if names.service.is_empty() || names.account.is_empty() {
            return Err(bad_argument(
                "key.keychain.service and .account must not be empty",
            ));
        }
        Ok(KeyArg::Keychain {
            service: names.service,
            account: names.account,
        })
    }
}

/// The key material named by `kind` (`plaintext`, `passphrase`, `hostKey`).
fn key_source(kind: &str, key: Option<Buffer>) -> napi::Result<KeySource> {
    let bytes = key.map(|b| Zeroizing::new(b.to_vec()));
    match (kind, bytes) {
        ("plaintext", None) => Ok(KeySource::Plain),
        ("passphrase", Some(b)) => {
            let p = String::from_utf8(b.to_vec())
                .map_err(|_| bad_argument("key.passphrase is not valid UTF-8"))?;
            if p.is_empty() {
                return Err(bad_argument("key.passphrase is empty"));
            }
            Ok(KeySource::Passphrase {
                passphrase: Zeroizing::new(p),
                kdf: KdfParams::production(),
            })
        }
        ("hostKey", Some(b)) if b.len() >= 16 => Ok(KeySource::HostKey(b)),
        ("hostKey", Some(b)) => Err(bad_argument(format!(
            "key.hostKey has {} bytes; at least 16 are needed",
            b.len()
        ))),
        _ => Err(bad_argument(
            "key must be {passphrase}, {hostKey} or {plaintext: true}",
        )),
    }
}

/// Timer and probe of a Node host.
struct NodeHost {
    transport: HttpTransport,
}

impl SchedulerHost for NodeHost {
    fn sleep(&self, ms: u64) -> HostFuture<'_, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }

    fn probe(&self) -> HostFuture<'_, bool> {
        Box::pin(self.transport.probe())
    }
}

struct Inner {
    engine: Arc<NodeEngine>,
    /// The engine's transport (a clone: they share the key held).
    transport: HttpTransport,
    path: String,
    /// `identity()`'s JSON: the terminal and branch, whether the key is kept.
    identity: String,
    alive: Arc<AtomicBool>,
    wake: Mutex<Option<UnboundedSender<()>>>,
}

impl Inner {
    fn live(&self) -> napi::Result<&Arc<NodeEngine>> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(&self.engine)
        } else {
            Err(js_error(ClientError::new(
                ErrorCode::InvalidState,
                "this TideSync is closed",
            )))
        }
    }

    fn wake(&self) {
        if let Some(w) = self.wake.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = w.unbounded_send(());
        }
    }

    /// An explicit `syncNow()` while sync is paused on an error the app may
    /// have fixed, as the browser's: a server that could not be reached is
    /// tried again at once; refused credentials are asked of the
    /// `credentials` callback again, and sync resumes at once if it gives
    /// another key.
    async fn before_sync_now(&self, engine: &NodeEngine) {
        let code = engine.status().await.last_error.map(|(c, _)| c);
        let resume = match code {
            Some(ErrorCode::SyncUnreachable) => true,
            Some(ErrorCode::SyncUnauthorized) => {
                self.transport.refresh_key().await.unwrap_or(false)
            }
            _ => false,
        };
        if resume {
            engine.credentials_changed().await;
        }
    }

    fn shutdown(&self) {
        self.alive.store(false, Ordering::SeqCst);
        // Dropping the sender ends the scheduler's loop.
        self.wake.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// One open local database and its sync (the native half of `TideSync`).
#[napi]
pub struct NativeClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NativeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeClient")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

#[napi]
impl NativeClient {
    /// Opens (or creates) the store at `options.path`. `options` is JSON;
    /// `keyKind` is `plaintext`, `passphrase` (UTF-8 bytes) or `hostKey`.
    /// `onEvents` receives each batch of events as a JSON array;
    /// `credentials`, if given, the app's callback as `index.js` wraps it
    /// (see [`CredentialsFn`]).
    #[napi(factory)]
    pub async fn open(
        options: String,
        key_kind: String,
        key: Option<Buffer>,
        on_events: EventSink,
        credentials: Option<CredentialsFn>,
    ) -> napi::Result<NativeClient> {
        let o: OpenOptions =
            serde_json::from_str(&options).map_err(|e| bad_argument(format!("options: {e}")))?;
        if o.path.is_empty() {
            return Err(bad_argument("options.path is empty"));
        }
        let key = KeyArg::parse(&key_kind, key)?;
        // Checked before the store is opened: a bad option creates nothing.
        let env = SystemEnv;
        let client_id = OpId::from_parts(env.now_ms(), u128::from(env.random_u64())).0;
        let (mut config, migrations) = client::EngineSettings {
            policies: o.policies,
            review: o.review,
            max_attempts: o.max_attempts,
            schema_version: o.schema_version,
            migrations: o.migrations,
            rules: o.rules,
            retry: o.retry,
            max_upload_bytes_per_sec: o.max_upload_bytes_per_sec,
            ..Default::default()
        }
        .into_config(client_id)
        .map_err(js_error)?;
        let path = o.path.clone();
        let store = tokio::task::spawn_blocking(move || {
            let source =
                match key {
                    KeyArg::Source(source) => source,
                    // The keychain may block (D-Bus): here, off the JS thread.
                    KeyArg::Keychain { service, account } => KeySource::HostKey(
                        keychain::host_key(&service, &account, std::path::Path::new(&path))?,
                    ),
                };
            SqlCipherStore::open_keyed(&path, source)
                .map_err(|e| ClientError::new(e.code(), e.to_string()))
        })
        .await
        .map_err(|e| js_error(ClientError::internal(e)))?
        .map_err(js_error)?;
        // The terminal and branch: the store's, else the key's (pairing).
        let settled = client::settle_with(
            &store,
            client::Asked {
                terminal_id: o.terminal_id,
                branch_id: o.branch_id,
                api_key: o.api_key,
                pairing_code: o.pairing_code,
                remember_key: o.remember_key.unwrap_or(true),
            },
            |key| HttpTransport::new(&o.server_url, key, ""),
            env.now_ms(),
        )
        .await
        .map_err(js_error)?;
        config.terminal_id = settled.terminal_id.clone();
        config.branch_id = settled.branch_id.clone();
        // The key given or kept, if any, first; then the callback's.
        let mut transport = HttpTransport::new(
            &o.server_url,
            settled.api_key.clone().unwrap_or_default(),
            &config.branch_id,
        )
        .with_terminal(config.terminal_id.clone());
        if let Some(c) = credentials {
            transport = transport.with_key_callback(Arc::new(JsCredentials(c)));
        }
        let inner_transport = transport.clone();
        let identity = serde_json::json!({
            "terminal_id": settled.terminal_id,
            "branch_id": settled.branch_id,
            "key_stored": settled.key_stored,
        })
        .to_string();
        let engine = Engine::open_with_migrations(
            store,
            transport.clone(),
            env,
            config,
            FieldMigration::boxed(migrations),
        )
        .await
        .map_err(|e| js_error(e.into()))?;
        let engine = Arc::new(engine);
        let alive = Arc::new(AtomicBool::new(true));

        // Events: batched, as JSON, to the JS side.
        let mut events = engine.subscribe(Filter::All);
        tokio::spawn(async move {
            while let Some(first) = events.next().await {
                let mut batch = vec![first];
                while let Ok(e) = events.try_recv() {
                    batch.push(e);
                }
                if let Ok(json) = serde_json::to_string(&batch) {
                    on_events.call(json, ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        });

        let (tx, rx) = unbounded();
        let auto_sync = o.auto_sync.unwrap_or(true);
        if auto_sync {
            let engine = engine.clone();
            let alive = alive.clone();
            let interval = u64::from(scheduler::pull_interval_ms(o.pull_interval_ms));
            let live = o.live.unwrap_or(true);
            tokio::spawn(async move {
                let host = NodeHost { transport };
                // The live channel is the transport's (`GET /v1/events`);
                // what a poke does is the core scheduler's.
                let channel = live.then_some(&host.transport);
                scheduler::run_live(&engine, &host, channel, rx, interval, || {
                    alive.load(Ordering::SeqCst)
                })
                .await;
            });
        }
        Ok(NativeClient {
            inner: Arc::new(Inner {
                engine,
                transport: inner_transport,
                path: o.path,
                identity,
                alive,
                wake: Mutex::new(auto_sync.then_some(tx)),
            }),
        })
    }

    /// Runs one command (the JSON of the core's `Command`); resolves with
    /// its JSON answer.
    #[napi]
    pub async fn call(&self, command: String) -> napi::Result<String> {
        let command: Command =
            serde_json::from_str(&command).map_err(|e| bad_argument(format!("command: {e}")))?;
        let engine = self.inner.live()?.clone();
        let wakes = command.wakes_sync();
        if matches!(command, Command::SyncNow) {
            self.inner.before_sync_now(&engine).await;
        }
        let answer = execute(&engine, command).await.map_err(js_error)?;
        if wakes {
            self.inner.wake();
        }
        serde_json::to_string(&answer).map_err(|e| js_error(ClientError::internal(e)))
    }

    /// Tells the engine whether the host is online (Electron's `net`
    /// events); coming online wakes the sync.
    #[napi]
    pub async fn set_online(&self, online: bool) -> napi::Result<()> {
        let engine = self.inner.live()?.clone();
        engine.set_online(online).await;
        if online {
            self.inner.wake();
        }
        Ok(())
    }

    /// Sets the engine's anomaly scorer: `model` (checked by `index.js`)
    /// and the wrapped `score`; `None`: no scorer.
    #[napi]
    pub fn set_scorer(&self, model: Option<String>, score: Option<ScoreFn>) -> napi::Result<()> {
        let engine = self.inner.live()?;
        let scorer: Option<Arc<dyn tidesync::scoring::Scorer>> = match (model, score) {
            (Some(model), Some(score)) if tidesync::protocol::valid_model_id(&model) => {
                Some(Arc::new(JsScorer { model, score }))
            }
            (None, None) => None,
            _ => return Err(bad_argument("scorer must be {model, score(input)} or null")),
        };
        engine.set_scorer(scorer);
        Ok(())
    }

    /// The terminal and branch the store belongs to, as JSON
    /// (`{terminal_id, branch_id, key_stored}`).
    #[napi]
    pub fn identity(&self) -> String {
        self.inner.identity.clone()
    }

    /// Stops the sync and closes the database. Later calls fail with
    /// `INVALID_STATE`.
    #[napi]
    pub fn close(&self) {
        self.inner.shutdown();
        self.inner.engine.store().close();
    }

    /// Closes, then deletes the database, its WAL and its key envelope:
    /// everything not yet synced is lost.
    #[napi]
    pub async fn wipe(&self) -> napi::Result<()> {
        self.close();
        let path = self.inner.path.clone();
        SqlCipherStore::destroy(&path).map_err(|e| js_error(e.into()))
    }
}

/// A live query's result, kept by the core (`tidesync::client::live_query`);
/// node/index.js runs the loop: it reads the page with [`LiveView::read`]'s
/// command, hands the answer to `set` and each event to `apply` (or only to
/// `touches` while a read is in flight).
#[napi]
#[derive(Debug)]
pub struct LiveView {
    query: Mutex<tidesync::client::live_query::LiveQuery>,
}

fn event_of(json: &str) -> Option<tidesync::status::Event> {
    serde_json::from_str(json).ok()
}

#[napi]
impl LiveView {
    /// `spec` is the query as JSON: `{collection, after?, limit?}`.
    #[napi(constructor)]
    pub fn new(spec: String) -> napi::Result<Self> {
        let spec = serde_json::from_str(&spec).map_err(|e| bad_argument(format!("query: {e}")))?;
        let query = tidesync::client::live_query::LiveQuery::new(spec).map_err(js_error)?;
        Ok(LiveView {
            query: Mutex::new(query),
        })
    }

    /// The command that reads the page, as JSON.
    #[napi]
    pub fn read(&self) -> String {
        let command = self.lock().read();
        serde_json::to_string(&command).unwrap_or_default()
    }

    /// Takes a read's answer; whether the rows changed.
    #[napi]
    pub fn set(&self, page: String) -> napi::Result<bool> {
        let page = serde_json::from_str(&page).map_err(|e| bad_argument(format!("page: {e}")))?;
        Ok(self.lock().set(page))
    }

    /// Whether an event (JSON) may change the result.
    #[napi]
    pub fn touches(&self, event: String) -> bool {
        event_of(&event).is_some_and(|e| self.lock().touches(&e))
    }

    /// Applies an event (JSON): `unchanged`, `changed` or `requery`.
    #[napi]
    pub fn apply(&self, event: String) -> String {
        use tidesync::client::live_query::Update;
        let Some(event) = event_of(&event) else {
            return "unchanged".into();
        };
        match self.lock().apply(&event) {
            Update::Unchanged => "unchanged",
            Update::Changed => "changed",
            Update::Requery => "requery",
        }
        .into()
    }

    /// The rows, as JSON.
    #[napi]
    pub fn rows(&self) -> String {
        serde_json::to_string(self.lock().rows()).unwrap_or_else(|_| "[]".into())
    }
}

impl LiveView {
    fn lock(&self) -> std::sync::MutexGuard<'_, tidesync::client::live_query::LiveQuery> {
        self.query.lock().unwrap_or_else(|p| p.into_inner())
    }
}
