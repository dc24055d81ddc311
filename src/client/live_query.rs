//! Live queries, written once for every host: a query's result kept up to
//! date from the engine's events (this tab's writes, pulls, other tabs).
//!
//! A [`LiveQuery`] holds the last result of one page query (a collection's
//! live entities after `after`, in id order, from at most `limit` records,
//! as [`Command::Query`](super::Command::Query) reads them). An event that
//! changes an entity it holds is applied in place, with no store read: a
//! local write to a shown row updates the result at once. An event it
//! cannot apply exactly (a new id inside the page, a page of changes from a
//! pull, an entity gone from a full page) asks the host to read the page
//! again ([`Update::Requery`]); events outside the page change nothing.
//! The host runs the loop: query, [`LiveQuery::set`], then for each event
//! [`LiveQuery::apply`], or only [`LiveQuery::touches`] while a read is in
//! flight (an event applied to a result that a read in flight will replace
//! could be undone by that older read; the host reads again instead).

use super::ClientError;
use crate::engine::QueryPage;
use crate::status::Event;
use crate::store::LocalEntity;
use serde::Deserialize;

/// What a live query asks for: one page of a collection.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSpec {
    /// The collection.
    pub collection: String,
    /// Entities with an id after this one.
    #[serde(default)]
    pub after: Option<String>,
    /// Records read, at most (default [`DEFAULT_PAGE`](super::DEFAULT_PAGE),
    /// at most [`MAX_PAGE`](super::MAX_PAGE)).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// What an event did to a live query's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Nothing: deliver nothing.
    Unchanged,
    /// The result changed in place: deliver [`LiveQuery::rows`].
    Changed,
    /// The result may have changed in a way only a read can tell: read the
    /// page again and [`LiveQuery::set`] it.
    Requery,
}

/// One live page query and its last result.
#[derive(Clone, Debug)]
pub struct LiveQuery {
    spec: LiveSpec,
    limit: usize,
    /// The last result: the rows, and the id of the page's last record
    /// when the page was full (rows past it belong to the next page).
    result: Option<(Vec<LocalEntity>, Option<String>)>,
}

impl LiveQuery {
    /// A live query of `spec`; `BAD_ARGUMENT` names a bad limit.
    pub fn new(spec: LiveSpec) -> Result<Self, ClientError> {
        let limit = super::page_limit(spec.limit)
            .map_err(|e| ClientError::bad_argument(format!("query.{}", e.message)))?;
        Ok(LiveQuery {
            spec,
            limit,
            result: None,
        })
    }

    /// What it asks for.
    pub fn spec(&self) -> &LiveSpec {
        &self.spec
    }

    /// The page size (records read).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The command that reads the page (its answer goes to [`set`](Self::set)).
    pub fn read(&self) -> super::Command {
        super::Command::Page {
            collection: self.spec.collection.clone(),
            after: self.spec.after.clone(),
            limit: Some(self.limit),
        }
    }

    /// The last result (empty before the first [`set`](Self::set)).
    pub fn rows(&self) -> &[LocalEntity] {
        self.result
            .as_ref()
            .map_or(&[], |(rows, _)| rows.as_slice())
    }

    /// Takes a fresh read of the page; whether its rows differ from the
    /// last result, which is the last one delivered (the first read always
    /// counts as a change; [`apply`](Self::apply) changes the result only
    /// when it says [`Update::Changed`]).
    pub fn set(&mut self, page: QueryPage) -> bool {
        let changed = self
            .result
            .as_ref()
            .is_none_or(|(rows, _)| *rows != page.entities);
        self.result = Some((page.entities, page.next));
        changed
    }

    /// Whether `id` falls inside the page: after `after` and, when the
    /// page is full, not after its last record.
    fn inside(&self, id: &str) -> bool {
        if self.spec.after.as_deref().is_some_and(|a| id <= a) {
            return false;
        }
        match &self.result {
            Some((_, Some(end))) => id <= end.as_str(),
            _ => true,
        }
    }

    /// Whether `event` may change the result (without changing it).
    pub fn touches(&self, event: &Event) -> bool {
        match event {
            Event::Changed { key, .. } => {
                key.collection == self.spec.collection && self.inside(&key.id)
            }
            Event::Changes { collection, ids } => {
                *collection == self.spec.collection && ids.iter().any(|id| self.inside(id))
            }
            _ => false,
        }
    }

    /// Applies `event` to the result.
    pub fn apply(&mut self, event: &Event) -> Update {
        if !self.touches(event) {
            return Update::Unchanged;
        }
        let Event::Changed { key, entity } = event else {
            return Update::Requery; // ids only: read them
        };
        let Some((rows, end)) = &mut self.result else {
            return Update::Requery;
        };
        let live = entity.as_ref().filter(|e| !e.deleted);
        match (rows.binary_search_by(|r| r.id.as_str().cmp(&key.id)), live) {
            (Ok(i), Some(e)) if rows[i] == *e => Update::Unchanged,
            (Ok(i), Some(e)) => {
                rows[i] = e.clone();
                Update::Changed
            }
            // Deleted: its tombstone still takes its record's place.
            (Ok(i), None) if entity.is_some() => {
                rows.remove(i);
                Update::Changed
            }
            // Gone altogether: a full page now reaches one record further
            // (read it; the result stays what was delivered until then).
            (Ok(_), None) if end.is_some() => Update::Requery,
            (Ok(i), None) => {
                rows.remove(i);
                Update::Changed
            }
            // Not shown, inside the page: a new record (live or a
            // tombstone), a tombstone revived or removed. Only a read knows
            // whether a record joined or left the page, which moves its end.
            (Err(_), _) => Update::Requery,
        }
    }
}

