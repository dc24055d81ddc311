//! The IndexedDB [`Store`]: one object store per record kind, every value
//! sealed by the [`StoreCipher`] (or plain JSON for an unencrypted store),
//! entity and conflict keys keyed-hashed when sealed.
//!
//! Each [`Store::commit`] seals the whole batch first (synchronously), then
//! opens ONE `readwrite` transaction with `durability: "strict"` over the
//! object stores it touches, issues every put and delete, and awaits only
//! the transaction's completion.
//!
//! The object stores and versions are in [`super::schema`].

use super::idb;
use super::keys::{self, KeySource};
pub use super::schema::{upgrade, OpenError, ALL_STORES, DB_VERSION, VALUE_SCHEMA};
use super::schema::{Codec, AUDIT, CONFLICTS, DIRS, ENTITIES, KEYRING, META, OUTBOX, PAGES};
use crate::protocol::EntityKey;
use crate::store::*;
use async_trait::async_trait;
use js_sys::{Array, Uint8Array};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbKeyRange, IdbTransaction};

/// The key of the stored credential in the meta object store (beside `"meta"`).
const CREDENTIAL: &str = "credential";

mod integrity;
mod pages;

struct Connection {
    name: String,
    db: IdbDatabase,
    codec: Codec,
    gone: Rc<Cell<bool>>,
    /// Armed by [`InjectFaults`]: the next commit aborts its transaction
    /// after issuing this many requests.
    fail_after: Cell<Option<usize>>,
    /// A read met a data key id this connection's ring does not hold.
    unknown_key: Cell<bool>,
    /// Decoded directories and pages.
    pages: pages::PageCaches,
    _listeners: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.db.set_onclose(None);
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// An IndexedDB-backed [`Store`]. Clones share the connection.
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Connection>,
}

impl std::fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.inner.name)
            .field("encrypted", &self.is_encrypted())
            .finish()
    }
}

fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    v.dyn_ref::<Uint8Array>().map(|a| a.to_vec())
}

