//! Packed pages in IndexedDB (schema 3; the layout is in
//! [`crate::store::paged`]).
//!
//! Two places hold entity records:
//! - `pages` `[collection tag, n]`: sealed pages of many records each,
//!   sorted by id, and `dirs` `collection tag`: one sealed [`Directory`]
//!   per collection. A batch that writes at least [`BULK_MIN`] records of a
//!   collection (a snapshot or change page) is written here.
//! - `entities` `[collection tag, id tag]`: one sealed record each (the
//!   schema-2 layout, so a schema-2 database reads as it is). Small batches
//!   (a local write) land here. A record here wins over the same id in a
//!   page; a removal of an id a page may hold is kept here as a tombstone.
//!
//! Each bulk write folds the collection's small records (up to
//! [`FOLD_MAX`] at a time) into its pages and removes them, in the same
//! transaction, with a compare-and-swap: the directory and every folded
//! record must still be what was read, or the commit aborts and is planned
//! again, so a write by another connection in between is never lost.
//!
//! Reads get the directory and the small records in one transaction and
//! then the pages they need in the same one, so they see one consistent
//! state. Pages are immutable, so a decoded page is cached by number; a
//! directory is cached with its sealed bytes and used again only while the
//! stored bytes are the same.

use super::{bytes_of, corrupt, idb, Codec, IdbStore, Req};
use super::{DIRS, ENTITIES, PAGES};
use crate::protocol::EntityKey;
use crate::store::paged::{self, Change, Directory, PageBody};
use crate::store::{EntityRecord, StoreError, WriteOp};
use js_sys::Array;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbObjectStore, IdbTransaction};

/// A batch with at least this many entity writes to one collection writes
/// that collection's records into pages.
pub const BULK_MIN: usize = 64;
/// Small records folded into pages by one bulk write, at most.
pub const FOLD_MAX: u32 = 4_000;
/// Decoded pages kept.
const PAGE_CACHE: usize = 48;
/// A read of more keys than this learns which small records exist from
/// their keys alone (one request), instead of a get per key.
const KEYS_AT_ONCE: usize = 16;

/// Caches of one connection.
#[derive(Default)]
pub(crate) struct PageCaches {
    /// By collection tag: the directory's stored bytes and the directory.
    dirs: RefCell<HashMap<String, CachedDir>>,
    /// Decoded pages by (collection tag, n), most recent last.
    pages: RefCell<VecDeque<CachedPage>>,
}

/// A directory's stored bytes and the directory.
type CachedDir = (Vec<u8>, Rc<Directory>);
/// A decoded page by (collection tag, n).
type CachedPage = ((String, u64), Rc<PageBody>);

#[derive(Serialize, Deserialize)]
struct Tombstone {
    removed: bool,
    key: EntityKey,
}

const TOMBSTONE_PREFIX: &[u8] = b"{\"removed\":";

/// What a bulk commit expects to find, compared inside its transaction.
pub(crate) struct Expect {
    store: &'static str,
    key: JsValue,
    bytes: Option<Vec<u8>>,
}

impl Expect {
    pub(crate) fn store(&self) -> &'static str {
        self.store
    }
}

fn os(tx: &IdbTransaction, store: &str) -> Result<IdbObjectStore, StoreError> {
    tx.object_store(store).map_err(|e| idb::store_error(&e))
}

impl IdbStore {
    /// The storage tag of a collection (its keyed hash when sealed).
    pub(crate) fn collection_tag(&self, collection: &str) -> String {
        match &self.inner.codec {
            Codec::Plain => collection.to_string(),
            Codec::Sealed(c) => c.borrow().hash_key("collection", collection),
        }
    }

    fn page_key(tag: &str, n: u64) -> (JsValue, String) {
        let k: Array = [JsValue::from_str(tag), JsValue::from_f64(n as f64)]
            .into_iter()
            .collect();
        (k.into(), format!("{tag}/{n}"))
    }

    /// The label of a raw page key (the integrity mark's record name).
    pub(crate) fn page_label(k: &JsValue) -> String {
        let a: &Array = k.unchecked_ref();
        format!(
            "{}/{}",
            a.get(0).as_string().unwrap_or_default(),
            a.get(1).as_f64().unwrap_or(-1.0) as u64
        )
    }

