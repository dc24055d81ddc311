//! Packed pages: many entity records of one collection in one stored value,
//! sorted by id, with a directory per collection that says which page holds
//! which id range. The layout and the planning of a rewrite are here, free
//! of any backend, so they are tested natively; the IndexedDB store
//! (`src/web/store/pages.rs`) does the I/O.
//!
//! Pages are immutable: a rewrite gives each new page a fresh number and
//! removes the pages it replaces, so a decoded page can be cached by its
//! number for as long as the store is open, and a reader that holds a
//! directory reads a consistent set of pages in the same transaction.
//!
//! A page's plaintext is `{"c": collection, "ids": [id, ...], "r": [record,
//! ...]}`: the ids beside the records, so a lookup finds a record by a
//! binary search and parses only that record. Records stay JSON text from
//! the commit to the sealed value (a rewrite copies untouched records'
//! bytes as they are).

use super::EntityRecord;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};

/// Records' JSON bytes a page is cut to when a rewrite splits it.
pub const PAGE_TARGET_BYTES: usize = 48 * 1024;
/// A page larger than this after a rewrite is split.
pub const PAGE_MAX_BYTES: usize = 96 * 1024;

/// Where one page's ids lie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// The page's number (its storage key within the collection); never
    /// reused.
    pub n: u64,
    /// Its first id.
    pub first: String,
    /// Its last id.
    pub last: String,
    /// Records in it.
    pub count: u32,
}

/// The pages of one collection, in id order, their ranges disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// The collection.
    pub collection: String,
    /// Its pages, ordered by `first`.
    pub pages: Vec<PageRef>,
    /// The number the next new page gets.
    pub next_n: u64,
}

impl Directory {
    /// An empty directory for `collection`.
    pub fn new(collection: &str) -> Self {
        Directory {
            collection: collection.to_string(),
            pages: Vec::new(),
            next_n: 1,
        }
    }

    /// The index of the page a write of `id` goes to: the last page that
    /// starts at or before it, or the first page (`None`: no pages).
    pub fn home(&self, id: &str) -> Option<usize> {
        if self.pages.is_empty() {
            return None;
        }
        let i = self.pages.partition_point(|p| p.first.as_str() <= id);
        Some(i.saturating_sub(1))
    }

    /// The page that holds `id` if any page does: `id` lies in its range.
    pub fn holder(&self, id: &str) -> Option<&PageRef> {
        let p = &self.pages[self.home(id)?];
        (p.first.as_str() <= id && id <= p.last.as_str()).then_some(p)
    }

    /// Records in all pages.
    pub fn count(&self) -> u64 {
        self.pages.iter().map(|p| u64::from(p.count)).sum()
    }

    /// The pages that may hold ids after `after` (all when `None`), in order.
    pub fn pages_after(&self, after: Option<&str>) -> &[PageRef] {
        match after {
            None => &self.pages,
            Some(a) => {
                let i = self.pages.partition_point(|p| p.last.as_str() <= a);
                &self.pages[i..]
            }
        }
    }
}

/// The decoded content of one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageBody {
    /// The collection.
    pub collection: String,
    /// The ids, sorted, without repeats.
    pub ids: Vec<String>,
    /// Each id's record as JSON text.
    pub records: Vec<Box<[u8]>>,
}

