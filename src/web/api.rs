//! The JavaScript API (wasm-bindgen): the one thin module between JS and the
//! core. Each method converts its arguments, runs one engine call (in this
//! tab if it leads, otherwise in the leading tab over the BroadcastChannel)
//! and maps errors to `{ code, message }` with a stable code.
//!
//! TypeScript declarations of every domain type are in the
//! `typescript_custom_section` below; methods name them instead of `any`.

use super::env::BrowserEnv;
use super::keys::KeySource;
use super::store::{IdbStore, OpenError};
use super::tabs::{self, Leadership, TabChannel};
use super::transport::FetchTransport;
use crate::crypto::KdfParams;
use crate::engine::{Engine, EngineConfig, EngineError, Resolution};
use crate::policy::ConflictPolicy;
use crate::protocol::{EntityKey, Fields, OpId};
use crate::status::{Event, Filter, Phase, Status};
use crate::store::StoreError;
use crate::throttle::ConnectionHint;
use crate::Environment;
use futures::channel::{mpsc, oneshot};
use futures::future::Either;
use futures::StreamExt;
use js_sys::{Function, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** An entity's fields: a JSON object. */
export type Fields = { [field: string]: Json };
/** Stable error codes of the engine and the protocol. */
export type ErrorCode =
  | "SYNC_UNAUTHORIZED" | "SYNC_FORBIDDEN" | "SYNC_RATE_LIMITED" | "SYNC_OFFLINE"
  | "SYNC_SERVER_ERROR" | "SNAPSHOT_FAILED" | "DELTA_FAILED" | "RECONCILE_FAILED"
  | "MANIFEST_TOO_LARGE" | "PAYLOAD_TOO_LARGE" | "EVENT_INVALID" | "EVENT_DUPLICATE"
  | "EVENT_IN_FLIGHT" | "STORAGE_FAILED" | "CONFLICT" | "NOT_FOUND" | "ALREADY_EXISTS"
  | "POLICY_VIOLATION" | "SCHEMA_UNSUPPORTED" | "OFFLINE_PRIMER_STALE"
  | "RETRIES_EXHAUSTED" | "STORE_CORRUPT" | "QUOTA_EXCEEDED" | "INVALID_STATE" | "INTERNAL";
/** Codes of errors thrown by this package: the engine's, and the browser store's. */
export type TideSyncErrorCode =
  | ErrorCode
  | "STORE_WRONG_KEY"      // the key or passphrase does not open this store (nothing changed)
  | "STORE_KEY_MISMATCH"   // encrypted store opened without a key, or another kind of key
  | "STORE_GONE"           // the database was deleted, evicted or closed
  | "BAD_ARGUMENT"         // an argument is not what the type says
  | "LEADER_UNAVAILABLE";  // no tab answered for the leader in time
/** What every rejected promise and thrown error of this package carries. */
export interface TideSyncError extends Error { code: TideSyncErrorCode; message: string; }

export type ConflictPolicy =
  | "last-write-wins" | "merge-three-way" | "manual-resolve" | "server-wins" | "append-only";

/** Key material for encryption at rest; the data key itself is random and stored only wrapped. */
export type KeyMaterial =
  | { passphrase: string }      // PBKDF2-SHA256, 600,000 iterations
  | { hostKey: Uint8Array }     // >= 16 bytes from the host (e.g. Electron safeStorage)
  | { webCrypto: true }         // a non-extractable AES-GCM key kept by the browser
  | { plaintext: true };        // no encryption

export interface OpenOptions {
  dbName: string;
  key: KeyMaterial;
  /** Base URL of the sync server; "" for the page's own origin. */
  serverUrl: string;
  apiKey: string;
  terminalId: string;
  branchId: string;
  policies?: { [collection: string]: ConflictPolicy };
  /** Sync in the background when leading (default true). */
  autoSync?: boolean;
  /** How often the leader pulls when idle (ms, default 30000). */
  pullIntervalMs?: number;
}

export interface Hlc { wall_ms: number; counter: number; node: number; }
export interface EntityKey { collection: string; id: string; }
export interface LocalEntity {
  collection: string; id: string; fields: Fields; deleted: boolean;
  server_version: number; updated_at: Hlc; pending: number; conflicted: boolean;
}
export interface EntityState {
  collection: string; id: string; version: number; fields: Fields; deleted: boolean;
  updated_at: Hlc; last_op: string | null;
}
export type MutationKind = "create" | "patch" | "delete" | "append";
export interface Mutation {
  op_id: string; client_id: string; terminal_id: string; branch_id: string;
  collection: string; entity_id: string; kind: MutationKind; payload?: Fields;
  base_version: number; hlc: Hlc; schema_version: number; checksum: string; offline: boolean;
}
export type OutboxState =
  | { state: "pending" }
  | { state: "dead_letter"; code: ErrorCode; message: string; at_ms: number };
export interface OutboxEntry {
  seq: number; mutation: Mutation; state: OutboxState; attempts: number;
  next_attempt_at: number; sent: boolean; last_error: [ErrorCode, string] | null;
  enqueued_at: number;
}
export interface ConflictRecord {
  key: EntityKey; base: EntityState | null; local: LocalEntity | null;
  server: EntityState | null; mutations: Mutation[]; fields: string[]; detected_at: number;
}
export type Resolution =
  | { choice: "local" } | { choice: "server" } | { choice: "edited"; fields: Fields };
export type Phase = "idle" | "syncing" | "offline" | "error";
export interface Status {
  phase: Phase; pending: number; conflicts: number; dead_letters: number;
  last_error: [ErrorCode, string] | null; stale: boolean;
  last_sync_at: number | null; drift_age_ms: number | null;
}
export interface Metrics {
  queued: number; synced: number; retries: number; conflicts: number; dead_letters: number;
  reconcile_runs: number; delta_runs: number; snapshot_pages: number;
  push_requests: number; last_push_latency_ms: number;
}
export interface SyncReport {
  sent: number; acknowledged: number; conflicts: number; dead_lettered: number;
  pulled: number; error: ErrorCode | null;
}
export type SyncEvent =
  | { type: "changed"; key: EntityKey; entity: LocalEntity | null }
  | { type: "status"; status: Status }
  | { type: "alert"; code: ErrorCode; key: EntityKey; op_id: string | null; message: string };
/** {} for everything, { collection } for one collection, { collection, id } for one entity. */
export interface SubscriptionFilter { collection?: string; id?: string; }
"#;

type WebEngine = Engine<IdbStore, FetchTransport, BrowserEnv>;

/// An error on its way to JS: a stable code and a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

impl ApiError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
        }
    }
    fn bad_argument(message: impl Into<String>) -> Self {
        Self::new("BAD_ARGUMENT", message)
    }
    fn into_js(self) -> JsValue {
        let e = js_sys::Error::new(&self.message);
        e.set_name("TideSyncError");
        let _ = Reflect::set(&e, &"code".into(), &self.code.into());
        e.into()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::new(e.code.as_str(), e.message)
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        let code = match &e {
            OpenError::WrongKey => "STORE_WRONG_KEY",
            OpenError::KeyMismatch(_) => "STORE_KEY_MISMATCH",
            OpenError::Cipher(_) => "STORE_KEY_MISMATCH",
            OpenError::Store(StoreError::Gone(_)) => "STORE_GONE",
            OpenError::Store(s) => s.code().as_str(),
        };
        ApiError::new(code, e.to_string())
    }
}