    /// Decodes a small record's value: the record, or `None` for the
    /// tombstone of a removed id.
    pub(crate) fn open_small(
        &self,
        label: &str,
        v: &JsValue,
        key: Option<&EntityKey>,
    ) -> Result<Option<EntityRecord>, StoreError> {
        let plain = self.open_raw(ENTITIES, label, v)?;
        let out = if plain.starts_with(TOMBSTONE_PREFIX) {
            let t: Tombstone = serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
            if key.is_some_and(|k| *k != t.key) {
                return Err(corrupt(ENTITIES, "record under another entity's key"));
            }
            None
        } else {
            let r: EntityRecord =
                serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
            if key.is_some_and(|k| *k != r.key) {
                return Err(corrupt(ENTITIES, "record under another entity's key"));
            }
            Some(r)
        };
        Ok(out)
    }

    /// The sealed tombstone of `key`.
    pub(crate) fn tombstone(&self, key: &EntityKey, label: &str) -> Result<JsValue, StoreError> {
        let t = serde_json::to_vec(&Tombstone {
            removed: true,
            key: key.clone(),
        })
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.seal(ENTITIES, label, &t)
    }

    /// The directory stored as `raw` (absent: empty), through the cache.
    fn directory(
        &self,
        tag: &str,
        collection: &str,
        raw: &JsValue,
    ) -> Result<Rc<Directory>, StoreError> {
        if raw.is_undefined() {
            return Ok(Rc::new(Directory::new(collection)));
        }
        let bytes = bytes_of(raw).ok_or_else(|| corrupt(DIRS, "a directory is not bytes"))?;
        if let Some((b, d)) = self.inner.pages.dirs.borrow().get(tag) {
            if *b == bytes {
                return Ok(d.clone());
            }
        }
        let plain = self.open_raw_bytes(DIRS, tag, &bytes)?;
        let d: Directory = serde_json::from_slice(&plain).map_err(|e| corrupt(DIRS, e))?;
        if d.collection != collection && !collection.is_empty() {
            return Err(corrupt(DIRS, "a directory under another collection"));
        }
        let d = Rc::new(d);
        self.inner
            .pages
            .dirs
            .borrow_mut()
            .insert(tag.to_string(), (bytes, d.clone()));
        Ok(d)
    }

    fn cached_page(&self, tag: &str, n: u64) -> Option<Rc<PageBody>> {
        let mut c = self.inner.pages.pages.borrow_mut();
        let i = c.iter().position(|((t, m), _)| t == tag && *m == n)?;
        let e = c.remove(i).expect("found");
        let body = e.1.clone();
        c.push_back(e);
        Some(body)
    }

    fn cache_page(&self, tag: &str, n: u64, body: Rc<PageBody>) {
        let mut c = self.inner.pages.pages.borrow_mut();
        c.retain(|((t, m), _)| !(t == tag && *m == n));
        c.push_back(((tag.to_string(), n), body));
        while c.len() > PAGE_CACHE {
            c.pop_front();
        }
    }

    fn decode_page(
        &self,
        tag: &str,
        n: u64,
        collection: &str,
        raw: &JsValue,
    ) -> Result<Rc<PageBody>, StoreError> {
        let (_, label) = Self::page_key(tag, n);
        if raw.is_undefined() {
            return Err(corrupt(PAGES, format!("page {label:?} is missing")));
        }
        let plain = self.open_raw(PAGES, &label, raw)?;
        let body = PageBody::decode(&plain).map_err(|e| corrupt(PAGES, e))?;
        if body.collection != collection {
            return Err(corrupt(PAGES, "a page under another collection"));
        }
        let body = Rc::new(body);
        self.cache_page(tag, n, body.clone());
        Ok(body)
    }

    /// Inside `tx`: the pages numbered `ns` of one collection, from the
    /// cache or read (all requests issued at once).
    async fn pages_in(
        &self,
        tx: &IdbTransaction,
        tag: &str,
        collection: &str,
        ns: &[u64],
    ) -> Result<HashMap<u64, Rc<PageBody>>, StoreError> {
        let mut out = HashMap::with_capacity(ns.len());
        let mut reqs = Vec::new();
        let pages = os(tx, PAGES)?;
        for &n in ns {
            match self.cached_page(tag, n) {
                Some(b) => {
                    out.insert(n, b);
                }
                None => {
                    let (k, _) = Self::page_key(tag, n);
                    reqs.push((n, idb::issued(pages.get(&k))?));
                }
            }
        }
        for (n, r) in reqs {
            let raw = idb::request(&r).await?;
            out.insert(n, self.decode_page(tag, n, collection, &raw)?);
        }
        Ok(out)
    }

