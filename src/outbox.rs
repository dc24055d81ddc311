//! The in-memory index of the durable outbox: entries by sequence number and
//! each entity's chain of pending mutations in FIFO order; and the delivery
//! bookkeeping of one entry: a failed attempt, a dead letter, a retry.

use crate::error_code::ErrorCode;
use crate::protocol::EntityKey;
use crate::retry::RetryPolicy;
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

    /// The highest seq held.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
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

/// One failed delivery of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub code: ErrorCode,
    /// Detail; never payload data.
    pub message: String,
    /// The server's `Retry-After`, in ms (0: none).
    pub retry_after_ms: u64,
    /// It counts toward the attempt cap (a rate limit does not: the server
    /// never looked at the mutation).
    pub counts: bool,
}

/// What a failed delivery leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Try again at this time (ms).
    RetryAt(u64),
    /// The attempts are used up: move it to the dead-letter queue.
    Exhausted {
        /// `RETRIES_EXHAUSTED`.
        code: ErrorCode,
        /// The attempts and the last failure.
        message: String,
    },
}

/// Records a failed delivery on `e`: counts the attempt, and either
/// schedules the next one (exponential backoff with full jitter, drawing
/// `random` only then, at least the server's `Retry-After`) or says the attempts are
/// used up. `e` is not moved to the dead-letter queue here (see
/// [`mark_dead_letter`]).
pub fn record_failure(
    e: &mut OutboxEntry,
    policy: &RetryPolicy,
    failure: &Failure,
    random: impl FnOnce() -> u64,
    now: u64,
) -> Delivery {
    if failure.counts {
        e.attempts += 1;
    }
    e.sent = true;
    if failure.counts && e.attempts >= policy.max_attempts {
        return Delivery::Exhausted {
            code: ErrorCode::RetriesExhausted,
            message: format!(
                "{} attempts failed; last: {}: {}",
                e.attempts, failure.code, failure.message
            ),
        };
    }
    e.next_attempt_at =
        now + policy.backoff_ms(e.attempts.max(1), random(), failure.retry_after_ms);
    e.last_error = Some((failure.code, failure.message.clone()));
    Delivery::RetryAt(e.next_attempt_at)
}

/// Moves `e` to the dead-letter queue with `code`: it blocks its own entity
/// (nothing else) until a person retries or discards it.
pub fn mark_dead_letter(e: &mut OutboxEntry, code: ErrorCode, message: String, now: u64) {
    e.state = OutboxState::DeadLetter {
        code,
        message: message.clone(),
        at_ms: now,
    };
    e.last_error = Some((code, message));
}

/// Puts a dead letter back in the queue, due at `now`, attempts reset.
pub fn reset_for_retry(e: &mut OutboxEntry, now: u64) {
    e.state = OutboxState::Pending;
    e.attempts = 0;
    e.next_attempt_at = now;
}
