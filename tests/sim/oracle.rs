//! What each conflict policy must decide, by its meaning, written without
//! the engine's code.

use super::*;

/// The policy the terminals declare for `collection`.
pub(super) fn policy_of(collection: &str) -> ConflictPolicy {
    match collection {
        "rooms" => ConflictPolicy::MergeThreeWay,
        "incidents" => ConflictPolicy::ManualResolve,
        "catalog" => ConflictPolicy::ServerWins,
        "sales" => ConflictPolicy::AppendOnly,
        _ => ConflictPolicy::LastWriteWins,
    }
}

/// What a policy must decide, by its meaning.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expect {
    /// Every local mutation kept, rebased onto the server state.
    Rebase,
    /// The head lost; the rest rebased.
    SupersedeHead,
    /// Every local mutation lost.
    SupersedeAll,
    /// A conflict for a person, on these fields (`None`: not checked).
    Manual(Option<Vec<String>>),
    /// The meaning does not say (a last-write-wins tie).
    Any,
}

/// The oracle: what `policy` means for `c`, written without the engine's
/// code. merge-three-way: disjoint field edits merge, overlapping ones (both
/// sides changed a field to different values) open a conflict, and a change
/// of existence (delete, create) always does; last-write-wins: the later
/// HLC wins; server-wins: the server; manual-resolve: a person;
/// append-only: never updated, so any conflict goes to a person.
pub(super) fn oracle(policy: ConflictPolicy, c: &ConflictSeen) -> Expect {
    let head = &c.chain[0];
    let empty = Fields::new();
    match policy {
        ConflictPolicy::ServerWins => Expect::SupersedeAll,
        // The conflict names the fields both sides changed differently.
        ConflictPolicy::ManualResolve | ConflictPolicy::AppendOnly => Expect::Manual(overlapping(
            c.base.as_ref().map_or(&empty, |b| &b.fields),
            &c.chain,
            c.server.as_ref().map_or(&empty, |s| &s.fields),
        )),
        ConflictPolicy::LastWriteWins => match &c.server {
            Some(s) if s.updated_at == head.hlc => Expect::Any,
            Some(s) if s.updated_at > head.hlc => Expect::SupersedeHead,
            _ => Expect::Rebase,
        },
        ConflictPolicy::MergeThreeWay => {
            let (Some(b), Some(s)) = (&c.base, &c.server) else {
                return Expect::Manual(Some(vec![]));
            };
            if b.deleted || s.deleted {
                return Expect::Manual(Some(vec![]));
            }
            match overlapping(&b.fields, &c.chain, &s.fields) {
                None => Expect::Manual(Some(vec![])),
                Some(f) if f.is_empty() => Expect::Rebase,
                Some(f) => Expect::Manual(Some(f)),
            }
        }
    }
}

/// The fields both sides changed to different values, `chain` (patches
/// only; `None` otherwise) applied to `base` on the local side, sorted.
pub(super) fn overlapping(
    base: &Fields,
    chain: &[Mutation],
    server: &Fields,
) -> Option<Vec<String>> {
    let mut local = base.clone();
    for m in chain {
        match (m.kind, &m.payload) {
            (MutationKind::Patch, Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        local.remove(k);
                    } else {
                        local.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => return None,
        }
    }
    let names: BTreeSet<&String> = base
        .keys()
        .chain(local.keys())
        .chain(server.keys())
        .collect();
    Some(
        names
            .into_iter()
            .filter(|k| {
                let (b, l, s) = (base.get(*k), local.get(*k), server.get(*k));
                l != b && s != b && l != s
            })
            .cloned()
            .collect(),
    )
}