/// One engine call, as it travels to the leading tab.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Create {
        collection: String,
        id: Option<String>,
        fields: Fields,
    },
    Patch {
        collection: String,
        id: String,
        patch: Fields,
    },
    Delete {
        collection: String,
        id: String,
    },
    Append {
        collection: String,
        id: Option<String>,
        fields: Fields,
    },
    Get {
        collection: String,
        id: String,
    },
    Query {
        collection: String,
    },
    Status,
    Metrics,
    SyncNow,
    Reconcile {
        collections: Option<Vec<String>>,
    },
    Outbox,
    DeadLetters,
    Retry {
        seq: u64,
    },
    Discard {
        seq: u64,
    },
    Conflicts,
    Resolve {
        collection: String,
        id: String,
        resolution: Resolution,
    },
}

impl Op {
    /// Changes local state: the sync loop should look at the outbox.
    fn wakes_sync(&self) -> bool {
        matches!(
            self,
            Op::Create { .. }
                | Op::Patch { .. }
                | Op::Delete { .. }
                | Op::Append { .. }
                | Op::Retry { .. }
                | Op::Resolve { .. }
        )
    }
}

fn json<T: Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new("INTERNAL", e.to_string()))
}

async fn execute(engine: &WebEngine, op: Op) -> Result<Value, ApiError> {
    match op {
        Op::Create {
            collection,
            id,
            fields,
        } => json(engine.create(&collection, id.as_deref(), fields).await?),
        Op::Patch {
            collection,
            id,
            patch,
        } => json(engine.patch(&collection, &id, patch).await?),
        Op::Delete { collection, id } => json(engine.delete(&collection, &id).await?),
        Op::Append {
            collection,
            id,
            fields,
        } => json(engine.append(&collection, id.as_deref(), fields).await?),
        Op::Get { collection, id } => json(engine.get(&collection, &id).await?),
        Op::Query { collection } => json(engine.query(&collection).await?),
        Op::Status => json(engine.status().await),
        Op::Metrics => json(engine.metrics().await),
        Op::SyncNow => json(engine.sync_now().await?),
        Op::Reconcile { collections } => json(engine.reconcile(collections).await?),
        Op::Outbox => json(engine.outbox().await),
        Op::DeadLetters => json(engine.dead_letters().await),
        Op::Retry { seq } => json(engine.retry(seq).await?),
        Op::Discard { seq } => json(engine.discard(seq).await?),
        Op::Conflicts => json(engine.conflicts().await),
        Op::Resolve {
            collection,
            id,
            resolution,
        } => json(
            engine
                .resolve(&EntityKey::new(collection, id), resolution)
                .await?,
        ),
    }
}

