//! The JavaScript API (wasm-bindgen): the thin surface between JS and the
//! core. Each method converts its arguments into a [`Command`], has the
//! [`Session`] run it (in this tab if it leads, otherwise in the leading tab)
//! and maps errors to `{ code, message }` with a stable code.
//!
//! The TypeScript declarations of every domain type are in `tidesync.d.ts`
//! beside this file (included in the package's `.d.ts`); methods name them
//! instead of `any`.

use super::env::BrowserEnv;
use super::keys::KeySource;
use super::listeners::{to_js, Interest};
use super::navigator;
use super::session::{Identity, Session, SessionConfig};
use super::store::IdbStore;
use super::transport::FetchTransport;
use crate::client::{ClientError as ApiError, Command};
use crate::crypto::KdfParams;
use crate::engine::Resolution;
use crate::policy::ConflictPolicy;
use crate::protocol::{EntityKey, Fields, OpId};
use crate::scoring::WriteOptions;
use crate::status::Filter;
use crate::Environment;
use js_sys::{Function, Reflect, Uint8Array};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = include_str!("tidesync.d.ts");

impl ApiError {
    pub(super) fn into_js(self) -> JsValue {
        let e = js_sys::Error::new(&self.message);
        e.set_name("TideSyncError");
        let _ = Reflect::set(&e, &"code".into(), &self.code.as_str().into());
        e.into()
    }
}

fn value_to_js(v: &Value) -> Result<JsValue, JsValue> {
    to_js(v).map_err(ApiError::into_js)
}

fn fields_from_js(v: JsValue, what: &str) -> Result<Fields, ApiError> {
    match super::json::to_json(&v, what)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::bad_argument(format!(
            "{what} must be a JSON object"
        ))),
    }
}

/// A write's options (`{hold?: boolean}`); `undefined` or `null`: none. An
/// unknown option is an error naming it.
fn write_options(options: Option<js_sys::Object>) -> Result<WriteOptions, ApiError> {
    match options {
        None => Ok(WriteOptions::default()),
        Some(o) if o.is_null() || o.is_undefined() => Ok(WriteOptions::default()),
        Some(o) => serde_json::from_value(super::json::to_json(&o.into(), "options")?)
            .map_err(|e| ApiError::bad_argument(format!("options: {e}"))),
    }
}

fn seq_from_js(seq: f64) -> Result<u64, ApiError> {
    if seq.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&seq) {
        Ok(seq as u64)
    } else {
        Err(ApiError::bad_argument(format!(
            "{seq} is not a sequence number"
        )))
    }
}

