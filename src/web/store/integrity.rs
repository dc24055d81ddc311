//! The integrity mark of a sealed store (see [`crate::crypto::Mark`]):
//! kept up to date inside each commit's transaction, checked against every
//! record at open, and the key ring merged from storage when another
//! connection (tab) changed it.

use super::{bytes_of, corrupt, idb, Codec, IdbStore, Req};
use super::{AUDIT, CONFLICTS, DIRS, ENTITIES, KEYRING, META, OUTBOX, PAGES};
use crate::store::{StoreError, WriteBatch, WriteOp};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbKeyRange, IdbTransaction};

/// Object stores covered by the integrity mark, with how a raw IndexedDB
/// key becomes the record's label.
type LabelOf = fn(&JsValue) -> String;
const MARKED: [(&str, LabelOf); 7] = [
    (ENTITIES, IdbStore::pair_label),
    (CONFLICTS, IdbStore::pair_label),
    (OUTBOX, IdbStore::seq_label),
    (AUDIT, IdbStore::seq_label),
    (META, IdbStore::meta_label),
    (PAGES, IdbStore::page_label),
    (DIRS, IdbStore::meta_label),
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
    pub(super) async fn update_mark(
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
    pub(super) async fn verify_mark(&self) -> Result<(), StoreError> {
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
    pub(super) async fn fresh<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
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
