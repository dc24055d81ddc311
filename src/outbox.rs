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
    /// Entries held for review among `entries`.
    held: usize,
    /// Pending (not dead-lettered) entries per collection; no zero counts.
    pending_by: BTreeMap<String, usize>,
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
        if matches!(e.state, OutboxState::Held { .. }) {
            self.held += 1;
        } else if e.state != OutboxState::Pending {
            self.dead += 1;
        } else {
            *self
                .pending_by
                .entry(e.mutation.collection.clone())
                .or_default() += 1;
        }
        if let Some(old) = self.entries.insert(e.seq, e) {
            self.forget(&old);
        }
    }

    /// Takes a replaced or removed entry out of the counts.
    fn forget(&mut self, old: &OutboxEntry) {
        if matches!(old.state, OutboxState::Held { .. }) {
            self.held -= 1;
            return;
        }
        if old.state != OutboxState::Pending {
            self.dead -= 1;
            return;
        }
        let c = &old.mutation.collection;
        if let Some(n) = self.pending_by.get_mut(c) {
            *n -= 1;
            if *n == 0 {
                self.pending_by.remove(c);
            }
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, seq: u64) -> Option<OutboxEntry> {
        let e = self.entries.remove(&seq)?;
        self.forget(&e);
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

    /// Entries waiting to be sent (dead letters and held entries excluded).
    pub fn pending_count(&self) -> usize {
        self.entries.len() - self.dead - self.held
    }

    /// Entries held for review.
    pub fn held_count(&self) -> usize {
        self.held
    }

    /// Entries waiting to be sent per collection (dead letters excluded;
    /// a collection with none is absent).
    pub fn pending_by_collection(&self) -> &BTreeMap<String, usize> {
        &self.pending_by
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

// Unit tests of the index and of the delivery bookkeeping, one assertion per
// thing a mutant could change (scripts/mutants.sh src/outbox.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_outbox_entry;

    fn entry(seq: u64, id: &str, dead: bool, next_attempt_at: u64) -> OutboxEntry {
        let mut e = sample_outbox_entry(seq);
        e.mutation.entity_id = id.into();
        e.next_attempt_at = next_attempt_at;
        if dead {
            e.state = OutboxState::DeadLetter {
                code: ErrorCode::SyncServerError,
                message: "dead".into(),
                at_ms: 0,
            };
        }
        e
    }

    fn key(id: &str) -> EntityKey {
        EntityKey::new("rooms", id)
    }

    fn seqs<'a>(v: impl IntoIterator<Item = &'a OutboxEntry>) -> Vec<u64> {
        v.into_iter().map(|e| e.seq).collect()
    }

    fn conflict(id: &str) -> BTreeMap<EntityKey, ConflictRecord> {
        let record = ConflictRecord {
            key: key(id),
            base: None,
            local: None,
            server: None,
            mutations: vec![],
            fields: vec![],
            detected_at: 0,
        };
        BTreeMap::from([(key(id), record)])
    }

    #[test]
    fn empty_outbox_counts_nothing() {
        let o = Outbox::default();
        assert!(o.is_empty());
        assert_eq!(o.len(), 0);
        assert_eq!(o.pending_count(), 0);
        assert_eq!(o.dead_letter_count(), 0);
        assert_eq!(o.last_seq(), None);
        assert_eq!(o.next_due(&BTreeMap::new()), None);
    }

    #[test]
    fn index_counts_reads_and_chains() {
        let o = Outbox::from_entries(vec![
            entry(1, "a", false, 0),
            entry(2, "b", true, 0),
            entry(3, "c", false, 0),
            entry(4, "a", false, 0),
            entry(5, "d", false, 0),
        ]);
        assert!(!o.is_empty());
        assert_eq!(o.len(), 5);
        assert_eq!(o.pending_count(), 4);
        assert_eq!(o.dead_letter_count(), 1);
        assert_eq!(o.last_seq(), Some(5));
        assert_eq!(o.get(2).map(|e| e.seq), Some(2));
        assert_eq!(o.get(3), Some(&entry(3, "c", false, 0)));
        assert_eq!(o.get(9), None);
        assert_eq!(seqs(o.chain(&key("a"))), vec![1, 4]);
        assert_eq!(seqs(o.chain(&key("z"))), Vec::<u64>::new());
        assert_eq!(seqs(o.iter()), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn replacing_and_removing_keep_the_dead_letter_count() {
        let mut o = Outbox::default();
        o.insert(entry(1, "a", false, 0));
        assert_eq!(o.dead_letter_count(), 0);
        o.insert(entry(2, "b", true, 0));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (1, 1));
        o.insert(entry(3, "c", true, 0));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (1, 2));
        // Dead replaced by dead, dead by pending, pending by pending.
        o.insert(entry(3, "c", true, 0));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (1, 2));
        o.insert(entry(3, "c", false, 0));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (2, 1));
        o.insert(entry(3, "c", false, 7));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (2, 1));
        assert_eq!(o.get(3).map(|e| e.next_attempt_at), Some(7));
        assert_eq!(o.len(), 3);

        // Removing a pending entry leaves the dead letters alone.
        let removed = o.remove(1).expect("held");
        assert_eq!(removed, entry(1, "a", false, 0));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (1, 1));
        assert!(o.chain(&key("a")).is_empty());
        // Removing the dead letter.
        assert_eq!(o.remove(2).map(|e| e.seq), Some(2));
        assert_eq!((o.pending_count(), o.dead_letter_count()), (1, 0));
        assert_eq!(o.remove(2), None);
        assert_eq!(o.len(), 1);
    }

    /// Heads of "a" (due at 10, then 5 behind it), "b" (a dead letter, then
    /// 6 behind it), "c" (due at 100), "d" (due at 3, in conflict), "e" (due at
    /// 50).
    fn mixed() -> Outbox {
        Outbox::from_entries(vec![
            entry(1, "a", false, 10),
            entry(2, "b", true, 1),
            entry(3, "c", false, 100),
            entry(4, "d", false, 3),
            entry(5, "a", false, 0),
            entry(6, "b", false, 0),
            entry(7, "e", false, 50),
        ])
    }

    #[test]
    fn due_heads_are_pending_due_unconflicted_chain_heads() {
        let o = mixed();
        let c = conflict("d");
        assert_eq!(seqs(o.due_heads(50, &c, 10)), vec![1, 7]);
        assert_eq!(seqs(o.due_heads(49, &c, 10)), vec![1]);
        assert_eq!(seqs(o.due_heads(100, &c, 10)), vec![1, 3, 7]);
        assert_eq!(seqs(o.due_heads(100, &c, 2)), vec![1, 3]);
        assert_eq!(seqs(o.due_heads(9, &c, 10)), Vec::<u64>::new());
        // Without the conflict, "d" is due too.
        assert_eq!(seqs(o.due_heads(50, &BTreeMap::new(), 10)), vec![1, 4, 7]);
    }

    #[test]
    fn next_due_is_the_earliest_pending_unconflicted_head() {
        let o = mixed();
        assert_eq!(o.next_due(&conflict("d")), Some(10));
        assert_eq!(o.next_due(&BTreeMap::new()), Some(3));
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_ms: 100,
            cap_ms: 10_000,
            max_attempts: 3,
            offline_probe_ms: 1_000,
        }
    }

    fn failure(counts: bool, retry_after_ms: u64) -> Failure {
        Failure {
            code: ErrorCode::SyncServerError,
            message: "boom".into(),
            retry_after_ms,
            counts,
        }
    }

    #[test]
    fn a_counted_failure_schedules_a_retry_after_the_backoff() {
        let mut e = entry(1, "a", false, 0);
        let d = record_failure(&mut e, &policy(), &failure(true, 0), || 77, 1_000);
        // backoff(1, 77, 0) = 77 % (100 + 1).
        assert_eq!(d, Delivery::RetryAt(1_077));
        assert_eq!(e.attempts, 1);
        assert_eq!(e.next_attempt_at, 1_077);
        assert!(e.sent);
        assert_eq!(
            e.last_error,
            Some((ErrorCode::SyncServerError, "boom".into()))
        );
        assert_eq!(e.state, OutboxState::Pending);
        // The second: backoff(2, 150, 0) = 150 % 201; Retry-After is a floor.
        let d = record_failure(&mut e, &policy(), &failure(true, 0), || 150, 2_000);
        assert_eq!((d, e.attempts), (Delivery::RetryAt(2_150), 2));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut e = entry(1, "a", false, 0);
        let d = record_failure(&mut e, &policy(), &failure(true, 5_000), || 3, 1_000);
        assert_eq!(d, Delivery::RetryAt(6_000));
    }

    #[test]
    fn the_last_counted_attempt_is_exhausted_without_drawing() {
        let mut e = entry(1, "a", false, 0);
        e.attempts = 2;
        let d = record_failure(
            &mut e,
            &policy(),
            &failure(true, 0),
            || panic!("no backoff is drawn when the attempts are used up"),
            1_000,
        );
        assert_eq!(
            d,
            Delivery::Exhausted {
                code: ErrorCode::RetriesExhausted,
                message: "3 attempts failed; last: SYNC_SERVER_ERROR: boom".into(),
            }
        );
        assert_eq!(e.attempts, 3);
        assert!(e.sent);
        assert_eq!(e.next_attempt_at, 0, "not rescheduled");
    }

    #[test]
    fn an_uncounted_failure_never_exhausts() {
        // A rate limit at the cap: not counted, so retried.
        let mut e = entry(1, "a", false, 0);
        e.attempts = 3;
        let d = record_failure(&mut e, &policy(), &failure(false, 0), || 5, 1_000);
        assert_eq!(d, Delivery::RetryAt(1_005));
        assert_eq!(e.attempts, 3);
        // From 0 attempts: backoff as for the first (attempts.max(1)).
        let mut e = entry(2, "b", false, 0);
        let d = record_failure(&mut e, &policy(), &failure(false, 0), || 100, 1_000);
        assert_eq!((d, e.attempts), (Delivery::RetryAt(1_100), 0));
        assert!(e.sent);
    }

    #[test]
    fn dead_letter_and_retry() {
        let mut e = entry(1, "a", false, 40);
        e.attempts = 3;
        mark_dead_letter(&mut e, ErrorCode::RetriesExhausted, "gone".into(), 900);
        assert_eq!(
            e.state,
            OutboxState::DeadLetter {
                code: ErrorCode::RetriesExhausted,
                message: "gone".into(),
                at_ms: 900,
            }
        );
        assert_eq!(
            e.last_error,
            Some((ErrorCode::RetriesExhausted, "gone".into()))
        );
        reset_for_retry(&mut e, 1_200);
        assert_eq!(e.state, OutboxState::Pending);
        assert_eq!(e.attempts, 0);
        assert_eq!(e.next_attempt_at, 1_200);
        assert_eq!(
            e.last_error,
            Some((ErrorCode::RetriesExhausted, "gone".into())),
            "kept for the sync center"
        );
    }

    #[test]
    fn pending_is_counted_per_collection_through_inserts_replacements_and_removals() {
        let in_collection = |seq: u64, collection: &str, dead: bool| {
            let mut e = entry(seq, &format!("e{seq}"), dead, 0);
            e.mutation.collection = collection.into();
            e
        };
        let mut o = Outbox::from_entries(vec![
            in_collection(1, "rooms", false),
            in_collection(2, "telemetry", false),
            in_collection(3, "telemetry", false),
            in_collection(4, "rooms", true),
        ]);
        let counts = |o: &Outbox| -> Vec<(String, usize)> {
            o.pending_by_collection()
                .iter()
                .map(|(c, n)| (c.clone(), *n))
                .collect()
        };
        assert_eq!(
            counts(&o),
            [("rooms".into(), 1), ("telemetry".into(), 2)],
            "a dead letter is not pending"
        );
        // Dead-lettered in place, then retried in place.
        o.insert(in_collection(2, "telemetry", true));
        assert_eq!(counts(&o), [("rooms".into(), 1), ("telemetry".into(), 1)]);
        o.insert(in_collection(4, "rooms", false));
        assert_eq!(counts(&o), [("rooms".into(), 2), ("telemetry".into(), 1)]);
        // Removed: a collection with none left is absent.
        o.remove(3);
        o.remove(2);
        assert_eq!(counts(&o), [("rooms".into(), 2)]);
        o.remove(1);
        o.remove(4);
        assert!(o.pending_by_collection().is_empty());
        assert_eq!(o.pending_count(), 0);
        assert_eq!(o.dead_letter_count(), 0);
    }
}
