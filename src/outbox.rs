//! The in-memory index of the durable outbox: entries by sequence number and
//! each entity's chain of pending mutations in FIFO order.

use crate::protocol::EntityKey;
use crate::store::{ConflictRecord, OutboxEntry, OutboxState};
use std::collections::{BTreeMap, BTreeSet};

/// The outbox, indexed by `seq` and by entity.
#[derive(Debug, Default, Clone)]
pub struct Outbox {
    entries: BTreeMap<u64, OutboxEntry>,
    by_key: BTreeMap<EntityKey, BTreeSet<u64>>,
    /// Dead letters among `entries`, kept so status costs O(1).
    dead: usize,
}

impl Outbox {
    /// Builds the index from stored entries.
    pub fn from_entries(entries: Vec<OutboxEntry>) -> Self {
        let mut o = Outbox::default();
        for e in entries {
            o.insert(e);
        }
        o
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, e: OutboxEntry) {
        self.by_key
            .entry(e.mutation.key())
            .or_default()
            .insert(e.seq);
        if e.state != OutboxState::Pending {
            self.dead += 1;
        }
        if let Some(old) = self.entries.insert(e.seq, e) {
            if old.state != OutboxState::Pending {
                self.dead -= 1;
            }
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, seq: u64) -> Option<OutboxEntry> {
        let e = self.entries.remove(&seq)?;
        if e.state != OutboxState::Pending {
            self.dead -= 1;
        }
        let key = e.mutation.key();
        if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(e)
    }

    /// One entry.
    pub fn get(&self, seq: u64) -> Option<&OutboxEntry> {
        self.entries.get(&seq)
    }

    /// An entity's chain, oldest first.
    pub fn chain(&self, key: &EntityKey) -> Vec<&OutboxEntry> {
        self.by_key
            .get(key)
            .map(|set| set.iter().filter_map(|s| self.entries.get(s)).collect())
            .unwrap_or_default()
    }

    /// Every entry, in `seq` order.
    pub fn iter(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.entries.values()
    }

    /// Entries waiting to be sent (dead letters excluded).
    pub fn pending_count(&self) -> usize {
        self.entries.len() - self.dead
    }

    /// Dead letters.
    pub fn dead_letter_count(&self) -> usize {
        self.dead
    }

    /// Total entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The heads of the entities' chains that may be sent at `now`: the
    /// first entry of each chain, if it is pending, due and its entity has no
    /// open conflict. A dead-lettered head blocks only its own entity.
    /// At most `limit`, oldest first.
    pub fn due_heads(
        &self,
        now: u64,
        conflicts: &BTreeMap<EntityKey, ConflictRecord>,
        limit: usize,
    ) -> Vec<&OutboxEntry> {
        let mut heads: Vec<&OutboxEntry> = self
            .by_key
            .iter()
            .filter(|(k, _)| !conflicts.contains_key(*k))
            .filter_map(|(_, set)| set.iter().next().and_then(|s| self.entries.get(s)))
            .filter(|e| e.state == OutboxState::Pending && e.next_attempt_at <= now)
            .collect();
        heads.sort_by_key(|e| e.seq);
        heads.truncate(limit);
        heads
    }

    /// The earliest time a head that is waiting on a backoff becomes due.
    pub fn next_due(&self, conflicts: &BTreeMap<EntityKey, ConflictRecord>) -> Option<u64> {
        self.by_key
            .iter()
            .filter(|(k, _)| !conflicts.contains_key(*k))
            .filter_map(|(_, set)| set.iter().next().and_then(|s| self.entries.get(s)))
            .filter(|e| e.state == OutboxState::Pending)
            .map(|e| e.next_attempt_at)
            .min()
    }
}