fn corrupt(store: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{store}: {e}"))
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name` with `key`.
    pub async fn open(name: &str, key: KeySource) -> Result<IdbStore, OpenError> {
        let db = idb::open(name, DB_VERSION, |db, old| upgrade(db, old, DB_VERSION)).await?;
        let gone = Rc::new(Cell::new(false));
        let mut listeners = Vec::new();
        {
            // Another tab deletes the database, or the browser evicts it.
            let g = gone.clone();
            let d = db.clone();
            let on_change = Closure::<dyn FnMut(web_sys::Event)>::new(move |_e| {
                g.set(true);
                d.close();
            });
            db.set_onversionchange(Some(on_change.as_ref().unchecked_ref()));
            listeners.push(on_change);
            let g = gone.clone();
            let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_e| g.set(true));
            db.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            listeners.push(on_close);
        }
        let codec = match keys::open_cipher(&db, key).await {
            Ok(c) => c,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let store = IdbStore {
            inner: Rc::new(Connection {
                name: name.to_string(),
                db,
                codec,
                gone,
                fail_after: Cell::new(None),
                unknown_key: Cell::new(false),
                pages: pages::PageCaches::default(),
                _listeners: listeners,
            }),
        };
        if let Err(e) = store.verify_mark().await {
            store.close();
            return Err(OpenError::Store(e));
        }
        Ok(store)
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Values are sealed.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.inner.codec, Codec::Sealed(_))
    }

    /// The database was closed, deleted or evicted underneath this store.
    pub fn is_gone(&self) -> bool {
        self.inner.gone.get()
    }

    /// The raw connection (tests and benchmarks).
    #[doc(hidden)]
    pub fn database(&self) -> &IdbDatabase {
        &self.inner.db
    }

    #[cfg(test)]
    pub(crate) fn master_key_for_tests(&self) -> Option<[u8; 32]> {
        match &self.inner.codec {
            Codec::Sealed(c) => Some(*c.borrow().master_key()),
            Codec::Plain => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn data_key_for_tests(&self) -> Option<[u8; 32]> {
        match &self.inner.codec {
            Codec::Sealed(c) => Some(c.borrow().current_data_key()),
            Codec::Plain => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn rotate_after_for_tests(&self, n: u64) {
        if let Codec::Sealed(c) = &self.inner.codec {
            c.borrow_mut().set_rotate_after(n);
        }
    }

    #[cfg(test)]
    pub(crate) fn key_id_for_tests(&self) -> Option<u32> {
        match &self.inner.codec {
            Codec::Sealed(c) => Some(c.borrow().current_key_id()),
            Codec::Plain => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn key_uses_for_tests(&self) -> Option<u64> {
        match &self.inner.codec {
            Codec::Sealed(c) => Some(c.borrow().current_key_uses()),
            Codec::Plain => None,
        }
    }

    /// Closes the connection; later calls fail with [`StoreError::Gone`].
    pub fn close(&self) {
        self.inner.gone.set(true);
        self.inner.db.close();
    }

    /// Deletes the database `name`: every record and the wrapped key.
    pub async fn destroy(name: &str) -> Result<(), StoreError> {
        idb::delete(name).await
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.inner.gone.get() {
            Err(StoreError::Gone(format!(
                "database {:?} was closed, deleted or evicted",
                self.inner.name
            )))
        } else {
            Ok(())
        }
    }

    fn tx(&self, stores: &[&str], readwrite: bool) -> Result<IdbTransaction, StoreError> {
        self.check()?;
        idb::transaction(&self.inner.db, stores, readwrite, readwrite).map_err(|e| {
            if matches!(e, StoreError::Gone(_)) {
                self.inner.gone.set(true);
            }
            e
        })
    }

    /// The storage key and AAD label of an entity or conflict record.
    fn entity_key(&self, table: &str, key: &EntityKey) -> (JsValue, String) {
        let (c, i) = match &self.inner.codec {
            Codec::Plain => (key.collection.clone(), key.id.clone()),
            Codec::Sealed(cipher) => {
                let cipher = cipher.borrow();
                let c = cipher.hash_key("collection", &key.collection);
                let i = cipher.hash_key(table, &format!("{}\0{}", key.collection, key.id));
                (c, i)
            }
        };
        let label = format!("{c}/{i}");
        let k: Array = [JsValue::from_str(&c), JsValue::from_str(&i)]
            .into_iter()
            .collect();
        (k.into(), label)
    }

    fn collection_range(&self, collection: &str) -> Result<IdbKeyRange, StoreError> {
        let c = match &self.inner.codec {
            Codec::Plain => collection.to_string(),
            Codec::Sealed(cipher) => cipher.borrow().hash_key("collection", collection),
        };
        let lower: Array = [JsValue::from_str(&c), JsValue::from_str("")]
            .into_iter()
            .collect();
        let upper: Array = [JsValue::from_str(&c), Array::new().into()]
            .into_iter()
            .collect();
        IdbKeyRange::bound(&lower, &upper).map_err(|e| idb::store_error(&e))
    }

    fn seal(&self, store: &str, label: &str, plain: &[u8]) -> Result<JsValue, StoreError> {
        let bytes = match &self.inner.codec {
            Codec::Plain => plain.to_vec(),
            Codec::Sealed(c) => c
                .borrow_mut()
                .seal(store, label, plain)
                .map_err(|e| StoreError::Backend(e.to_string()))?,
        };
        Ok(Uint8Array::from(&bytes[..]).into())
    }

    fn open_value<T: DeserializeOwned>(
        &self,
        store: &str,
        label: &str,
        v: &JsValue,
    ) -> Result<T, StoreError> {
        let plain = self.open_raw(store, label, v)?;
        serde_json::from_slice(&plain).map_err(|e| corrupt(store, e))
    }

    /// A stored value's plaintext.
    fn open_raw(
        &self,
        store: &str,
        label: &str,
        v: &JsValue,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        let bytes =
            bytes_of(v).ok_or_else(|| corrupt(store, format!("record {label:?} is not bytes")))?;
        self.open_raw_bytes(store, label, &bytes)
    }

    fn open_raw_bytes(
        &self,
        store: &str,
        label: &str,
        bytes: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        match &self.inner.codec {
            Codec::Plain => Ok(zeroize::Zeroizing::new(bytes.to_vec())),
            Codec::Sealed(c) => c.borrow().open_value(store, label, bytes).map_err(|e| {
                if matches!(e, crate::crypto::CipherError::UnknownKey(_)) {
                    self.inner.unknown_key.set(true);
                }
                corrupt(store, e)
            }),
        }
    }

    async fn get_one<T: DeserializeOwned>(
        &self,
        store: &str,
        key: &JsValue,
        label: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.tx(&[store], false)?;
        let os = tx.object_store(store).map_err(|e| idb::store_error(&e))?;
        let v = idb::request(&idb::issued(os.get(key))?).await?;
        if v.is_undefined() {
            return Ok(None);
        }
        self.open_value(store, label, &v).map(Some)
    }

    /// Every (key, value) of a store in key order, optionally in a range.
    async fn get_all(
        &self,
        store: &str,
        range: Option<&IdbKeyRange>,
    ) -> Result<(Array, Array), StoreError> {
        let tx = self.tx(&[store], false)?;
        let os = tx.object_store(store).map_err(|e| idb::store_error(&e))?;
        let (kr, vr) = match range {
            Some(r) => (
                idb::issued(os.get_all_keys_with_key(r))?,
                idb::issued(os.get_all_with_key(r))?,
            ),
            None => (idb::issued(os.get_all_keys())?, idb::issued(os.get_all())?),
        };
        let keys = idb::request(&kr).await?;
        let values = idb::request(&vr).await?;
        Ok((keys.unchecked_into(), values.unchecked_into()))
    }

    fn pair_label(k: &JsValue) -> String {
        let a: &Array = k.unchecked_ref();
        format!(
            "{}/{}",
            a.get(0).as_string().unwrap_or_default(),
            a.get(1).as_string().unwrap_or_default()
        )
    }

    fn seq_label(k: &JsValue) -> String {
        format!("{}", k.as_f64().unwrap_or(-1.0) as u64)
    }
}

#[async_trait(?Send)]
impl Store for IdbStore {
    fn health(&self) -> Result<(), StoreError> {
        self.check()
    }

    async fn load_meta(&self) -> Result<Option<SyncMeta>, StoreError> {
        let key = JsValue::from_str("meta");
        self.fresh(|| self.get_one(META, &key, "meta")).await
    }

    async fn load_credential(&self) -> Result<Option<StoredCredential>, StoreError> {
        let key = JsValue::from_str(CREDENTIAL);
        self.fresh(|| self.get_one(META, &key, CREDENTIAL)).await
    }

    fn keeps_secrets(&self) -> bool {
        matches!(self.inner.codec, Codec::Sealed(_))
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        self.fresh(|| self.get_inner(key)).await
    }

    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.fresh(|| self.read_entities(keys)).await
    }

    async fn get_sorted(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.fresh(|| self.read_entities(keys)).await
    }

    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.fresh(|| self.read_collection(collection, None, usize::MAX))
            .await
    }

    async fn scan_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        self.fresh(|| self.read_collection(collection, after, limit))
            .await
    }

    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        self.fresh(|| self.collections_inner()).await
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.fresh(|| self.outbox_inner()).await
    }

    async fn conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        self.fresh(|| self.conflicts_inner()).await
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.fresh(|| self.audit_inner(after, limit)).await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check()?;
        if batch.ops.is_empty() {
            return Ok(());
        }
        let by = pages::split_entity_writes(&batch.ops);
        let bulk: BTreeMap<String, BTreeMap<String, Option<&EntityRecord>>> = by
            .iter()
            .filter(|(_, w)| w.len() >= pages::BULK_MIN)
            .map(|(c, w)| (c.clone(), w.clone()))
            .collect();
        let deletes: Vec<EntityKey> = by
            .iter()
            .filter(|(c, _)| !bulk.contains_key(*c))
            .flat_map(|(c, w)| {
                w.iter()
                    .filter(|(_, r)| r.is_none())
                    .map(|(id, _)| EntityKey::new(c.clone(), id.clone()))
            })
            .collect();
        if bulk.is_empty() && deletes.is_empty() {
            let reqs = self.small_reqs(&batch, &bulk, &[])?;
            return self.write(reqs, &batch, &[]).await.map(|_| ());
        }
        // Planned from what is stored, then committed only if it is still
        // so (another connection may write in between): a few tries.
        let deletes: Vec<&EntityKey> = deletes.iter().collect();
        for _ in 0..5 {
            let (paged, expects, caches) = self.plan_pages(&bulk, &deletes).await?;
            let mut reqs = self.small_reqs(&batch, &bulk, &deletes)?;
            reqs.extend(paged);
            if self.write(reqs, &batch, &expects).await? {
                self.remember(caches);
                return Ok(());
            }
        }
        Err(StoreError::Backend(
            "the store kept changing under this commit (another connection writes to it)".into(),
        ))
    }
}

impl IdbStore {
    /// The requests of a batch's writes, sealed, except the entity writes
    /// of the collections written in `bulk` and the removals in `deletes`
    /// (both planned by [`plan_pages`](Self::plan_pages)).
    fn small_reqs(
        &self,
        batch: &WriteBatch,
        bulk: &BTreeMap<String, BTreeMap<String, Option<&EntityRecord>>>,
        deletes: &[&EntityKey],
    ) -> Result<Vec<Req>, StoreError> {
        let json = |v: &dyn erased::Json| v.to_json();
        let mut reqs: Vec<Req> = Vec::with_capacity(batch.ops.len() + 1);
        for op in &batch.ops {
            match op {
                WriteOp::PutEntity(r) if bulk.contains_key(&r.key.collection) => continue,
                WriteOp::DeleteEntity(k)
                    if bulk.contains_key(&k.collection) || deletes.contains(&k) =>
                {
                    continue
                }
                _ => {}
            }
            let r = match op {
                WriteOp::PutEntity(r) => {
                    let (k, label) = self.entity_key(ENTITIES, &r.key);
                    let v = self.seal(ENTITIES, &label, &json(r)?)?;
                    Req::put(ENTITIES, k, label, v)
                }
                WriteOp::DeleteEntity(key) => {
                    let (k, label) = self.entity_key(ENTITIES, key);
                    Req::delete(ENTITIES, k, label)
                }
                WriteOp::PutOutbox(e) => {
                    let label = e.seq.to_string();
                    let v = self.seal(OUTBOX, &label, &json(e)?)?;
                    Req::put(OUTBOX, JsValue::from_f64(e.seq as f64), label, v)
                }
                WriteOp::DeleteOutbox(seq) => {
                    Req::delete(OUTBOX, JsValue::from_f64(*seq as f64), seq.to_string())
                }
                WriteOp::PutConflict(c) => {
                    let (k, label) = self.entity_key(CONFLICTS, &c.key);
                    let v = self.seal(CONFLICTS, &label, &json(c)?)?;
                    Req::put(CONFLICTS, k, label, v)
                }
                WriteOp::DeleteConflict(key) => {
                    let (k, label) = self.entity_key(CONFLICTS, key);
                    Req::delete(CONFLICTS, k, label)
                }
                WriteOp::AppendAudit(a) => {
                    let label = a.seq.to_string();
                    let v = self.seal(AUDIT, &label, &json(a)?)?;
                    Req::put(AUDIT, JsValue::from_f64(a.seq as f64), label, v)
                }
                WriteOp::PutMeta(m) => {
                    let v = self.seal(META, "meta", &json(m)?)?;
                    Req::put(META, JsValue::from_str("meta"), "meta".into(), v)
                }
                WriteOp::PutCredential(Some(c)) => {
                    if !self.keeps_secrets() {
                        return Err(StoreError::Backend(
                            "refusing to keep an API key in a store that is not encrypted".into(),
                        ));
                    }
                    let v = self.seal(META, CREDENTIAL, &json(c)?)?;
                    Req::put(META, JsValue::from_str(CREDENTIAL), CREDENTIAL.into(), v)
                }
                WriteOp::PutCredential(None) => {
                    Req::delete(META, JsValue::from_str(CREDENTIAL), CREDENTIAL.into())
                }
            };
            reqs.push(r);
        }
        Ok(reqs)
    }

    /// Seals nothing: issues `reqs` in one strict transaction, after
    /// checking `expects` in it. `Ok(false)`: an expectation failed and
    /// nothing was written.
    async fn write(
        &self,
        mut reqs: Vec<Req>,
        batch: &WriteBatch,
        expects: &[pages::Expect],
    ) -> Result<bool, StoreError> {
        let cipher = match &self.inner.codec {
            Codec::Sealed(c) => Some(c),
            Codec::Plain => None,
        };
        let mut stores: Vec<&str> = reqs.iter().map(|r| r.store).collect();
        stores.extend(expects.iter().map(|e| e.store()));
        if cipher.is_some() {
            stores.push(KEYRING);
        }
        stores.sort_unstable();
        stores.dedup();

        // 2. One strict transaction. A sealed store first reads the stored
        // key ring (another tab may have written it) and the old value of
        // every record it replaces or deletes, then issues every write and
        // the ring with the updated integrity mark, and awaits completion.
        let result = async {
            let tx = self.tx(&stores, true)?;
            let done = idb::completion(&tx);
            let abort = |e: StoreError| async {
                let _ = tx.abort();
                let _ = idb::completion(&tx).await;
                e
            };
            if !expects.is_empty() {
                match self.expectations_hold(&tx, expects).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = tx.abort();
                        let _ = done.await;
                        return Ok(false);
                    }
                    Err(e) => return Err(abort(e).await),
                }
            }
            if let Some(cipher) = cipher {
                match self.update_mark(&tx, cipher, batch, &reqs).await {
                    Ok(ring) => reqs.push(Req::put(
                        KEYRING,
                        JsValue::from_str("ring"),
                        "ring".into(),
                        Uint8Array::from(&ring[..]).into(),
                    )),
                    Err(e) => {
                        let _ = tx.abort();
                        let _ = done.await;
                        return Err(e);
                    }
                }
            }
            let fail_after = self.inner.fail_after.take();
            for (i, r) in reqs.iter().enumerate() {
                if fail_after == Some(i) {
                    let _ = tx.abort();
                    let _ = done.await;
                    return Err(StoreError::Backend("injected commit failure".into()));
                }
                let issued = tx.object_store(r.store).and_then(|os| match &r.value {
                    Some(v) => os.put_with_key(v, &r.key),
                    None => os.delete(&r.key),
                });
                if let Err(e) = issued {
                    return Err(abort(idb::store_error(&e)).await);
                }
            }
            if fail_after.is_some() {
                // Armed past the last request: abort before the commit lands.
                let _ = tx.abort();
                let _ = done.await;
                return Err(StoreError::Backend("injected commit failure".into()));
            }
            done.await.map(|_| true).map_err(|e| idb::store_error(&e))
        }
        .await;
        if let Err(StoreError::Gone(_)) = &result {
            self.inner.gone.set(true);
        }
        result
    }
}

impl IdbStore {
    async fn get_inner(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        Ok(self
            .read_entities(std::slice::from_ref(key))
            .await?
            .pop()
            .flatten())
    }

    async fn collections_inner(&self) -> Result<Vec<String>, StoreError> {
        // Walk one record per collection: read it, then jump past the
        // collection's key range.
        let tx = self.tx(&[ENTITIES], false)?;
        let os = tx
            .object_store(ENTITIES)
            .map_err(|e| idb::store_error(&e))?;
        let req = idb::issued(os.open_cursor())?;
        let mut out = Vec::new();
        loop {
            let cursor = idb::request(&req).await?;
            if cursor.is_null() || cursor.is_undefined() {
                break;
            }
            let cursor: web_sys::IdbCursorWithValue = cursor.unchecked_into();
            let k = cursor.key().map_err(|e| idb::store_error(&e))?;
            let v = cursor.value().map_err(|e| idb::store_error(&e))?;
            // A tombstone names a collection that has pages.
            if let Some(r) = self.open_small(&Self::pair_label(&k), &v, None)? {
                out.push(r.key.collection);
            }
            let a: &Array = k.unchecked_ref();
            let next: Array = [a.get(0), Array::new().into()].into_iter().collect();
            cursor
                .continue_with_key(&next)
                .map_err(|e| idb::store_error(&e))?;
        }
        drop(tx);
        out.extend(self.paged_collections().await?);
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn outbox_inner(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let (keys, values) = self.get_all(OUTBOX, None).await?;
        keys.iter()
            .zip(values.iter())
            .map(|(k, v)| self.open_value(OUTBOX, &Self::seq_label(&k), &v))
            .collect()
    }

    async fn conflicts_inner(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        let (keys, values) = self.get_all(CONFLICTS, None).await?;
        let mut out: Vec<ConflictRecord> = keys
            .iter()
            .zip(values.iter())
            .map(|(k, v)| self.open_value(CONFLICTS, &Self::pair_label(&k), &v))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn audit_inner(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let range = IdbKeyRange::lower_bound_with_open(&JsValue::from_f64(after as f64), true)
            .map_err(|e| idb::store_error(&e))?;
        let tx = self.tx(&[AUDIT], false)?;
        let os = tx.object_store(AUDIT).map_err(|e| idb::store_error(&e))?;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let kr = idb::issued(os.get_all_keys_with_key_and_limit(&range, limit))?;
        let vr = idb::issued(os.get_all_with_key_and_limit(&range, limit))?;
        let keys: Array = idb::request(&kr).await?.unchecked_into();
        let values: Array = idb::request(&vr).await?.unchecked_into();
        keys.iter()
            .zip(values.iter())
            .map(|(k, v)| self.open_value(AUDIT, &Self::seq_label(&k), &v))
            .collect()
    }
}

/// One write of a commit: a put (`value`) or a delete, with the record's
/// label (its AAD and integrity-mark name).
pub(crate) struct Req {
    store: &'static str,
    key: JsValue,
    label: String,
    value: Option<JsValue>,
}

impl Req {
    fn put(store: &'static str, key: JsValue, label: String, value: JsValue) -> Self {
        Req {
            store,
            key,
            label,
            value: Some(value),
        }
    }
    fn delete(store: &'static str, key: JsValue, label: String) -> Self {
        Req {
            store,
            key,
            label,
            value: None,
        }
    }
}

impl InjectFaults for IdbStore {
    fn fail_next_commit_after(&self, ops: usize) {
        self.inner.fail_after.set(Some(ops));
    }
}

/// Serialises any record to JSON bytes without naming each type.
mod erased {
    use crate::store::StoreError;

    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, StoreError>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, StoreError> {
            serde_json::to_vec(self).map_err(|e| StoreError::Backend(e.to_string()))
        }
    }
}
