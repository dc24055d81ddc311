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
use super::schema::{Codec, AUDIT, CONFLICTS, ENTITIES, KEYRING, META, OUTBOX};
use crate::protocol::EntityKey;
use crate::store::*;
use async_trait::async_trait;
use js_sys::{Array, Uint8Array};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbKeyRange, IdbTransaction};

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
        let bytes =
            bytes_of(v).ok_or_else(|| corrupt(store, format!("record {label:?} is not bytes")))?;
        match &self.inner.codec {
            Codec::Plain => serde_json::from_slice(&bytes).map_err(|e| corrupt(store, e)),
            Codec::Sealed(c) => {
                let plain = c.borrow().open_value(store, label, &bytes).map_err(|e| {
                    if matches!(e, crate::crypto::CipherError::UnknownKey(_)) {
                        self.inner.unknown_key.set(true);
                    }
                    corrupt(store, e)
                })?;
                serde_json::from_slice(&plain).map_err(|e| corrupt(store, e))
            }
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

    async fn get(&self, key: &EntityKey) -> Result<Option<EntityRecord>, StoreError> {
        self.fresh(|| self.get_inner(key)).await
    }

    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        self.fresh(|| self.get_many_inner(keys)).await
    }

    async fn scan(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        self.fresh(|| self.scan_inner(collection)).await
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
        // 1. Seal everything, synchronously, before the transaction exists.
        let json = |v: &dyn erased::Json| v.to_json();
        let mut reqs: Vec<Req> = Vec::with_capacity(batch.ops.len() + 1);
        for op in &batch.ops {
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
            };
            reqs.push(r);
        }
        let cipher = match &self.inner.codec {
            Codec::Sealed(c) => Some(c),
            Codec::Plain => None,
        };
        let mut stores: Vec<&str> = reqs.iter().map(|r| r.store).collect();
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
            if let Some(cipher) = cipher {
                match self.update_mark(&tx, cipher, &batch, &reqs).await {
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
            done.await.map(|_| ()).map_err(|e| idb::store_error(&e))
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
        let (k, label) = self.entity_key(ENTITIES, key);
        let rec: Option<EntityRecord> = self.get_one(ENTITIES, &k, &label).await?;
        if let Some(r) = &rec {
            if &r.key != key {
                return Err(corrupt(ENTITIES, "record under another entity's key"));
            }
        }
        Ok(rec)
    }

    async fn get_many_inner(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction: issue every get, then await them in order.
        let tx = self.tx(&[ENTITIES], false)?;
        let os = tx
            .object_store(ENTITIES)
            .map_err(|e| idb::store_error(&e))?;
        let mut pending = Vec::with_capacity(keys.len());
        for key in keys {
            let (k, label) = self.entity_key(ENTITIES, key);
            pending.push((idb::issued(os.get(&k))?, label));
        }
        let mut out = Vec::with_capacity(keys.len());
        for ((req, label), key) in pending.iter().zip(keys) {
            let v = idb::request(req).await?;
            if v.is_undefined() {
                out.push(None);
                continue;
            }
            let r: EntityRecord = self.open_value(ENTITIES, label, &v)?;
            if &r.key != key {
                return Err(corrupt(ENTITIES, "record under another entity's key"));
            }
            out.push(Some(r));
        }
        Ok(out)
    }

    async fn scan_inner(&self, collection: &str) -> Result<Vec<EntityRecord>, StoreError> {
        let range = self.collection_range(collection)?;
        let (keys, values) = self.get_all(ENTITIES, Some(&range)).await?;
        let mut out = Vec::with_capacity(values.length() as usize);
        for (k, v) in keys.iter().zip(values.iter()) {
            let r: EntityRecord = self.open_value(ENTITIES, &Self::pair_label(&k), &v)?;
            if r.key.collection != collection {
                return Err(corrupt(ENTITIES, "record under another collection"));
            }
            out.push(r);
        }
        out.sort_by(|a, b| a.key.id.cmp(&b.key.id));
        Ok(out)
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
            let r: EntityRecord = self.open_value(ENTITIES, &Self::pair_label(&k), &v)?;
            out.push(r.key.collection);
            let a: &Array = k.unchecked_ref();
            let next: Array = [a.get(0), Array::new().into()].into_iter().collect();
            cursor
                .continue_with_key(&next)
                .map_err(|e| idb::store_error(&e))?;
        }
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
struct Req {
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

/// Object stores covered by the integrity mark, with how a raw IndexedDB
/// key becomes the record's label.
type LabelOf = fn(&JsValue) -> String;
const MARKED: [(&str, LabelOf); 5] = [
    (ENTITIES, IdbStore::pair_label),
    (CONFLICTS, IdbStore::pair_label),
    (OUTBOX, IdbStore::seq_label),
    (AUDIT, IdbStore::seq_label),
    (META, IdbStore::meta_label),
];

/// Records read per request when the mark is checked.
const VERIFY_PAGE: u32 = 2_000;

impl IdbStore {
    fn meta_label(k: &JsValue) -> String {
        k.as_string().unwrap_or_default()
    }

    /// Inside the commit's transaction `tx`: merges the stored key ring,
    /// reads the old value of every record `reqs` replaces or deletes, and
    /// returns the sealed ring whose mark covers the records after the
    /// commit.
    async fn update_mark(
        &self,
        tx: &IdbTransaction,
        cipher: &std::cell::RefCell<crate::crypto::StoreCipher>,
        batch: &WriteBatch,
        reqs: &[Req],
    ) -> Result<Vec<u8>, StoreError> {
        use std::collections::BTreeMap;
        let ring_os = tx.object_store(KEYRING).map_err(|e| idb::store_error(&e))?;
        let ring_req = idb::issued(ring_os.get(&"ring".into()))?;
        // The record each request names, as it is before the commit.
        let mut olds: BTreeMap<(&str, &str), Option<[u8; 32]>> = BTreeMap::new();
        let mut pending = Vec::new();
        for r in reqs {
            if olds.insert((r.store, r.label.as_str()), None).is_none() {
                let os = tx.object_store(r.store).map_err(|e| idb::store_error(&e))?;
                pending.push(((r.store, r.label.as_str()), idb::issued(os.get(&r.key))?));
            }
        }
        let stored_ring = bytes_of(&idb::request(&ring_req).await?)
            .ok_or_else(|| corrupt(KEYRING, "the key ring is missing"))?;
        cipher
            .borrow_mut()
            .merge_stored_ring(&stored_ring)
            .map_err(|e| corrupt(KEYRING, e))?;
        let mut old_bytes = Vec::with_capacity(pending.len());
        for (k, req) in pending {
            if let Some(b) = bytes_of(&idb::request(&req).await?) {
                old_bytes.push((k, b));
            }
        }
        let mut c = cipher.borrow_mut();
        for (k, b) in old_bytes {
            olds.insert(k, Some(c.record_tag(k.0, k.1, &b)));
        }
        if let Some(mut mark) = c.mark() {
            for r in reqs {
                let slot = olds.get_mut(&(r.store, r.label.as_str())).expect("read");
                if let Some(t) = slot.take() {
                    mark.toggle(&t);
                    mark.count = mark.count.saturating_sub(1);
                }
                if let Some(v) = &r.value {
                    let b = bytes_of(v).expect("sealed bytes");
                    let t = c.record_tag(r.store, &r.label, &b);
                    mark.toggle(&t);
                    mark.count += 1;
                    *slot = Some(t);
                }
            }
            for op in &batch.ops {
                match op {
                    WriteOp::PutOutbox(e) => {
                        mark.next_outbox_seq = mark.next_outbox_seq.max(e.seq + 1)
                    }
                    WriteOp::AppendAudit(a) => {
                        mark.next_audit_seq = mark.next_audit_seq.max(a.seq + 1)
                    }
                    _ => {}
                }
            }
            mark.generation += 1;
            c.set_mark(mark);
        }
        c.sealed_ring()
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Checks every record against the integrity mark, in one transaction
    /// (a store written before marks existed gets one here). A record
    /// rolled back to an older sealed value, removed or added outside
    /// tidesync makes the store `STORE_CORRUPT`; nothing is changed.
    async fn verify_mark(&self) -> Result<(), StoreError> {
        let Codec::Sealed(cipher) = &self.inner.codec else {
            return Ok(());
        };
        let migrate = cipher.borrow().mark().is_none();
        let mut stores: Vec<&str> = MARKED.iter().map(|(s, _)| *s).collect();
        stores.push(KEYRING);
        let tx = self.tx(&stores, migrate)?;
        let done = migrate.then(|| idb::completion(&tx));
        let ring_os = tx.object_store(KEYRING).map_err(|e| idb::store_error(&e))?;
        let stored_ring =
            bytes_of(&idb::request(&idb::issued(ring_os.get(&"ring".into()))?).await?)
                .ok_or_else(|| corrupt(KEYRING, "the key ring is missing"))?;
        cipher
            .borrow_mut()
            .merge_stored_ring(&stored_ring)
            .map_err(|e| corrupt(KEYRING, e))?;
        let mut found = crate::crypto::Mark::default();
        for (store, label_of) in MARKED {
            let os = tx.object_store(store).map_err(|e| idb::store_error(&e))?;
            let mut after: Option<JsValue> = None;
            loop {
                let range = match &after {
                    None => None,
                    Some(k) => Some(
                        IdbKeyRange::lower_bound_with_open(k, true)
                            .map_err(|e| idb::store_error(&e))?,
                    ),
                };
                let (kr, vr) = match &range {
                    None => (
                        idb::issued(
                            os.get_all_keys_with_key_and_limit(&JsValue::UNDEFINED, VERIFY_PAGE),
                        )?,
                        idb::issued(
                            os.get_all_with_key_and_limit(&JsValue::UNDEFINED, VERIFY_PAGE),
                        )?,
                    ),
                    Some(r) => (
                        idb::issued(os.get_all_keys_with_key_and_limit(r, VERIFY_PAGE))?,
                        idb::issued(os.get_all_with_key_and_limit(r, VERIFY_PAGE))?,
                    ),
                };
                let keys: Array = idb::request(&kr).await?.unchecked_into();
                let values: Array = idb::request(&vr).await?.unchecked_into();
                let c = cipher.borrow();
                for (k, v) in keys.iter().zip(values.iter()) {
                    let label = label_of(&k);
                    let b = bytes_of(&v)
                        .ok_or_else(|| corrupt(store, format!("record {label:?} is not bytes")))?;
                    found.toggle(&c.record_tag(store, &label, &b));
                    found.count += 1;
                    let seq = k.as_f64().map(|f| f as u64 + 1).unwrap_or(0);
                    match store {
                        OUTBOX => found.next_outbox_seq = found.next_outbox_seq.max(seq),
                        AUDIT => found.next_audit_seq = found.next_audit_seq.max(seq),
                        _ => {}
                    }
                }
                if keys.length() < VERIFY_PAGE {
                    break;
                }
                after = Some(keys.get(keys.length() - 1));
            }
        }
        let stored_mark = cipher.borrow().mark();
        match stored_mark {
            Some(mark) => {
                let behind = found.next_outbox_seq > mark.next_outbox_seq
                    || found.next_audit_seq > mark.next_audit_seq;
                if found.count != mark.count || found.digest != mark.digest || behind {
                    return Err(StoreError::Corrupt(format!(
                        "the store's records do not match its sealed integrity mark \
                         ({} records found, {} expected at commit {}): a record was rolled \
                         back to an older copy, removed or added outside tidesync. Nothing \
                         was changed",
                        found.count, mark.count, mark.generation
                    )));
                }
                Ok(())
            }
            None => {
                // First open by a build with marks: the records as they are.
                let ring = {
                    let mut c = cipher.borrow_mut();
                    c.set_mark(found);
                    c.sealed_ring()
                        .map_err(|e| StoreError::Backend(e.to_string()))?
                };
                ring_os
                    .put_with_key(&Uint8Array::from(&ring[..]), &"ring".into())
                    .map_err(|e| idb::store_error(&e))?;
                done.expect("readwrite")
                    .await
                    .map(|_| ())
                    .map_err(|e| idb::store_error(&e))
            }
        }
    }

    /// Re-reads the stored key ring (another tab may have added a data key).
    async fn refresh_ring(&self) -> Result<(), StoreError> {
        let Codec::Sealed(cipher) = &self.inner.codec else {
            return Ok(());
        };
        let tx = self.tx(&[KEYRING], false)?;
        let os = tx.object_store(KEYRING).map_err(|e| idb::store_error(&e))?;
        let ring = bytes_of(&idb::request(&idb::issued(os.get(&"ring".into()))?).await?)
            .ok_or_else(|| corrupt(KEYRING, "the key ring is missing"))?;
        cipher
            .borrow_mut()
            .merge_stored_ring(&ring)
            .map_err(|e| corrupt(KEYRING, e))
    }

    /// Runs a read; if it met a data key this connection's ring lacks
    /// (another tab rotated), reloads the ring and runs it once more.
    async fn fresh<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        self.inner.unknown_key.set(false);
        match read().await {
            Err(_) if self.inner.unknown_key.replace(false) => {
                self.refresh_ring().await?;
                read().await
            }
            r => r,
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