fn page_options(options: &JsValue) -> Result<(Option<String>, Option<usize>), ApiError> {
    if options.is_undefined() || options.is_null() {
        return Ok((None, None));
    }
    if !options.is_object() {
        return Err(ApiError::bad_argument("options must be {after?, limit?}"));
    }
    let get = |k: &str| Reflect::get(options, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let after = match get("after") {
        v if v.is_undefined() || v.is_null() => None,
        v => Some(
            v.as_string()
                .ok_or_else(|| ApiError::bad_argument("options.after must be an id (string)"))?,
        ),
    };
    let limit = match get("limit") {
        v if v.is_undefined() || v.is_null() => None,
        v => match v.as_f64() {
            Some(n) if n.fract() == 0.0 && n >= 1.0 => Some(n as usize),
            _ => {
                return Err(ApiError::bad_argument(
                    "options.limit must be a whole number >= 1",
                ))
            }
        },
    };
    Ok((after, limit))
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenOptions {
    db_name: String,
    server_url: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    pairing_code: Option<String>,
    #[serde(default)]
    terminal_id: Option<String>,
    #[serde(default)]
    branch_id: Option<String>,
    remember_key: Option<bool>,
    #[serde(default)]
    policies: BTreeMap<String, ConflictPolicy>,
    /// What a collection does with a flagged write.
    #[serde(default)]
    review: BTreeMap<String, crate::scoring::ReviewPolicy>,
    auto_sync: Option<bool>,
    pull_interval_ms: Option<u32>,
    live: Option<bool>,
    max_attempts: Option<u32>,
    schema_version: Option<u32>,
    #[serde(default)]
    migrations: Vec<crate::migrate::FieldMigration>,
    #[serde(default)]
    rules: crate::rules::Rules,
    /// Backoff between delivery attempts.
    #[serde(default)]
    retry: crate::client::RetryOptions,
    /// A cap on upload bytes per second.
    max_upload_bytes_per_sec: Option<u64>,
}

/// An offline-first, encrypted, syncing local database in the browser.
#[wasm_bindgen(skip_typescript)]
pub struct TideSync {
    pub(super) session: Rc<Session>,
}

impl std::fmt::Debug for TideSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TideSync")
            .field("db_name", &self.session.db_name())
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
        let credentials = match Reflect::get(&options, &"credentials".into()) {
            Ok(v) if v.is_undefined() || v.is_null() => None,
            Ok(v) => Some(v.dyn_into::<Function>().map_err(|_| {
                ApiError::bad_argument(
                    "options.credentials must be a function giving the API key (or a promise of it)",
                )
            })?),
            Err(_) => None,
        };
        // The rest is data: a copy without the callback and the key, read as
        // JSON (json.rs: nothing JSON cannot hold), so that an unknown
        // option, or an unknown key in `rules` or `migrations`, is an error
        // naming it (serde-wasm-bindgen reads only the fields it knows). An
        // option set to `undefined` is absent, as in JS.
        let copy = js_sys::Object::new();
        if let Some(obj) = options.dyn_ref::<js_sys::Object>() {
            for entry in js_sys::Object::entries(obj).iter() {
                let entry: js_sys::Array = entry.unchecked_into();
                let (name, value) = (entry.get(0), entry.get(1));
                let skip = value.is_undefined()
                    || matches!(name.as_string().as_deref(), Some("credentials" | "key"));
                if !skip {
                    let _ = Reflect::set(&copy, &name, &value);
                }
            }
        } else {
            return Err(ApiError::bad_argument("options must be an object"));
        }
        let o: OpenOptions = serde_json::from_value(super::json::to_json(&copy, "options")?)
            .map_err(|e| ApiError::bad_argument(format!("options: {e}")))?;
        if o.db_name.is_empty() {
            return Err(ApiError::bad_argument("options.dbName is empty"));
        }
        // Checked before the store is opened: a bad option creates nothing.
        let env = BrowserEnv;
        let client_id = OpId::from_parts(env.now_ms(), u128::from(env.random_u64())).0;
        let (mut engine, migrations) = crate::client::EngineSettings {
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
        .into_config(client_id)?;
        let store = IdbStore::open(&o.db_name, key).await?;
        // The terminal and branch: the store's, else the key's (pairing).
        let settled = crate::client::settle_with(
            &store,
            crate::client::Asked {
                terminal_id: o.terminal_id,
                branch_id: o.branch_id,
                api_key: o.api_key,
                pairing_code: o.pairing_code,
                remember_key: o.remember_key.unwrap_or(true),
            },
            // An empty key sends no Authorization (`POST /v1/pair`).
            |key| FetchTransport::new(&o.server_url, Some(key), None, ""),
            env.now_ms(),
        )
        .await?;
        engine.terminal_id = settled.terminal_id.clone();
        engine.branch_id = settled.branch_id.clone();
        navigator::request_persistence();
        let tab_id = OpId::from_parts(env.now_ms(), u128::from(env.random_u64())).0;
        let session = Session::start(SessionConfig {
            db_name: o.db_name,
            store,
            transport: FetchTransport::new(
                &o.server_url,
                settled.api_key.as_deref(),
                credentials,
                &engine.branch_id,
            )
            .with_terminal(&engine.terminal_id),
            identity: Identity {
                terminal_id: settled.terminal_id,
                branch_id: settled.branch_id,
                key_stored: settled.key_stored,
            },
            engine,
            migrations,
            auto_sync: o.auto_sync.unwrap_or(true),
            pull_interval_ms: crate::client::scheduler::pull_interval_ms(o.pull_interval_ms),
            live: o.live.unwrap_or(true),
            tab_id,
        })
        .await?;
        Ok(TideSync { session })
    }

    async fn run(&self, command: Command) -> Result<JsValue, JsValue> {
        let v = self
            .session
            .call(command)
            .await
            .map_err(ApiError::into_js)?;
        value_to_js(&v)
    }

    /// Creates an entity (`id` defaults to a new ULID).
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn create(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
        id: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let fields = fields_from_js(fields, "fields").map_err(ApiError::into_js)?;
        let options = write_options(options).map_err(ApiError::into_js)?;
        self.run(Command::Create {
            collection,
            id,
            fields,
            options,
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
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let patch = fields_from_js(patch, "patch").map_err(ApiError::into_js)?;
        let options = write_options(options).map_err(ApiError::into_js)?;
        self.run(Command::Patch {
            collection,
            id,
            patch,
            options,
        })
        .await
    }

    /// Deletes an entity.
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn delete(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let options = write_options(options).map_err(ApiError::into_js)?;
        self.run(Command::Delete {
            collection,
            id,
            options,
        })
        .await
    }

    /// Appends to an append-only collection (`id` defaults to a new ULID).
    #[wasm_bindgen(unchecked_return_type = "LocalEntity")]
    pub async fn append(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
        id: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "WriteOptions")] options: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let fields = fields_from_js(fields, "fields").map_err(ApiError::into_js)?;
        let options = write_options(options).map_err(ApiError::into_js)?;
        self.run(Command::Append {
            collection,
            id,
            fields,
            options,
        })
        .await
    }

    /// One entity's local view, or null.
    #[wasm_bindgen(unchecked_return_type = "LocalEntity | null")]
    pub async fn get(&self, collection: String, id: String) -> Result<JsValue, JsValue> {
        self.run(Command::Get { collection, id }).await
    }

    /// A page of a collection's live entities, by id: after `options.after`
    /// (an id), at most `options.limit` (default 1000, at most 10000). The
    /// next page starts after the last id returned.
    /// (Its TypeScript signature, with `options` optional, is declared in
    /// `tidesync.d.ts`.)
    #[wasm_bindgen(skip_typescript)]
    pub async fn query(
        &self,
        collection: String,
        options: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let options: JsValue = options.map_or(JsValue::UNDEFINED, Into::into);
        let (after, limit) = page_options(&options).map_err(ApiError::into_js)?;
        self.run(Command::Query {
            collection,
            after,
            limit,
        })
        .await
    }

    /// The sync pill's status.
    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub async fn status(&self) -> Result<JsValue, JsValue> {
        self.run(Command::Status).await
    }

    /// Counters since the leading tab opened the engine.
    #[wasm_bindgen(unchecked_return_type = "Metrics")]
    pub async fn metrics(&self) -> Result<JsValue, JsValue> {
        self.run(Command::Metrics).await
    }

    /// Pushes the outbox and pulls changes now.
    #[wasm_bindgen(js_name = syncNow, unchecked_return_type = "SyncReport")]
    pub async fn sync_now(&self) -> Result<JsValue, JsValue> {
        self.run(Command::SyncNow).await
    }

    /// Verifies collections against the server and repairs differences.
    #[wasm_bindgen(unchecked_return_type = "SyncReport")]
    pub async fn reconcile(&self, collections: Option<Vec<String>>) -> Result<JsValue, JsValue> {
        self.run(Command::Reconcile { collections }).await
    }

    /// Every queued mutation, by seq.
    #[wasm_bindgen(unchecked_return_type = "OutboxEntry[]")]
    pub async fn outbox(&self) -> Result<JsValue, JsValue> {
        self.run(Command::Outbox).await
    }

    /// Mutations waiting for a person (retry or discard).
    #[wasm_bindgen(js_name = deadLetters, unchecked_return_type = "OutboxEntry[]")]
    pub async fn dead_letters(&self) -> Result<JsValue, JsValue> {
        self.run(Command::DeadLetters).await
    }

    /// Sets the anomaly scorer of this tab's writes (`null`: none). The
    /// leading tab's scorer scores every tab's writes, so each tab should
    /// set it. (TypeScript signature in `tidesync.d.ts`.)
    #[wasm_bindgen(js_name = setScorer, skip_typescript)]
    pub fn set_scorer(&self, scorer: JsValue) -> Result<(), JsValue> {
        let scorer: Option<std::sync::Arc<dyn crate::scoring::Scorer>> =
            if scorer.is_null() || scorer.is_undefined() {
                None
            } else {
                // The scorer lives on this thread only, as the engine does
                // (a Wasm page has one thread); the core's `Arc` is for the
                // native engines.
                #[allow(clippy::arc_with_non_send_sync)]
                let s = std::sync::Arc::new(
                    super::scorer::JsScorer::from_js(&scorer).map_err(ApiError::into_js)?,
                );
                Some(s)
            };
        self.session.set_scorer(scorer);
        Ok(())
    }

    /// Writes held for review (a flagged score under `review: {c:
    /// "hold_flagged"}`, or `{hold: true}`), by seq.
    #[wasm_bindgen(unchecked_return_type = "OutboxEntry[]")]
    pub async fn held(&self) -> Result<JsValue, JsValue> {
        self.run(Command::Held).await
    }

    /// Releases a held write: it is sent with the next push, in its order.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn release(&self, seq: f64) -> Result<JsValue, JsValue> {
        let seq = seq_from_js(seq).map_err(ApiError::into_js)?;
        self.run(Command::Release { seq })
            .await
            .map(|_| JsValue::UNDEFINED)
    }

    /// Sends a dead letter again; with `payload`, edited first, under a new
    /// op id (the old one is audited as replaced). (TypeScript signature in
    /// `tidesync.d.ts`.)
    #[wasm_bindgen(skip_typescript)]
    pub async fn retry(
        &self,
        seq: f64,
        payload: Option<js_sys::Object>,
    ) -> Result<JsValue, JsValue> {
        let seq = seq_from_js(seq).map_err(ApiError::into_js)?;
        let command = match payload {
            None => Command::Retry { seq },
            Some(p) if p.is_null() => Command::RetryEdited { seq, payload: None },
            Some(p) => Command::RetryEdited {
                seq,
                payload: Some(fields_from_js(p.into(), "payload").map_err(ApiError::into_js)?),
            },
        };
        self.run(command).await.map(|_| JsValue::UNDEFINED)
    }

    /// Retries every dead letter; resolves with how many.
    #[wasm_bindgen(js_name = retryAll, unchecked_return_type = "number")]
    pub async fn retry_all(&self) -> Result<JsValue, JsValue> {
        self.run(Command::RetryAll).await
    }

    /// Discards every dead letter (each audited); resolves with how many.
    #[wasm_bindgen(js_name = discardAll, unchecked_return_type = "number")]
    pub async fn discard_all(&self) -> Result<JsValue, JsValue> {
        self.run(Command::DiscardAll).await
    }

    /// Local audit entries after `options.after` (a seq), at most
    /// `options.limit` (default 1000). (TypeScript signature in `tidesync.d.ts`.)
    #[wasm_bindgen(skip_typescript)]
    pub async fn audit(&self, options: Option<js_sys::Object>) -> Result<JsValue, JsValue> {
        let options: JsValue = options.map_or(JsValue::UNDEFINED, Into::into);
        let after = if options.is_object() {
            match Reflect::get(&options, &"after".into())
                .ok()
                .and_then(|v| v.as_f64())
            {
                Some(a) => seq_from_js(a).map_err(ApiError::into_js)?,
                None => 0,
            }
        } else {
            0
        };
        let limit = if options.is_object() {
            Reflect::get(&options, &"limit".into())
                .ok()
                .and_then(|v| v.as_f64())
                .map(|n| n as usize)
        } else {
            None
        };
        self.run(Command::Audit { after, limit }).await
    }

    /// Drops a dead letter or a held write (audited); the local view is
    /// replayed without it.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn discard(&self, seq: f64) -> Result<JsValue, JsValue> {
        let seq = seq_from_js(seq).map_err(ApiError::into_js)?;
        self.run(Command::Discard { seq })
            .await
            .map(|_| JsValue::UNDEFINED)
    }

    /// Open conflicts.
    #[wasm_bindgen(unchecked_return_type = "ConflictRecord[]")]
    pub async fn conflicts(&self) -> Result<JsValue, JsValue> {
        self.run(Command::Conflicts).await
    }

    /// Resolves an open conflict.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn resolve(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Resolution")] resolution: JsValue,
    ) -> Result<JsValue, JsValue> {
        let resolution: Resolution = super::json::to_json(&resolution, "resolution")
            .and_then(|v| {
                serde_json::from_value(v)
                    .map_err(|e| ApiError::bad_argument(format!("resolution: {e}")))
            })
            .map_err(ApiError::into_js)?;
        self.run(Command::Resolve {
            collection,
            id,
            resolution,
        })
        .await
        .map(|_| JsValue::UNDEFINED)
    }

    fn add_listener(&self, interest: Interest, callback: Function) -> JsValue {
        let id = self.session.listeners.add(interest, callback);
        let weak = Rc::downgrade(&self.session);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(s) = weak.upgrade() {
                s.listeners.remove(id);
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
        Ok(self.add_listener(Interest::Events(f), callback))
    }

    /// Calls `callback` with the current status at once, then with each new
    /// status. Returns the function that unsubscribes.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "() => void")]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] callback: Function,
    ) -> JsValue {
        let unsubscribe = self.add_listener(Interest::Status, callback.clone());
        let session = self.session.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Ok(v) = session.call(Command::Status).await {
                if let Ok(js) = to_js(&v) {
                    if let Err(e) = callback.call1(&JsValue::NULL, &js) {
                        web_sys::console::error_2(&"tidesync: a subscriber threw".into(), &e);
                    }
                }
            }
        });
        unsubscribe
    }

    /// Resolves with the status once a first snapshot has been applied
    /// completely (at once if it was, in this or an earlier session).
    /// Rejects if this TideSync is closed first.
    #[wasm_bindgen(js_name = waitForFirstSync, unchecked_return_type = "Status")]
    pub async fn wait_for_first_sync(&self) -> Result<JsValue, JsValue> {
        loop {
            let v = self
                .session
                .call(Command::Status)
                .await
                .map_err(ApiError::into_js)?;
            if v.get("first_sync_done") == Some(&Value::Bool(true)) {
                return value_to_js(&v);
            }
            gloo_timers::future::TimeoutFuture::new(100).await;
        }
    }

    /// This tab runs the engine and the sync (the others forward to it).
    #[wasm_bindgen(js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.session.is_leader()
    }

    /// The terminal and branch this database belongs to (given at open, or
    /// learnt from the API key when it was paired), and whether the key is
    /// kept in the encrypted store.
    #[wasm_bindgen(unchecked_return_type = "Identity")]
    pub fn identity(&self) -> Result<JsValue, JsValue> {
        let v = serde_json::to_value(self.session.identity())
            .map_err(|e| ApiError::internal(e).into_js())?;
        value_to_js(&v)
    }

    /// Closes this tab's connection; another tab takes over the sync.
    pub fn close(&self) {
        self.session.shutdown();
    }

    /// Destroys the local database and its wrapped key: everything not yet
    /// synced is lost. Other tabs of the same database see `STORE_GONE`.
    #[wasm_bindgen(unchecked_return_type = "undefined")]
    pub async fn wipe(&self) -> Result<JsValue, JsValue> {
        self.session.shutdown();
        IdbStore::destroy(self.session.db_name())
            .await
            .map_err(|e| ApiError::new(e.code(), e.to_string()).into_js())?;
        Ok(JsValue::UNDEFINED)
    }
}