impl PageBody {
    /// The page's plaintext.
    pub fn encode(&self) -> Vec<u8> {
        let bytes: usize = self.records.iter().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(bytes + self.ids.len() * 32 + 64);
        out.extend_from_slice(b"{\"c\":");
        serde_json::to_writer(&mut out, &self.collection).expect("a string");
        out.extend_from_slice(b",\"ids\":");
        serde_json::to_writer(&mut out, &self.ids).expect("strings");
        out.extend_from_slice(b",\"r\":[");
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// Reads a page's plaintext; its ids must be sorted and match its
    /// records one for one.
    pub fn decode(bytes: &[u8]) -> Result<PageBody, String> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            c: String,
            ids: Vec<String>,
            #[serde(borrow)]
            r: Vec<&'a RawValue>,
        }
        let w: Wire<'_> = serde_json::from_slice(bytes).map_err(|e| format!("page: {e}"))?;
        if w.ids.len() != w.r.len() {
            return Err(format!(
                "page: {} ids for {} records",
                w.ids.len(),
                w.r.len()
            ));
        }
        if w.ids.windows(2).any(|p| p[0] >= p[1]) {
            return Err("page: ids out of order".into());
        }
        Ok(PageBody {
            collection: w.c,
            ids: w.ids,
            records: w.r.into_iter().map(|r| r.get().as_bytes().into()).collect(),
        })
    }

    /// The record of `id`, if the page holds it. The record must name this
    /// page's collection and that id.
    pub fn get(&self, id: &str) -> Result<Option<EntityRecord>, String> {
        match self.ids.binary_search_by(|i| i.as_str().cmp(id)) {
            Ok(i) => self.record(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The `i`th record, checked against its id.
    pub fn record(&self, i: usize) -> Result<EntityRecord, String> {
        let r: EntityRecord =
            serde_json::from_slice(&self.records[i]).map_err(|e| format!("page record: {e}"))?;
        if r.key.collection != self.collection || r.key.id != self.ids[i] {
            return Err("page: a record under another entity's id".into());
        }
        Ok(r)
    }

    fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.len()).sum()
    }
}

/// A change to one record of a paged collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace with this record's JSON.
    Put(Box<[u8]>),
    /// Remove.
    Remove,
}

/// What a rewrite stores: the new pages, the pages they replace, and the
/// new directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// New pages, by number.
    pub write: Vec<(u64, PageBody)>,
    /// Pages to remove.
    pub remove: Vec<u64>,
    /// The directory after the rewrite.
    pub dir: Directory,
}

