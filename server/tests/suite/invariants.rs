//! Property test: random pushes (new ops, replays, rebased resends, reused op
//! ids with other payloads, stale bases) keep the server's invariants.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;
use tidesync::{AckResult, Cursor, EntityKey, Mutation, MutationKind, OpId};
use tidesync_server::{ServerPolicy, ServerStore, TerminalContext};

#[derive(Clone, Debug)]
enum Step {
    /// A new op. `base: None` = the current server version, else that number.
    New {
        terminal: usize,
        append_only: bool,
        entity: u8,
        kind: u8,
        value: u8,
        base: Option<u64>,
    },
    /// The same mutation again (a retry), optionally rebased on the current version.
    Replay { which: Index, rebase: bool },
    /// The same op id with another payload.
    Tamper { which: Index, value: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, any::<bool>(), 0..3u8, 0..4u8, 0..3u8, prop::option::of(0..4u64))
            .prop_map(|(terminal, append_only, entity, kind, value, base)| Step::New {
                terminal, append_only, entity, kind, value, base,
            }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(which, rebase)| Step::Replay { which, rebase }),
        1 => (any::<Index>(), 0..3u8).prop_map(|(which, value)| Step::Tamper { which, value }),
    ]
}

fn kind_of(k: u8) -> MutationKind {
    [
        MutationKind::Create,
        MutationKind::Patch,
        MutationKind::Delete,
        MutationKind::Append,
    ][k as usize]
}

fn payload(kind: MutationKind, value: u8) -> Option<serde_json::Value> {
    (kind != MutationKind::Delete).then(|| json!({ "v": value }))
}

fn current_version(s: &Service, c: &TerminalContext, key: &EntityKey) -> u64 {
    s.store()
        .transaction(&c.partition(), |tx| tx.entity(key))
        .unwrap()
        .map_or(0, |e| e.state.version)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn pushes_keep_invariants(steps in prop::collection::vec(step(), 1..60)) {
        let s = service().with_policy("sales", ServerPolicy::AppendOnly);
        let terminals = [ctx("b1", "t0"), ctx("b1", "t1")];
        let mut sent: Vec<(usize, Mutation)> = Vec::new();
        // (terminal, op) -> the Applied result, from the acks.
        let mut applied: BTreeMap<(String, OpId), (u64, Cursor)> = BTreeMap::new();
        let mut last_cursor = Cursor(0);
        let mut next_op = 0u64;

        for st in steps {
            let (t, m) = match st {
                Step::New { terminal, append_only, entity, kind, value, base } => {
                    let c = &terminals[terminal];
                    let collection = if append_only { "sales" } else { "rooms" };
                    let id = format!("e{entity}");
                    // Append-only collections mostly get appends (and some patches).
                    let kind = if append_only && kind != 1 { MutationKind::Append } else { kind_of(kind) };
                    let base = base.unwrap_or_else(|| current_version(&s, c, &EntityKey::new(collection, &id)));
                    next_op += 1;
                    (terminal, mutation(c, op_id(next_op), kind, collection, &id, payload(kind, value), base))
                }
                Step::Replay { which, rebase } => {
                    if sent.is_empty() { continue; }
                    let (t, mut m) = sent[which.index(sent.len())].clone();
                    if rebase {
                        m.base_version = current_version(&s, &terminals[t], &m.key());
                    }
                    (t, m)
                }
                Step::Tamper { which, value } => {
                    if sent.is_empty() { continue; }
                    let (t, m) = sent[which.index(sent.len())].clone();
                    let kind = if m.kind == MutationKind::Delete { MutationKind::Patch } else { m.kind };
                    let tampered = Mutation { kind, payload: payload(kind, value + 10).map(fields), ..m };
                    (t, reseal(tampered))
                }
            };
            let c = &terminals[t];
            let key = m.key();
            let before = current_version(&s, c, &key);
            let ack = push1(&s, c, m.clone());
            let ledger_key = (c.terminal.clone(), m.op_id.clone());
            match &ack {
                AckResult::Applied { version, cursor } => {
                    prop_assert!(!applied.contains_key(&ledger_key), "op applied twice: {:?}", m.op_id);
                    prop_assert_eq!(*version, before + 1);
                    prop_assert!(*cursor > last_cursor, "cursor not increasing");
                    last_cursor = *cursor;
                    applied.insert(ledger_key, (*version, *cursor));
                }
                AckResult::Duplicate { version, cursor } => {
                    if let Some(orig) = applied.get(&ledger_key) {
                        // A replay: exactly the original result.
                        prop_assert_eq!(*orig, (*version, *cursor));
                    } else {
                        // Only append-only dedupe by id answers Duplicate for an unapplied op.
                        prop_assert_eq!(s.policy(&m.collection), ServerPolicy::AppendOnly);
                        prop_assert_eq!(*version, before);
                    }
                    prop_assert_eq!(current_version(&s, c, &key), before);
                }
                AckResult::Conflict { server } => {
                    prop_assert!(!applied.contains_key(&ledger_key));
                    prop_assert_eq!(s.policy(&m.collection), ServerPolicy::Versioned);
                    prop_assert_ne!(m.base_version, before);
                    prop_assert_eq!(server.as_ref().map_or(0, |e| e.version), before);
                }
                AckResult::Rejected { .. } => {
                    prop_assert_eq!(current_version(&s, c, &key), before);
                }
            }
            sent.push((t, m));
        }

        let p = terminals[0].partition();
        // The change log: cursors 1..=head, strictly increasing, no gaps.
        let log = s.store().changes(&p, Cursor(0), usize::MAX).unwrap();
        let cursors: Vec<u64> = log.iter().map(|c| c.cursor.0).collect();
        prop_assert_eq!(cursors, (1..=log.len() as u64).collect::<Vec<_>>());
        prop_assert_eq!(s.store().head(&p).unwrap(), Cursor(log.len() as u64));
        // Each op id applied at most once, and exactly the ops acked Applied.
        let audit = s.store().audit(&p).unwrap();
        let audited: BTreeSet<(String, OpId)> = audit
            .iter()
            .map(|a| (a.terminal.clone().unwrap(), a.op_id.clone().unwrap()))
            .collect();
        prop_assert_eq!(audited.len(), audit.len(), "an op id was audited twice");
        prop_assert_eq!(audited, applied.keys().cloned().collect::<BTreeSet<_>>());
        // Entity version == number of applied mutations of it; state == its last change.
        let mut per_key: BTreeMap<EntityKey, u64> = BTreeMap::new();
        for a in &audit {
            *per_key.entry(a.key.clone()).or_default() += 1;
        }
        for (key, n) in &per_key {
            let e = s.store().transaction(&p, |tx| tx.entity(key)).unwrap().unwrap();
            prop_assert_eq!(e.state.version, *n);
            let last = log.iter().rev().find(|c| c.state.key() == *key).unwrap();
            prop_assert_eq!(&last.state, &e.state);
            prop_assert_eq!(last.cursor, e.cursor);
        }
        // The feed, paged, is the log.
        let paged = all_changes(&s, &terminals[1]);
        prop_assert_eq!(paged, log.into_iter().map(|c| c.state).collect::<Vec<_>>());
    }
}