/// Messages between tabs (JSON on the BroadcastChannel).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum TabMessage {
    /// A follower asks the leader to run an op.
    Req { id: u64, from: String, op: Op },
    /// The leader's answer.
    Res {
        id: u64,
        to: String,
        result: Result<Value, ApiError>,
    },
    /// An engine event, from the leader.
    Ev { event: Event },
}

/// An event listener added to `window` or `navigator.connection`.
type DomListener = (JsValue, &'static str, Closure<dyn FnMut(JsValue)>);

enum Listener {
    Events(Filter),
    Status,
}

struct Inner {
    db_name: String,
    store: IdbStore,
    transport: FetchTransport,
    config: EngineConfig,
    auto_sync: bool,
    pull_interval_ms: u32,
    tab_id: String,
    engine: RefCell<Option<Rc<WebEngine>>>,
    channel: RefCell<Option<TabChannel>>,
    leadership: RefCell<Option<Leadership>>,
    next_rpc: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Result<Value, ApiError>>>>,
    listeners: RefCell<Vec<(u32, Listener, Function)>>,
    next_listener: Cell<u32>,
    wake: RefCell<Option<mpsc::UnboundedSender<()>>>,
    closed: Cell<bool>,
    gone_reported: Cell<bool>,
    self_weak: RefCell<Weak<Inner>>,
    window_listeners: RefCell<Vec<DomListener>>,
}

impl Inner {
    fn dispatch(&self, event: &Event) {
        let Ok(js) = to_js(event) else { return };
        let status_js = match event {
            Event::Status { status } => to_js(status).ok(),
            _ => None,
        };
        // Clone the callbacks first: a callback may (un)subscribe.
        let targets: Vec<(Function, JsValue)> = self
            .listeners
            .borrow()
            .iter()
            .filter_map(|(_, l, f)| match l {
                Listener::Events(filter) if filter.matches(event) => Some((f.clone(), js.clone())),
                Listener::Status => status_js.clone().map(|s| (f.clone(), s)),
                _ => None,
            })
            .collect();
        for (f, arg) in targets {
            if let Err(e) = f.call1(&JsValue::NULL, &arg) {
                web_sys::console::error_2(&"tidesync: a subscriber threw".into(), &e);
            }
        }
    }

    fn post(&self, m: &TabMessage) {
        if let (Some(c), Ok(s)) = (self.channel.borrow().as_ref(), serde_json::to_string(m)) {
            c.post(&s);
        }
    }

    fn on_tab_message(self: &Rc<Self>, text: String) {
        let Ok(m) = serde_json::from_str::<TabMessage>(&text) else {
            return;
        };
        match m {
            TabMessage::Req { id, from, op } => {
                let Some(engine) = self.engine.borrow().clone() else {
                    return;
                };
                let me = self.clone();
                spawn_local(async move {
                    let wakes = op.wakes_sync();
                    let result = me
                        .execute_here(&engine, op)
                        .await
                        .map_err(|e| me.explain(e));
                    if wakes {
                        me.wake_sync();
                    }
                    me.post(&TabMessage::Res {
                        id,
                        to: from,
                        result,
                    });
                });
            }
            TabMessage::Res { id, to, result } if to == self.tab_id => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.send(result);
                }
            }
            TabMessage::Ev { event } if self.engine.borrow().is_none() => self.dispatch(&event),
            _ => {}
        }
    }

    /// A storage failure because the database vanished (deleted by another
    /// tab, evicted, cleared by the user) gets its own code.
    fn explain(&self, e: ApiError) -> ApiError {
        if self.store.is_gone() && !self.gone_reported.replace(true) {
            // Tell the pill at once: the core's status does not watch the store.
            if let Some(engine) = self.engine.borrow().clone() {
                let me_status = self.gone_status_event(engine);
                spawn_local(me_status);
            }
        }
        if e.code == crate::ErrorCode::StorageFailed.as_str() && self.store.is_gone() {
            ApiError::new(
                "STORE_GONE",
                format!(
                    "the local database {:?} was deleted or evicted: {}",
                    self.db_name, e.message
                ),
            )
        } else {
            e
        }
    }

    async fn execute_here(&self, engine: &WebEngine, op: Op) -> Result<Value, ApiError> {
        if matches!(op, Op::Status) {
            return json(self.with_store_health(engine.status().await));
        }
        execute(engine, op).await
    }

    /// The status with the store's failure: a vanished database is an error
    /// the sync pill must show even though no sync failed.
    fn with_store_health(&self, mut status: Status) -> Status {
        if self.store.is_gone() {
            status.phase = Phase::Error;
            status.last_error = Some((
                crate::ErrorCode::StorageFailed,
                format!(
                    "the local database {:?} was deleted or evicted",
                    self.db_name
                ),
            ));
        }
        status
    }

    fn gone_status_event(&self, engine: Rc<WebEngine>) -> impl std::future::Future<Output = ()> {
        let me = self.self_weak.borrow().clone();
        async move {
            let status = engine.status().await;
            if let Some(me) = me.upgrade() {
                let event = Event::Status {
                    status: me.with_store_health(status),
                };
                me.dispatch(&event);
                me.post(&TabMessage::Ev { event });
            }
        }
    }

    fn wake_sync(&self) {
        if let Some(w) = self.wake.borrow().as_ref() {
            let _ = w.unbounded_send(());
        }
    }

    async fn call(self: &Rc<Self>, op: Op) -> Result<Value, ApiError> {
        if self.closed.get() {
            return Err(ApiError::new("INVALID_STATE", "this TideSync was closed"));
        }
        let engine = self.engine.borrow().clone();
        if let Some(engine) = engine {
            let wakes = op.wakes_sync();
            let r = self.execute_here(&engine, op).await;
            if wakes {
                self.wake_sync();
            }
            return r.map_err(|e| self.explain(e));
        }
        // Follower: the leading tab runs it.
        let id = self.next_rpc.get() + 1;
        self.next_rpc.set(id);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.post(&TabMessage::Req {
            id,
            from: self.tab_id.clone(),
            op,
        });
        let timeout = gloo_timers::future::TimeoutFuture::new(15_000);
        match futures::future::select(rx, timeout).await {
            Either::Left((r, _)) => r.unwrap_or_else(|_| {
                Err(ApiError::new(
                    "LEADER_UNAVAILABLE",
                    "the leading tab went away",
                ))
            }),
            Either::Right(_) => {
                self.pending.borrow_mut().remove(&id);
                Err(ApiError::new(
                    "LEADER_UNAVAILABLE",
                    "no tab answered as the leader",
                ))
            }
        }
    }

    /// This tab now leads: open the engine, forward its events, sync.
    async fn lead(self: &Rc<Self>) -> Result<(), ApiError> {
        if self.closed.get() {
            return Ok(());
        }
        let engine = Rc::new(
            Engine::open(
                self.store.clone(),
                self.transport.clone(),
                BrowserEnv,
                self.config.clone(),
            )
            .await?,
        );
        let mut events = engine.subscribe(Filter::All);
        *self.engine.borrow_mut() = Some(engine.clone());
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            while let Some(ev) = events.next().await {
                let Some(me) = weak.upgrade() else { break };
                me.dispatch(&ev);
                me.post(&TabMessage::Ev { event: ev });
            }
        });
        engine.set_online(navigator_online()).await;
        if let Some(hint) = connection_hint() {
            engine.set_connection_hint(hint).await;
        }
        if self.auto_sync {
            let (tx, rx) = mpsc::unbounded();
            *self.wake.borrow_mut() = Some(tx);
            spawn_local(sync_loop(
                Rc::downgrade(self),
                engine,
                self.transport.clone(),
                rx,
                self.pull_interval_ms,
            ));
        }
        Ok(())
    }

    fn listen(
        self: &Rc<Self>,
        target: JsValue,
        event: &'static str,
        f: impl FnMut(JsValue) + 'static,
    ) {
        let cb = Closure::<dyn FnMut(JsValue)>::new(f);
        if let Some(t) = target.dyn_ref::<web_sys::EventTarget>() {
            let _ = t.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
            self.window_listeners.borrow_mut().push((target, event, cb));
        }
    }

    fn shutdown(&self) {
        if self.closed.replace(true) {
            return;
        }
        for (t, ev, cb) in self.window_listeners.borrow_mut().drain(..) {
            if let Some(t) = t.dyn_ref::<web_sys::EventTarget>() {
                let _ = t.remove_event_listener_with_callback(ev, cb.as_ref().unchecked_ref());
            }
        }
        self.wake.borrow_mut().take();
        self.engine.borrow_mut().take();
        if let Some(c) = self.channel.borrow_mut().take() {
            c.close();
        }
        if let Some(l) = self.leadership.borrow_mut().take() {
            l.release();
        }
        for (_, tx) in self.pending.borrow_mut().drain() {
            let _ = tx.send(Err(ApiError::new("INVALID_STATE", "closed")));
        }
        self.listeners.borrow_mut().clear();
        self.store.close();
    }
}