    /// Reads entity records: the small record if there is one, else the
    /// page that holds the id. One transaction.
    pub(crate) async fn read_entities(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<EntityRecord>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.tx(&[ENTITIES, PAGES, DIRS], false)?;
        let ents = os(&tx, ENTITIES)?;
        let dirs = os(&tx, DIRS)?;
        let mut collections: Vec<&str> = keys.iter().map(|k| k.collection.as_str()).collect();
        collections.sort_unstable();
        collections.dedup();
        let mut dir_reqs = Vec::with_capacity(collections.len());
        let mut held: HashMap<&str, HashSet<String>> = HashMap::new();
        let mut held_reqs = Vec::new();
        for c in &collections {
            let tag = self.collection_tag(c);
            dir_reqs.push((
                *c,
                tag.clone(),
                idb::issued(dirs.get(&tag.as_str().into()))?,
            ));
            if keys.len() > KEYS_AT_ONCE {
                let range = self.collection_range(c)?;
                held_reqs.push((*c, idb::issued(ents.get_all_keys_with_key(&range))?));
            }
        }
        for (c, r) in held_reqs {
            let ks: Array = idb::request(&r).await?.unchecked_into();
            held.insert(
                c,
                ks.iter()
                    .map(|k| {
                        let a: &Array = k.unchecked_ref();
                        a.get(1).as_string().unwrap_or_default()
                    })
                    .collect(),
            );
        }
        // The small records (only those that exist, when their keys were read).
        let mut small_reqs = Vec::with_capacity(keys.len());
        for key in keys {
            // No single records in the collection (a first sync): nothing
            // to look up, and no key to hash.
            if held
                .get(key.collection.as_str())
                .is_some_and(|s| s.is_empty())
            {
                small_reqs.push(None);
                continue;
            }
            let (k, label) = self.entity_key(ENTITIES, key);
            let exists = match held.get(key.collection.as_str()) {
                None => true,
                Some(set) => {
                    let a: &Array = k.unchecked_ref();
                    set.contains(&a.get(1).as_string().unwrap_or_default())
                }
            };
            small_reqs.push(if exists {
                Some((idb::issued(ents.get(&k))?, label))
            } else {
                None
            });
        }
        let mut directories: HashMap<&str, (String, Rc<Directory>)> = HashMap::new();
        for (c, tag, r) in dir_reqs {
            let raw = idb::request(&r).await?;
            let d = self.directory(&tag, c, &raw)?;
            directories.insert(c, (tag, d));
        }
        let mut out: Vec<Option<Option<EntityRecord>>> = Vec::with_capacity(keys.len());
        for (req, key) in small_reqs.into_iter().zip(keys) {
            let Some((req, label)) = req else {
                out.push(None);
                continue;
            };
            let v = idb::request(&req).await?;
            if v.is_undefined() {
                out.push(None);
                continue;
            }
            out.push(Some(self.open_small(&label, &v, Some(key))?));
        }
        // The pages of the ids not answered by a small record.
        let mut need: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (o, key) in out.iter().zip(keys) {
            if o.is_none() {
                let (_, d) = &directories[key.collection.as_str()];
                if let Some(p) = d.holder(&key.id) {
                    need.entry(key.collection.as_str()).or_default().push(p.n);
                }
            }
        }
        let mut bodies: HashMap<&str, HashMap<u64, Rc<PageBody>>> = HashMap::new();
        for (c, mut ns) in need {
            ns.sort_unstable();
            ns.dedup();
            let (tag, _) = &directories[c];
            bodies.insert(c, self.pages_in(&tx, tag, c, &ns).await?);
        }
        let mut answers = Vec::with_capacity(keys.len());
        for (o, key) in out.into_iter().zip(keys) {
            answers.push(match o {
                Some(r) => r,
                None => {
                    let (_, d) = &directories[key.collection.as_str()];
                    match d.holder(&key.id) {
                        None => None,
                        Some(p) => bodies[key.collection.as_str()][&p.n]
                            .get(&key.id)
                            .map_err(|e| corrupt(PAGES, e))?,
                    }
                }
            });
        }
        Ok(answers)
    }