/// The pages a rewrite of `ids` must read first (their numbers).
pub fn pages_to_read<'a>(dir: &Directory, ids: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    let mut out: Vec<u64> = ids
        .into_iter()
        .filter_map(|id| dir.home(id).map(|i| dir.pages[i].n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Plans the rewrite of `changes` into the collection of `dir`. `bodies`
/// holds every page [`pages_to_read`] named for the changes' ids.
pub fn plan(
    dir: &Directory,
    bodies: &HashMap<u64, PageBody>,
    changes: BTreeMap<String, Change>,
) -> Result<Rewrite, String> {
    // Changes grouped by the index of their home page (`usize::MAX`: there
    // are no pages yet).
    let mut groups: BTreeMap<usize, Vec<(String, Change)>> = BTreeMap::new();
    for (id, c) in changes {
        let home = dir.home(&id).unwrap_or(usize::MAX);
        groups.entry(home).or_default().push((id, c));
    }
    let mut out = Rewrite {
        dir: Directory {
            collection: dir.collection.clone(),
            pages: Vec::with_capacity(dir.pages.len() + groups.len()),
            next_n: dir.next_n.max(1),
        },
        ..Rewrite::default()
    };
    let fresh = |records: Vec<(String, Box<[u8]>)>, out: &mut Rewrite| {
        for chunk in split(records) {
            let n = out.dir.next_n;
            out.dir.next_n += 1;
            let body = PageBody {
                collection: dir.collection.clone(),
                ids: chunk.iter().map(|(i, _)| i.clone()).collect(),
                records: chunk.into_iter().map(|(_, r)| r).collect(),
            };
            out.dir.pages.push(PageRef {
                n,
                first: body.ids[0].clone(),
                last: body.ids[body.ids.len() - 1].clone(),
                count: body.ids.len() as u32,
            });
            out.write.push((n, body));
        }
    };
    if let Some(changes) = groups.remove(&usize::MAX) {
        fresh(merge(None, changes), &mut out);
    }
    for (i, page) in dir.pages.iter().enumerate() {
        match groups.remove(&i) {
            None => out.dir.pages.push(page.clone()),
            Some(changes) => {
                let body = bodies
                    .get(&page.n)
                    .ok_or_else(|| format!("page {} was not read", page.n))?;
                if body.collection != dir.collection {
                    return Err(format!("page {} is another collection's", page.n));
                }
                out.remove.push(page.n);
                fresh(merge(Some(body), changes), &mut out);
            }
        }
    }
    Ok(out)
}

/// A page's records with `changes` (sorted by id) applied.
fn merge(body: Option<&PageBody>, changes: Vec<(String, Change)>) -> Vec<(String, Box<[u8]>)> {
    let mut out = Vec::with_capacity(body.map_or(0, |b| b.ids.len()) + changes.len());
    let mut old = body
        .into_iter()
        .flat_map(|b| b.ids.iter().zip(&b.records))
        .peekable();
    for (id, change) in changes {
        while let Some((i, r)) = old.next_if(|(i, _)| i.as_str() < id.as_str()) {
            out.push((i.clone(), r.clone()));
        }
        old.next_if(|(i, _)| **i == id);
        if let Change::Put(r) = change {
            out.push((id, r));
        }
    }
    out.extend(old.map(|(i, r)| (i.clone(), r.clone())));
    out
}

/// Cuts sorted records into pages: one page up to [`PAGE_MAX_BYTES`], else
/// pages of about [`PAGE_TARGET_BYTES`] each. No page is empty.
fn split(records: Vec<(String, Box<[u8]>)>) -> Vec<Vec<(String, Box<[u8]>)>> {
    let total: usize = records.iter().map(|(_, r)| r.len()).sum();
    if records.is_empty() {
        return Vec::new();
    }
    if total <= PAGE_MAX_BYTES {
        return vec![records];
    }
    let pages = total.div_ceil(PAGE_TARGET_BYTES);
    let per = total / pages + 1;
    let mut out = Vec::with_capacity(pages);
    let mut cur = Vec::new();
    let mut bytes = 0;
    for (id, r) in records {
        bytes += r.len();
        cur.push((id, r));
        if bytes >= per {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl PageBody {
    /// Records' JSON bytes in the page.
    pub fn size(&self) -> usize {
        self.bytes()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn rec(id: &str, pad: usize) -> Box<[u8]> {
        let r = crate::store::EntityRecord {
            key: crate::protocol::EntityKey::new("rooms", id),
            server: None,
            chain_base: None,
            view: Some(crate::store::LocalEntity {
                collection: "rooms".into(),
                id: id.into(),
                fields: serde_json::from_value(serde_json::json!({ "note": "x".repeat(pad) }))
                    .unwrap(),
                deleted: false,
                server_version: 0,
                updated_at: crate::hlc::Hlc::default(),
                pending: 1,
                conflicted: false,
            }),
        };
        serde_json::to_vec(&r).unwrap().into()
    }

    /// Applies rewrites to an in-memory page set, as a store would.
    #[derive(Default)]
    struct Pages {
        dir: Option<Directory>,
        bodies: HashMap<u64, PageBody>,
    }

    impl Pages {
        fn apply(&mut self, changes: BTreeMap<String, Change>) {
            let dir = self.dir.clone().unwrap_or_else(|| Directory::new("rooms"));
            let need = pages_to_read(&dir, changes.keys().map(|s| s.as_str()));
            let bodies: HashMap<u64, PageBody> =
                need.iter().map(|n| (*n, self.bodies[n].clone())).collect();
            let rw = plan(&dir, &bodies, changes).unwrap();
            for n in &rw.remove {
                assert!(self.bodies.remove(n).is_some());
            }
            for (n, b) in rw.write {
                // Through the stored form.
                let b = PageBody::decode(&b.encode()).unwrap();
                assert!(self.bodies.insert(n, b).is_none(), "page {n} reused");
            }
            self.dir = Some(rw.dir);
        }

        fn all(&self) -> Vec<String> {
            let dir = self.dir.as_ref().unwrap();
            let mut out = Vec::new();
            for p in &dir.pages {
                let b = &self.bodies[&p.n];
                assert_eq!(b.ids.first(), Some(&p.first));
                assert_eq!(b.ids.last(), Some(&p.last));
                assert_eq!(b.ids.len() as u32, p.count);
                assert!(b.size() <= PAGE_MAX_BYTES + 4096, "page too big");
                out.extend(b.ids.iter().cloned());
            }
            assert_eq!(dir.pages.len(), self.bodies.len(), "orphan pages");
            out
        }
    }

    #[test]
    fn a_bulk_load_splits_into_pages_and_every_id_is_found_in_its_holder() {
        let mut p = Pages::default();
        let changes: BTreeMap<String, Change> = (0..3000)
            .map(|i| {
                (
                    format!("r{i:05}"),
                    Change::Put(rec(&format!("r{i:05}"), 100)),
                )
            })
            .collect();
        p.apply(changes);
        let dir = p.dir.clone().unwrap();
        assert!(dir.pages.len() > 3, "{} pages", dir.pages.len());
        assert_eq!(dir.count(), 3000);
        for i in (0..3000).step_by(7) {
            let id = format!("r{i:05}");
            let h = dir.holder(&id).unwrap();
            let got = p.bodies[&h.n].get(&id).unwrap().unwrap();
            assert_eq!(got.key.id, id);
        }
        assert!(dir.holder("a").is_none());
        assert!(dir.holder("s").is_none());
        assert_eq!(dir.pages_after(Some("r02999")).len(), 0);
        assert_eq!(dir.pages_after(None).len(), dir.pages.len());
    }

    #[test]
    fn a_record_under_another_id_is_refused() {
        let body = PageBody {
            collection: "rooms".into(),
            ids: vec!["a".into()],
            records: vec![rec("b", 1)],
        };
        assert!(body.get("a").is_err());
        let body = PageBody {
            collection: "guests".into(),
            ids: vec!["b".into()],
            records: vec![rec("b", 1)],
        };
        assert!(body.get("b").is_err());
        assert!(PageBody::decode(br#"{"c":"rooms","ids":["b","a"],"r":[1,2]}"#).is_err());
        assert!(PageBody::decode(br#"{"c":"rooms","ids":["a"],"r":[1,2]}"#).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// After any sequence of rewrites, the pages hold exactly the ids a
        /// map holds, sorted, each page within its bounds.
        #[test]
        fn rewrites_keep_exactly_the_written_ids(
            rounds in prop::collection::vec(
                prop::collection::vec((0u32..4000, any::<bool>(), 0usize..600), 1..400),
                1..8,
            )
        ) {
            let mut p = Pages::default();
            let mut model: BTreeMap<String, usize> = BTreeMap::new();
            for round in rounds {
                let mut changes = BTreeMap::new();
                for (k, put, pad) in round {
                    let id = format!("e{k:04}");
                    if put {
                        changes.insert(id.clone(), Change::Put(rec(&id, pad)));
                        model.insert(id, pad);
                    } else {
                        changes.insert(id.clone(), Change::Remove);
                        model.remove(&id);
                    }
                }
                p.apply(changes);
                let ids = p.all();
                let want: Vec<String> = model.keys().cloned().collect();
                prop_assert_eq!(&ids, &want);
                for (id, pad) in &model {
                    let dir = p.dir.as_ref().unwrap();
                    let h = dir.holder(id).expect("held");
                    let r = p.bodies[&h.n].get(id).unwrap().unwrap();
                    let note = r.view.unwrap().fields["note"].as_str().unwrap().len();
                    prop_assert_eq!(note, *pad);
                }
            }
        }
    }
}