/// The leader's background sync: after local writes, when a retry is due,
/// when the network comes back, and every `pull_interval_ms`.
async fn sync_loop(
    inner: Weak<Inner>,
    engine: Rc<WebEngine>,
    transport: FetchTransport,
    mut wake: mpsc::UnboundedReceiver<()>,
    pull_interval_ms: u32,
) {
    let env = BrowserEnv;
    let mut next_pull = 0u64;
    let mut woken = true;
    loop {
        match inner.upgrade() {
            Some(i) if !i.closed.get() => {}
            _ => break,
        }
        let now = env.now_ms();
        // Offline: a cheap health probe decides when to try again.
        if engine.status().await.phase == Phase::Offline && (woken || now >= next_pull) {
            if transport.probe().await {
                engine.set_online(true).await;
            } else {
                next_pull = now + u64::from(pull_interval_ms);
                woken = false;
            }
        }
        let due = engine.next_wakeup().await;
        if woken || now >= next_pull {
            let _ = engine.sync_now().await;
            next_pull = env.now_ms() + u64::from(pull_interval_ms);
        } else if due.is_some_and(|t| t <= now) {
            let _ = engine.push().await;
        }
        let now = env.now_ms();
        let mut until = next_pull;
        if let Some(t) = engine.next_wakeup().await {
            until = until.min(t);
        }
        let wait = until
            .saturating_sub(now)
            .clamp(20, u64::from(pull_interval_ms)) as u32;
        let timer = gloo_timers::future::TimeoutFuture::new(wait);
        woken = match futures::future::select(wake.next(), timer).await {
            Either::Left((Some(()), _)) => {
                // Coalesce a burst of writes into one round.
                while wake.try_recv().is_ok() {}
                true
            }
            Either::Left((None, _)) => break,
            Either::Right(_) => false,
        };
    }
}