    /// The records of a collection with an id after `after`, at most
    /// `limit` (all: `usize::MAX`), ordered by id. Reads the small records
    /// of the collection and only the pages it needs.
    pub(crate) async fn read_collection(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let tag = self.collection_tag(collection);
        let tx = self.tx(&[ENTITIES, PAGES, DIRS], false)?;
        let dir_req = idb::issued(os(&tx, DIRS)?.get(&tag.as_str().into()))?;
        let (keys, values) = {
            let range = self.collection_range(collection)?;
            let ents = os(&tx, ENTITIES)?;
            (
                idb::issued(ents.get_all_keys_with_key(&range))?,
                idb::issued(ents.get_all_with_key(&range))?,
            )
        };
        let dir = self.directory(&tag, collection, &idb::request(&dir_req).await?)?;
        let keys: Array = idb::request(&keys).await?.unchecked_into();
        let values: Array = idb::request(&values).await?.unchecked_into();
        let mut small: BTreeMap<String, Option<EntityRecord>> = BTreeMap::new();
        for (k, v) in keys.iter().zip(values.iter()) {
            let label = Self::pair_label(&k);
            let plain = self.open_raw(ENTITIES, &label, &v)?;
            if plain.starts_with(TOMBSTONE_PREFIX) {
                let t: Tombstone =
                    serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
                if t.key.collection != collection {
                    return Err(corrupt(ENTITIES, "record under another collection"));
                }
                small.insert(t.key.id, None);
            } else {
                let r: EntityRecord =
                    serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
                if r.key.collection != collection {
                    return Err(corrupt(ENTITIES, "record under another collection"));
                }
                small.insert(r.key.id.clone(), Some(r));
            }
        }
        let after_ok = |id: &str| after.is_none_or(|a| id > a);
        let removed = small
            .iter()
            .filter(|(id, r)| r.is_none() && after_ok(id))
            .count();
        // Page records after `after`, page by page, until enough are found
        // that survive the small records' removals.
        let mut from_pages: Vec<(Rc<PageBody>, usize)> = Vec::new();
        let refs = dir.pages_after(after);
        let mut i = 0;
        while i < refs.len() && from_pages.len() < limit.saturating_add(removed) {
            // A few pages per round trip.
            let ns: Vec<u64> = refs[i..].iter().take(4).map(|p| p.n).collect();
            let bodies = self.pages_in(&tx, &tag, collection, &ns).await?;
            for n in &ns {
                let b = &bodies[n];
                let start = match after {
                    None => 0,
                    Some(a) => b.ids.partition_point(|id| id.as_str() <= a),
                };
                for j in start..b.ids.len() {
                    from_pages.push((b.clone(), j));
                }
            }
            i += ns.len();
        }
        // Merge: a small record wins over a page's; a tombstone removes.
        let mut out: Vec<EntityRecord> = Vec::new();
        let mut small_after = small.range::<str, _>((
            after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
            std::ops::Bound::Unbounded,
        ));
        let mut next_small = small_after.next();
        let mut pages = from_pages.into_iter().peekable();
        while out.len() < limit {
            let page_id = pages.peek().map(|(b, j)| b.ids[*j].as_str());
            match (next_small, page_id) {
                (None, None) => break,
                (Some((sid, r)), p) if p.is_none_or(|p| sid.as_str() <= p) => {
                    if p == Some(sid.as_str()) {
                        pages.next();
                    }
                    if let Some(r) = r {
                        out.push(r.clone());
                    }
                    next_small = small_after.next();
                }
                _ => {
                    let (b, j) = pages.next().expect("peeked");
                    out.push(b.record(j).map_err(|e| corrupt(PAGES, e))?);
                }
            }
        }
        Ok(out)
    }

    /// The collections that have pages, by reading every directory.
    pub(crate) async fn paged_collections(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.tx(&[DIRS], false)?;
        let dirs = os(&tx, DIRS)?;
        let kr = idb::issued(dirs.get_all_keys())?;
        let vr = idb::issued(dirs.get_all())?;
        let keys: Array = idb::request(&kr).await?.unchecked_into();
        let values: Array = idb::request(&vr).await?.unchecked_into();
        let mut out = Vec::new();
        for (k, v) in keys.iter().zip(values.iter()) {
            let tag = k.as_string().unwrap_or_default();
            let d = self.directory(&tag, "", &v)?;
            if d.count() > 0 {
                out.push(d.collection.clone());
            }
        }
        Ok(out)
    }