// Native only: proptest.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::protocol::EntityKey;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entity(id: &str, v: u64, deleted: bool) -> LocalEntity {
        LocalEntity {
            collection: "rooms".into(),
            id: id.into(),
            fields: serde_json::json!({ "v": v }).as_object().cloned().unwrap(),
            deleted,
            server_version: v,
            updated_at: Hlc::default(),
            pending: 0,
            conflicted: false,
        }
    }

    /// The store's page read, as `Engine::query_page` does it: `limit`
    /// records after `after` (tombstones included), live ones returned.
    fn read(db: &BTreeMap<String, LocalEntity>, after: Option<&str>, limit: usize) -> QueryPage {
        let records: Vec<&LocalEntity> = db
            .values()
            .filter(|e| after.is_none_or(|a| e.id.as_str() > a))
            .take(limit)
            .collect();
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| r.id.clone()))
            .flatten();
        QueryPage {
            entities: records
                .into_iter()
                .filter(|e| !e.deleted)
                .cloned()
                .collect(),
            next,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, bool),
        Remove(u8),
        Pull(Vec<(u8, bool)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, any::<bool>()).prop_map(|(k, d)| Op::Put(k, d)),
            1 => (0u8..12).prop_map(Op::Remove),
            1 => proptest::collection::vec((0u8..12, any::<bool>()), 1..4).prop_map(Op::Pull),
        ]
    }

    proptest! {
        /// Whatever the events, the result a host keeps (applying events
        /// and reading again when asked) is what a fresh read gives, and a
        /// change is never left undelivered.
        #[test]
        fn a_live_result_always_equals_a_fresh_read(
            start in proptest::collection::vec((0u8..12, any::<bool>()), 0..10),
            ops in proptest::collection::vec(op(), 1..30),
            after in proptest::option::of(0u8..12),
            limit in 1usize..6,
        ) {
            let id = |k: u8| format!("r{k:02}");
            let mut db: BTreeMap<String, LocalEntity> = start
                .iter()
                .map(|&(k, d)| (id(k), entity(&id(k), 0, d)))
                .collect();
            let after = after.map(id);
            let spec = LiveSpec { collection: "rooms".into(), after: after.clone(), limit: Some(limit) };
            let mut q = LiveQuery::new(spec).unwrap();
            prop_assert!(q.set(read(&db, after.as_deref(), limit)));
            let mut delivered = q.rows().to_vec();
            for (n, op) in ops.into_iter().enumerate() {
                let v = n as u64 + 1;
                let event = match op {
                    Op::Put(k, d) => {
                        let e = entity(&id(k), v, d);
                        db.insert(id(k), e.clone());
                        Event::Changed { key: EntityKey::new("rooms", id(k)), entity: Some(e) }
                    }
                    Op::Remove(k) => {
                        db.remove(&id(k));
                        Event::Changed { key: EntityKey::new("rooms", id(k)), entity: None }
                    }
                    Op::Pull(puts) => {
                        let mut ids = Vec::new();
                        for (k, d) in puts {
                            db.insert(id(k), entity(&id(k), v, d));
                            ids.push(id(k));
                        }
                        Event::Changes { collection: "rooms".into(), ids }
                    }
                };
                match q.apply(&event) {
                    Update::Unchanged => {}
                    Update::Changed => delivered = q.rows().to_vec(),
                    Update::Requery => {
                        if q.set(read(&db, after.as_deref(), limit)) {
                            delivered = q.rows().to_vec();
                        }
                    }
                }
                let fresh = read(&db, after.as_deref(), limit).entities;
                prop_assert_eq!(&delivered, &fresh);
                prop_assert_eq!(q.rows(), &fresh[..]);
            }
        }
    }

    #[test]
    fn a_write_to_a_shown_row_applies_in_place_and_other_events_do_not_touch_it() {
        let db: BTreeMap<String, LocalEntity> = (0..5)
            .map(|k| (format!("r{k}"), entity(&format!("r{k}"), 0, false)))
            .collect();
        let spec = LiveSpec {
            collection: "rooms".into(),
            after: None,
            limit: Some(3),
        };
        let mut q = LiveQuery::new(spec).unwrap();
        q.set(read(&db, None, 3));
        let changed = |id: &str, v| Event::Changed {
            key: EntityKey::new("rooms", id),
            entity: Some(entity(id, v, false)),
        };
        assert_eq!(q.apply(&changed("r1", 1)), Update::Changed, "no read");
        assert_eq!(q.rows()[1].server_version, 1);
        assert_eq!(
            q.apply(&changed("r1", 1)),
            Update::Unchanged,
            "the same view"
        );
        assert_eq!(
            q.apply(&changed("r4", 1)),
            Update::Unchanged,
            "past a full page"
        );
        let elsewhere = Event::Changed {
            key: EntityKey::new("tasks", "r1"),
            entity: None,
        };
        assert_eq!(q.apply(&elsewhere), Update::Unchanged);
        let pull = Event::Changes {
            collection: "rooms".into(),
            ids: vec!["r0".into()],
        };
        assert!(q.touches(&pull));
        assert_eq!(q.apply(&pull), Update::Requery);
        let bad = LiveSpec {
            collection: "rooms".into(),
            after: None,
            limit: Some(0),
        };
        assert_eq!(
            LiveQuery::new(bad).unwrap_err().code,
            crate::error_code::ErrorCode::BadArgument
        );
    }
}