fn navigator() -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .filter(|n| n.is_object())
}

fn navigator_online() -> bool {
    navigator()
        .and_then(|n| Reflect::get(&n, &"onLine".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

fn connection() -> Option<JsValue> {
    navigator()
        .and_then(|n| Reflect::get(&n, &"connection".into()).ok())
        .filter(|c| c.is_object())
}

/// `navigator.connection` as the core's hint (Chromium only).
fn connection_hint() -> Option<ConnectionHint> {
    let c = connection()?;
    Some(ConnectionHint {
        save_data: Reflect::get(&c, &"saveData".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        effective_type: Reflect::get(&c, &"effectiveType".into())
            .ok()
            .and_then(|v| v.as_string()),
    })
}

fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, ApiError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| ApiError::new("INTERNAL", e.to_string()))
}

fn value_to_js(v: &Value) -> Result<JsValue, JsValue> {
    to_js(v).map_err(ApiError::into_js)
}

fn fields_from_js(v: JsValue, what: &str) -> Result<Fields, ApiError> {
    serde_wasm_bindgen::from_value::<Value>(v)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .ok_or_else(|| ApiError::bad_argument(format!("{what} must be a JSON object")))
}

fn key_source(key: &JsValue) -> Result<KeySource, ApiError> {
    let get = |k: &str| Reflect::get(key, &k.into()).unwrap_or(JsValue::UNDEFINED);
    if !key.is_object() {
        return Err(ApiError::bad_argument("options.key must be an object"));
    }
    if let Some(p) = get("passphrase").as_string() {
        return Ok(KeySource::Passphrase {
            passphrase: Zeroizing::new(p),
            kdf: KdfParams::production(),
        });
    }
    let hk = get("hostKey");
    if let Some(a) = hk.dyn_ref::<Uint8Array>() {
        return Ok(KeySource::HostKey(Zeroizing::new(a.to_vec())));
    }
    if get("webCrypto").as_bool() == Some(true) {
        return Ok(KeySource::WebCrypto);
    }
    if get("plaintext").as_bool() == Some(true) {
        return Ok(KeySource::Plain);
    }
    Err(ApiError::bad_argument(
        "options.key must be {passphrase}, {hostKey}, {webCrypto: true} or {plaintext: true}",
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenOptions {
    db_name: String,
    server_url: String,
    api_key: String,
    terminal_id: String,
    branch_id: String,
    #[serde(default)]
    policies: BTreeMap<String, ConflictPolicy>,
    auto_sync: Option<bool>,
    pull_interval_ms: Option<u32>,
}

/// An offline-first, encrypted, syncing local database in the browser.
#[wasm_bindgen]
pub struct TideSync {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for TideSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TideSync")
            .field("db_name", &self.inner.db_name)
            .finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl TideSync {
    /// Opens (or creates) the local database and joins the tabs that share it.
    #[wasm_bindgen(unchecked_return_type = "TideSync")]
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Result<TideSync, JsValue> {
        Self::open_inner(options).await.map_err(ApiError::into_js)
    }

    async fn open_inner(options: JsValue) -> Result<TideSync, ApiError> {
        let key = key_source(&Reflect::get(&options, &"key".into()).unwrap_or(JsValue::UNDEFINED))?;
        let o: OpenOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| ApiError::bad_argument(format!("options: {e}")))?;
        if o.db_name.is_empty() {
            return Err(ApiError::bad_argument("options.dbName is empty"));
        }
        let store = IdbStore::open(&o.db_name, key).await?;
        // Ask the browser not to evict this origin's storage (best effort).
        if let Some(storage) = navigator().and_then(|n| Reflect::get(&n, &"storage".into()).ok()) {
            if let Ok(persist) = Reflect::get(&storage, &"persist".into()) {
                if let Some(f) = persist.dyn_ref::<Function>() {
                    let _ = f.call0(&storage);
                }
            }
        }
        let env = BrowserEnv;
        let client_id = OpId::from_parts(env.now_ms(), u128::from(env.random_u64())).0;
        let mut config = EngineConfig::new(client_id, o.terminal_id, o.branch_id);
        config.policies = o.policies;
        let tab_id = OpId::from_parts(env.now_ms(), u128::from(env.random_u64())).0;
        let inner = Rc::new(Inner {
            db_name: o.db_name.clone(),
            store,
            transport: FetchTransport::new(&o.server_url, &o.api_key, &config.branch_id),
            config,
            auto_sync: o.auto_sync.unwrap_or(true),
            pull_interval_ms: o.pull_interval_ms.unwrap_or(30_000).max(100),
            tab_id,
            engine: RefCell::new(None),
            channel: RefCell::new(None),
            leadership: RefCell::new(None),
            next_rpc: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
            listeners: RefCell::new(Vec::new()),
            next_listener: Cell::new(0),
            wake: RefCell::new(None),
            closed: Cell::new(false),
            gone_reported: Cell::new(false),
            self_weak: RefCell::new(Weak::new()),
            window_listeners: RefCell::new(Vec::new()),
        });
        *inner.self_weak.borrow_mut() = Rc::downgrade(&inner);
        let weak = Rc::downgrade(&inner);
        *inner.channel.borrow_mut() =
            TabChannel::join(&format!("tidesync:{}", o.db_name), move |m| {
                if let Some(i) = weak.upgrade() {
                    i.on_tab_message(m);
                }
            });
        let lock = format!("tidesync-leader:{}", o.db_name);
        if let Some(l) = tabs::try_lead(&lock).await {
            *inner.leadership.borrow_mut() = Some(l);
            if let Err(e) = inner.lead().await {
                inner.shutdown();
                return Err(e);
            }
        } else {
            let weak = Rc::downgrade(&inner);
            let l = tabs::campaign(&lock, move || {
                if let Some(i) = weak.upgrade() {
                    spawn_local(async move {
                        if let Err(e) = i.lead().await {
                            web_sys::console::error_1(
                                &format!("tidesync: taking the lead failed: {}", e.message).into(),
                            );
                        }
                    });
                }
            });
            *inner.leadership.borrow_mut() = Some(l);
        }
        // Network and connection-quality signals (leader's engine only).
        let global = js_sys::global();
        for (ev, online) in [("online", true), ("offline", false)] {
            let weak = Rc::downgrade(&inner);
            inner.listen(global.clone().into(), ev, move |_| {
                if let Some(i) = weak.upgrade() {
                    if let Some(engine) = i.engine.borrow().clone() {
                        let i2 = i.clone();
                        spawn_local(async move {
                            engine.set_online(online).await;
                            if online {
                                i2.wake_sync();
                            }
                        });
                    }
                }
            });
        }
        if let Some(c) = connection() {
            let weak = Rc::downgrade(&inner);
            inner.listen(c, "change", move |_| {
                if let (Some(i), Some(hint)) = (weak.upgrade(), connection_hint()) {
                    if let Some(engine) = i.engine.borrow().clone() {
                        spawn_local(async move { engine.set_connection_hint(hint).await });
                    }
                }
            });
        }
        Ok(TideSync { inner })
    }

    async fn run(&self, op: Op) -> Result<JsValue, JsValue> {
        let v = self.inner.call(op).await.map_err(ApiError::into_js)?;
        value_to_js(&v)
    }

    /// Creates an entity (`id` defaults to a new ULID).
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn create(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
        id: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let fields = fields_from_js(fields, "fields").map_err(ApiError::into_js)?;
        self.run(Op::Create {
            collection,
            id,
            fields,
        })
        .await
    }

    /// Applies a JSON merge patch (`null` removes a field).
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn patch(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] patch: JsValue,
    ) -> Result<JsValue, JsValue> {
        let patch = fields_from_js(patch, "patch").map_err(ApiError::into_js)?;
        self.run(Op::Patch {
            collection,
            id,
            patch,
        })
        .await
    }

    /// Deletes an entity.
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn delete(&self, collection: String, id: String) -> Result<JsValue, JsValue> {
        self.run(Op::Delete { collection, id }).await
    }

    /// Appends to an append-only collection (`id` defaults to a new ULID).
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn append(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
        id: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let fields = fields_from_js(fields, "fields").map_err(ApiError::into_js)?;
        self.run(Op::Append {
            collection,
            id,
            fields,
        })
        .await
    }

    /// One entity's local view, or null.
    #[wasm_bindgen(unchecked_return_type = "LocalEntity | null")]
    pub async fn get(&self, collection: String, id: String) -> Result<JsValue, JsValue> {
        self.run(Op::Get { collection, id }).await
    }

    /// Every live entity of a collection, by id.
    #[wasm_bindgen(unchecked_return_type = "LocalEntity[]")]
    pub async fn query(&self, collection: String) -> Result<JsValue, JsValue> {
        self.run(Op::Query { collection }).await
    }

    /// The sync pill's status.
    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub async fn status(&self) -> Result<JsValue, JsValue> {
        self.run(Op::Status).await
    }

    /// Counters since the leading tab opened the engine.
    #[wasm_bindgen(unchecked_return_type = "Metrics")]
    pub async fn metrics(&self) -> Result<JsValue, JsValue> {
        self.run(Op::Metrics).await
    }

    /// Pushes the outbox and pulls changes now.
    #[wasm_bindgen(js_name = syncNow, unchecked_return_type = "SyncReport")]
    pub async fn sync_now(&self) -> Result<JsValue, JsValue> {
        self.run(Op::SyncNow).await
    }

    /// Verifies collections against the server and repairs differences.
    #[wasm_bindgen(unchecked_return_type = "SyncReport")]
    pub async fn reconcile(&self, collections: Option<Vec<String>>) -> Result<JsValue, JsValue> {
        self.run(Op::Reconcile { collections }).await
    }

    /// Every queued mutation, by seq.
    #[wasm_bindgen(unchecked_return_type = "OutboxEntry[]")]
    pub async fn outbox(&self) -> Result<JsValue, JsValue> {
        self.run(Op::Outbox).await
    }

    /// Mutations waiting for a person (retry or discard).
    #[wasm_bindgen(js_name = deadLetters, unchecked_return_type = "OutboxEntry[]")]
    pub async fn dead_letters(&self) -> Result<JsValue, JsValue> {
        self.run(Op::DeadLetters).await
    }

    /// Sends a dead letter again.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn retry(&self, seq: f64) -> Result<JsValue, JsValue> {
        self.run(Op::Retry { seq: seq as u64 })
            .await
            .map(|_| JsValue::UNDEFINED)
    }

    /// Drops a dead letter (audited).
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn discard(&self, seq: f64) -> Result<JsValue, JsValue> {
        self.run(Op::Discard { seq: seq as u64 })
            .await
            .map(|_| JsValue::UNDEFINED)
    }

    /// Open conflicts.
    #[wasm_bindgen(unchecked_return_type = "ConflictRecord[]")]
    pub async fn conflicts(&self) -> Result<JsValue, JsValue> {
        self.run(Op::Conflicts).await
    }

    /// Resolves an open conflict.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn resolve(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Resolution")] resolution: JsValue,
    ) -> Result<JsValue, JsValue> {
        let resolution: Resolution = serde_wasm_bindgen::from_value(resolution)
            .map_err(|e| ApiError::bad_argument(format!("resolution: {e}")).into_js())?;
        self.run(Op::Resolve {
            collection,
            id,
            resolution,
        })
        .await
        .map(|_| JsValue::UNDEFINED)
    }

    fn add_listener(&self, l: Listener, callback: Function) -> JsValue {
        let id = self.inner.next_listener.get() + 1;
        self.inner.next_listener.set(id);
        self.inner.listeners.borrow_mut().push((id, l, callback));
        let weak = Rc::downgrade(&self.inner);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(i) = weak.upgrade() {
                i.listeners.borrow_mut().retain(|(x, ..)| *x != id);
            }
        })
        .into_js_value()
    }

    /// Calls `callback` with every event matching `filter` (changes made in
    /// any tab, status, alerts). Returns the function that unsubscribes.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SubscriptionFilter")] filter: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(event: SyncEvent) => void")] callback: Function,
    ) -> Result<JsValue, JsValue> {
        let get = |k: &str| {
            Reflect::get(&filter, &k.into())
                .ok()
                .and_then(|v| v.as_string())
        };
        let f = match (get("collection"), get("id")) {
            (Some(collection), Some(id)) => Filter::Entity {
                key: EntityKey::new(collection, id),
            },
            (Some(collection), None) => Filter::Collection { collection },
            (None, None) => Filter::All,
            (None, Some(_)) => {
                return Err(ApiError::bad_argument("filter.id needs filter.collection").into_js())
            }
        };
        Ok(self.add_listener(Listener::Events(f), callback))
    }

    /// Calls `callback` with each new status. Returns the function that
    /// unsubscribes.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "() => void")]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] callback: Function,
    ) -> JsValue {
        self.add_listener(Listener::Status, callback)
    }

    /// This tab runs the engine and the sync (the others forward to it).
    #[wasm_bindgen(js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.inner.engine.borrow().is_some()
    }

    /// Closes this tab's connection; another tab takes over the sync.
    pub fn close(&self) {
        self.inner.shutdown();
    }

    /// Destroys the local database and its wrapped key: everything not yet
    /// synced is lost. Other tabs of the same database see `STORE_GONE`.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn wipe(&self) -> Result<JsValue, JsValue> {
        self.inner.shutdown();
        IdbStore::destroy(&self.inner.db_name)
            .await
            .map_err(|e| ApiError::new("STORAGE_FAILED", e.to_string()).into_js())?;
        Ok(JsValue::UNDEFINED)
    }
}