    /// Plans the paged part of a commit: for each collection in `bulk`, the
    /// pages and directory to write, the small records folded in (removed),
    /// and what the commit expects to find. `small_deletes`: removals in the
    /// other collections, which become tombstones where a page may hold the
    /// id. Reads in one transaction.
    pub(crate) async fn plan_pages(
        &self,
        bulk: &BTreeMap<String, BTreeMap<String, Option<&EntityRecord>>>,
        small_deletes: &[&EntityKey],
    ) -> Result<(Vec<Req>, Vec<Expect>, Vec<PlannedCache>), StoreError> {
        let tx = self.tx(&[ENTITIES, PAGES, DIRS], false)?;
        let ents = os(&tx, ENTITIES)?;
        let dirs = os(&tx, DIRS)?;
        let mut reqs = Vec::new();
        let mut expects = Vec::new();
        let mut caches = Vec::new();
        // Small deletes: the directory decides tombstone or delete.
        let mut del_cols: Vec<&str> = small_deletes
            .iter()
            .map(|k| k.collection.as_str())
            .collect();
        del_cols.sort_unstable();
        del_cols.dedup();
        let mut del_dirs = HashMap::new();
        for c in del_cols {
            let tag = self.collection_tag(c);
            let raw = idb::request(&idb::issued(dirs.get(&tag.as_str().into()))?).await?;
            expects.push(Expect {
                store: DIRS,
                key: tag.as_str().into(),
                bytes: bytes_of(&raw),
            });
            del_dirs.insert(c, self.directory(&tag, c, &raw)?);
        }
        for key in small_deletes {
            let (k, label) = self.entity_key(ENTITIES, key);
            if del_dirs[key.collection.as_str()].holder(&key.id).is_some() {
                let v = self.tombstone(key, &label)?;
                reqs.push(Req::put(ENTITIES, k, label, v));
            } else {
                reqs.push(Req::delete(ENTITIES, k, label));
            }
        }
        for (collection, writes) in bulk {
            let tag = self.collection_tag(collection);
            let range = self.collection_range(collection)?;
            let dir_req = idb::issued(dirs.get(&tag.as_str().into()))?;
            let keys_req = idb::issued(ents.get_all_keys_with_key(&range))?;
            let fold_keys = idb::issued(ents.get_all_keys_with_key_and_limit(&range, FOLD_MAX))?;
            let fold_vals = idb::issued(ents.get_all_with_key_and_limit(&range, FOLD_MAX))?;
            let dir_raw = idb::request(&dir_req).await?;
            let dir = self.directory(&tag, collection, &dir_raw)?;
            expects.push(Expect {
                store: DIRS,
                key: tag.as_str().into(),
                bytes: bytes_of(&dir_raw),
            });
            let held: HashSet<String> = {
                let ks: Array = idb::request(&keys_req).await?.unchecked_into();
                ks.iter()
                    .map(|k| {
                        let a: &Array = k.unchecked_ref();
                        a.get(1).as_string().unwrap_or_default()
                    })
                    .collect()
            };
            let mut changes: BTreeMap<String, Change> = BTreeMap::new();
            let mut removed_small: HashSet<String> = HashSet::new();
            let fk: Array = idb::request(&fold_keys).await?.unchecked_into();
            let fv: Array = idb::request(&fold_vals).await?.unchecked_into();
            for (k, v) in fk.iter().zip(fv.iter()) {
                let label = Self::pair_label(&k);
                let plain = self.open_raw(ENTITIES, &label, &v)?;
                let (id, change) = if plain.starts_with(TOMBSTONE_PREFIX) {
                    let t: Tombstone =
                        serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
                    (t.key, Change::Remove)
                } else {
                    let r: EntityRecord =
                        serde_json::from_slice(&plain).map_err(|e| corrupt(ENTITIES, e))?;
                    (r.key, Change::Put(plain.to_vec().into()))
                };
                if id.collection != *collection {
                    return Err(corrupt(ENTITIES, "record under another collection"));
                }
                let a: &Array = k.unchecked_ref();
                removed_small.insert(a.get(1).as_string().unwrap_or_default());
                expects.push(Expect {
                    store: ENTITIES,
                    key: k.clone(),
                    bytes: bytes_of(&v),
                });
                reqs.push(Req::delete(ENTITIES, k, label));
                changes.insert(id.id, change);
            }
            for (id, w) in writes {
                if !held.is_empty() {
                    let key = EntityKey::new(collection.clone(), id.clone());
                    let (k, label) = self.entity_key(ENTITIES, &key);
                    let a: &Array = k.unchecked_ref();
                    let itag = a.get(1).as_string().unwrap_or_default();
                    if held.contains(&itag) && !removed_small.contains(&itag) {
                        reqs.push(Req::delete(ENTITIES, k.clone(), label));
                    }
                }
                changes.insert(
                    id.clone(),
                    match w {
                        Some(r) => Change::Put(
                            serde_json::to_vec(r)
                                .map_err(|e| StoreError::Backend(e.to_string()))?
                                .into(),
                        ),
                        None => Change::Remove,
                    },
                );
            }
            let need = paged::pages_to_read(&dir, changes.keys().map(|s| s.as_str()));
            let bodies: HashMap<u64, PageBody> = self
                .pages_in(&tx, &tag, collection, &need)
                .await?
                .into_iter()
                .map(|(n, b)| (n, (*b).clone()))
                .collect();
            let rw = paged::plan(&dir, &bodies, changes).map_err(|e| corrupt(PAGES, e))?;
            for n in rw.remove {
                let (k, label) = Self::page_key(&tag, n);
                reqs.push(Req::delete(PAGES, k, label));
            }
            let mut new_pages = Vec::with_capacity(rw.write.len());
            for (n, body) in rw.write {
                let (k, label) = Self::page_key(&tag, n);
                let v = self.seal(PAGES, &label, &body.encode())?;
                reqs.push(Req::put(PAGES, k, label, v));
                new_pages.push((n, Rc::new(body)));
            }
            let dir_key: JsValue = tag.as_str().into();
            let dir_bytes = if rw.dir.pages.is_empty() {
                reqs.push(Req::delete(DIRS, dir_key, tag.clone()));
                None
            } else {
                let json =
                    serde_json::to_vec(&rw.dir).map_err(|e| StoreError::Backend(e.to_string()))?;
                let v = self.seal(DIRS, &tag, &json)?;
                let b = bytes_of(&v);
                reqs.push(Req::put(DIRS, dir_key, tag.clone(), v));
                b
            };
            caches.push(PlannedCache {
                tag,
                dir: dir_bytes.map(|b| (b, Rc::new(rw.dir))),
                pages: new_pages,
            });
        }
        Ok((reqs, expects, caches))
    }

    /// Inside the commit's transaction: every expected record is as it was
    /// read. `false`: another connection changed one (plan again).
    pub(crate) async fn expectations_hold(
        &self,
        tx: &IdbTransaction,
        expects: &[Expect],
    ) -> Result<bool, StoreError> {
        let mut reqs = Vec::with_capacity(expects.len());
        for e in expects {
            reqs.push(idb::issued(os(tx, e.store)?.get(&e.key))?);
        }
        let mut ok = true;
        for (e, r) in expects.iter().zip(reqs) {
            let now = bytes_of(&idb::request(&r).await?);
            ok &= now == e.bytes;
        }
        Ok(ok)
    }

    /// After a bulk commit: the directories and pages it wrote, cached.
    pub(crate) fn remember(&self, caches: Vec<PlannedCache>) {
        for c in caches {
            match c.dir {
                Some(d) => {
                    self.inner.pages.dirs.borrow_mut().insert(c.tag.clone(), d);
                }
                None => {
                    self.inner.pages.dirs.borrow_mut().remove(&c.tag);
                }
            }
            for (n, b) in c.pages {
                self.cache_page(&c.tag, n, b);
            }
        }
    }
}

/// What a planned bulk commit will have stored, for the caches.
pub(crate) struct PlannedCache {
    tag: String,
    dir: Option<CachedDir>,
    pages: Vec<(u64, Rc<PageBody>)>,
}

/// The entity writes of a batch, later writes to a key winning, split into
/// collections written in bulk (at least [`BULK_MIN`] keys) and the rest.
pub(crate) fn split_entity_writes(
    ops: &[WriteOp],
) -> BTreeMap<String, BTreeMap<String, Option<&EntityRecord>>> {
    let mut by: BTreeMap<String, BTreeMap<String, Option<&EntityRecord>>> = BTreeMap::new();
    for op in ops {
        match op {
            WriteOp::PutEntity(r) => {
                by.entry(r.key.collection.clone())
                    .or_default()
                    .insert(r.key.id.clone(), Some(r));
            }
            WriteOp::DeleteEntity(k) => {
                by.entry(k.collection.clone())
                    .or_default()
                    .insert(k.id.clone(), None);
            }
            _ => {}
        }
    }
    by
}
