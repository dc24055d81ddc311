//! Wire types of the sync protocol (version [`PROTOCOL_VERSION`]).
//!
//! PROTOCOL.md documents the HTTP mapping. Every type here is plain serde
//! data; the rules that both sides must agree on (how a mutation changes an
//! entity, what makes a mutation valid, how a payload is checksummed) are
//! functions in this module too, so that they exist exactly once:
//! [`apply`] (merge patches and how a mutation changes an entity) and
//! [`validate`] (envelope limits and checks).

mod apply;
mod validate;

pub use apply::{apply_mutation, diff_patch, merge_patch, ApplyError};
pub use validate::{valid_collection_name, valid_model_id, validate_mutation, Limits};

use crate::canonical;
use crate::error_code::ErrorCode;
use crate::hash::sha256_hex;
use crate::hlc::Hlc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// The fields of an entity: a JSON object.
pub type Fields = serde_json::Map<String, Value>;

/// A position in a partition's change log. Cursors only move forward.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Cursor(pub u64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A mutation's idempotency key: a ULID in its 26-character text form,
/// generated once when the mutation is made and reused on every retry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct OpId(pub String);

impl OpId {
    /// A ULID (the `ulid` crate) from a millisecond timestamp (its low 48
    /// bits) and 80 random bits, in its canonical 26-character form.
    pub fn from_parts(ms: u64, random: u128) -> OpId {
        let ulid = ulid::Ulid::from_parts(ms & 0xFFFF_FFFF_FFFF, random & ((1 << 80) - 1));
        OpId(ulid.to_string())
    }

    /// Whether the text is a ULID in canonical form (26 characters of
    /// Crockford base32, upper case, at most `7ZZZZZZZZZZZZZZZZZZZZZZZZZ`).
    pub fn is_valid(&self) -> bool {
        ulid::Ulid::from_string(&self.0).is_ok_and(|u| u.to_string() == self.0)
    }

    /// The millisecond timestamp of a valid id.
    pub fn timestamp_ms(&self) -> Option<u64> {
        ulid::Ulid::from_string(&self.0)
            .ok()
            .map(|u| u.timestamp_ms())
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one entity: its collection and its id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EntityKey {
    /// The collection, e.g. `rooms`.
    pub collection: String,
    /// The entity id within the collection (a ULID for client-created ones).
    pub id: String,
}

impl EntityKey {
    /// A key from its parts.
    pub fn new(collection: impl Into<String>, id: impl Into<String>) -> Self {
        EntityKey {
            collection: collection.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.collection, self.id)
    }
}

/// The state of an entity as the server holds it at some version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EntityState {
    /// The collection.
    pub collection: String,
    /// The id.
    pub id: String,
    /// Server-assigned, +1 per applied mutation of this entity.
    pub version: u64,
    /// The fields (empty once deleted).
    pub fields: Fields,
    /// A tombstone: the entity was deleted at `version`.
    pub deleted: bool,
    /// The HLC of the mutation that produced this version.
    pub updated_at: Hlc,
    /// The op that produced this version (lets a client recognise its own
    /// mutation in the change feed when the push response was lost).
    pub last_op: Option<OpId>,
}

impl EntityState {
    /// This entity's key.
    pub fn key(&self) -> EntityKey {
        EntityKey::new(&self.collection, &self.id)
    }
}

/// What a mutation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub enum MutationKind {
    /// Create an entity with `payload` as its fields (or revive a tombstone).
    Create,
    /// Apply `payload` as a JSON merge patch (RFC 7386): `null` removes a field.
    Patch,
    /// Delete the entity (leaves a tombstone).
    Delete,
    /// Insert a record into an append-only collection; a second insert of the
    /// same id is a duplicate, never an update.
    Append,
}

/// The mutation envelope: one local change, as queued in the outbox and sent
/// to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Mutation {
    /// Idempotency key, reused on every retry.
    pub op_id: OpId,
    /// The installation that made the change.
    pub client_id: String,
    /// The terminal (device credential) it was made on.
    pub terminal_id: String,
    /// The branch the terminal belongs to.
    pub branch_id: String,
    /// Target collection.
    pub collection: String,
    /// Target entity id.
    pub entity_id: String,
    /// What the mutation does.
    pub kind: MutationKind,
    /// Fields for create/append, a merge patch for patch, none for delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Fields>,
    /// The server version the change was made against (0: not on the server).
    pub base_version: u64,
    /// When the change was made.
    pub hlc: Hlc,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// [`payload_checksum`] of the canonical payload.
    pub checksum: String,
    /// The terminal believed it was offline when the change was made.
    #[serde(default)]
    pub offline: bool,
    /// The on-device anomaly score of the change, when its collection is
    /// scored (see `crate::scoring`). Not covered by `checksum`: it describes
    /// the change, it is not part of it. The server keeps it in its audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyScore>,
}

/// What an on-device model said of one mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AnomalyScore {
    /// The model's score: higher is more unusual (finite, at least 0).
    pub score: f64,
    /// The score is at or above the model's threshold.
    pub flagged: bool,
    /// Which model scored it: 1 to 64 characters of `[0-9a-f]` (a prefix
    /// of the model file's SHA-256).
    pub model: String,
}

impl MutationKind {
    /// The wire form: `create`, `patch`, `delete`, `append`.
    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::Create => "create",
            MutationKind::Patch => "patch",
            MutationKind::Delete => "delete",
            MutationKind::Append => "append",
        }
    }
}

impl Mutation {
    /// This mutation's target.
    pub fn key(&self) -> EntityKey {
        EntityKey::new(&self.collection, &self.entity_id)
    }
}

/// The SHA-256 of the canonical form of what a mutation does (collection,
/// entity, kind, payload). Retries, rebasing and transport do not change it;
/// it is the ledger's payload fingerprint.
pub fn payload_checksum(
    collection: &str,
    entity_id: &str,
    kind: MutationKind,
    payload: Option<&Fields>,
) -> String {
    sha256_hex(canonical_payload(collection, entity_id, kind, payload).as_bytes())
}

/// The text [`payload_checksum`] hashes: the canonical JSON
/// ([`crate::canonical`]) of `{"c": collection, "e": entity_id, "k": kind,
/// "p": payload}`, `p` being `null` for a delete.
pub fn canonical_payload(
    collection: &str,
    entity_id: &str,
    kind: MutationKind,
    payload: Option<&Fields>,
) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("{\"c\":");
    canonical::write_string(&mut out, collection);
    out.push_str(",\"e\":");
    canonical::write_string(&mut out, entity_id);
    out.push_str(",\"k\":");
    canonical::write_string(&mut out, kind.as_str());
    out.push_str(",\"p\":");
    match payload {
        Some(fields) => canonical::write_object(&mut out, fields),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// A batch of mutations from one terminal (`POST /v1/mutations`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PushRequest {
    /// [`PROTOCOL_VERSION`] of the sender.
    #[cfg_attr(feature = "openapi", schemars(range(min = 1, max = 1)))]
    pub protocol: u32,
    /// How many times this batch (or its mutations) has been tried, for logs.
    #[serde(default)]
    pub attempt: u32,
    /// The mutations, in outbox order.
    pub mutations: Vec<Mutation>,
}

/// The server's answer for one mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub enum AckResult {
    /// Applied now: the entity is at `version`, recorded at `cursor`.
    Applied {
        /// The new entity version.
        version: u64,
        /// The change-log position of the change.
        cursor: Cursor,
    },
    /// Applied before (a retry): the original result, not applied again.
    Duplicate {
        /// The version the original application produced.
        version: u64,
        /// The change-log position of the original change.
        cursor: Cursor,
    },
    /// Not applied: the base version is stale. `server` is the current state.
    Conflict {
        /// The server's current state of the entity, if it exists.
        server: Option<EntityState>,
    },
    /// Not applied and never will be as sent.
    Rejected {
        /// Stable code.
        code: ErrorCode,
        /// What was wrong (names the field for validation errors).
        message: String,
    },
}

/// One per mutation of a [`PushRequest`], in the same order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MutationAck {
    /// The mutation answered.
    pub op_id: OpId,
    /// The outcome.
    #[serde(flatten)]
    pub result: AckResult,
}

/// The answer to a [`PushRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PushResponse {
    /// One ack per mutation, in request order.
    pub acks: Vec<MutationAck>,
}

/// `GET /v1/changes?since=&limit=`: the changes after a cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesRequest {
    /// Return changes strictly after this cursor.
    pub since: Cursor,
    /// At most this many changes.
    pub limit: u32,
}

/// A page of the change feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChangesPage {
    /// Entity states after each change, in cursor order.
    pub changes: Vec<EntityState>,
    /// The cursor to ask from next; covers every change in this page.
    pub next: Cursor,
    /// More changes are ready now.
    pub has_more: bool,
}

/// `GET /v1/snapshot?after=&limit=`: a page of the full state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Continue after this key (absent: first page).
    pub after: Option<EntityKey>,
    /// At most this many entities.
    pub limit: u32,
}

/// A page of a snapshot. Pages are ordered by key; together with the changes
/// after the first page's `at`, they give a consistent state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SnapshotPage {
    /// Live entities (no tombstones).
    pub entities: Vec<EntityState>,
    /// The change-log head when this page was read. A client keeps the first
    /// page's `at` and pulls changes after it once the snapshot is complete.
    pub at: Cursor,
    /// The key to continue after, if more pages follow.
    pub next: Option<EntityKey>,
}

/// The digest of one reconcile bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BucketDigest {
    /// Bucket number, `< buckets`.
    pub bucket: u32,
    /// Live entities in the bucket.
    pub count: u64,
    /// Wrapping sum of [`crate::digest::entity_digest`] over them.
    pub digest: u64,
}

/// An id and version the client holds, sent for mismatched buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ManifestEntry {
    /// Entity id.
    pub id: String,
    /// The server version the client holds.
    pub version: u64,
}

/// `POST /v1/reconcile`. Step 1 sends `digests` of every bucket; the server
/// names the buckets that differ. Step 2 sends the `manifest` of those
/// buckets; the server answers with a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReconcileRequest {
    /// The collection to verify.
    #[cfg_attr(feature = "openapi", schemars(extend("pattern" = "^[a-z][a-z0-9_-]{0,63}$")))]
    pub collection: String,
    /// Number of buckets ids are hashed into.
    #[cfg_attr(feature = "openapi", schemars(range(min = 1, max = 4096)))]
    pub buckets: u32,
    /// Step 1: digests of all buckets (empty buckets may be omitted).
    #[serde(default)]
    pub digests: Vec<BucketDigest>,
    /// Step 2: the buckets the manifest covers.
    #[serde(default)]
    pub manifest_buckets: Vec<u32>,
    /// Step 2: every live id and version the client holds in those buckets.
    #[serde(default)]
    pub manifest: Vec<ManifestEntry>,
}

/// What the client must change to match the server, for the buckets asked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReconcilePlan {
    /// Live on the server, absent on the client: the server state.
    pub missing: Vec<EntityState>,
    /// Older on the client: the server state.
    pub stale: Vec<EntityState>,
    /// Live on the client, absent or deleted on the server: the ids.
    pub extra: Vec<String>,
}

/// The answer to a [`ReconcileRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReconcileResponse {
    /// Buckets whose digest differs (step 1).
    pub mismatched: Vec<u32>,
    /// The plan for the manifest's buckets (step 2).
    pub plan: Option<ReconcilePlan>,
    /// The change-log head the answer is consistent with.
    pub at: Cursor,
}

/// `GET /v1/whoami`: what the presented key was issued for. A client
/// learns its terminal and branch from its key with it (pairing), and an
/// app can tell a key for another terminal before anything is queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct KeyIdentity {
    /// The tenant.
    pub tenant: String,
    /// The branch the key writes to.
    pub branch: String,
    /// The terminal the key belongs to.
    pub terminal: String,
    /// The key's public id (as in logs and `revoke-key`), never the secret.
    pub key_id: String,
    /// When the key expires (ms since the epoch), if it does.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

/// `POST /v1/pair`: redeem a one-time pairing code for the terminal's API
/// key. A pairing link carries the code, not the key: the link stays in the
/// browser's history and session files, and a code is worth nothing once
/// used (or expired).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The code (`tsp_…`), as `tidesync-server issue-pairing-code` printed it.
    pub code: String,
}

impl fmt::Debug for PairRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairRequest { code: <secret> }")
    }
}

/// The answer to a [`PairRequest`]: a new API key of the code's terminal
/// (an ordinary key: revocable, listed by its id) and what it was issued for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PairResponse {
    /// The API key (shown this once; the server keeps its hash).
    pub api_key: String,
    /// What the key was issued for.
    pub identity: KeyIdentity,
}

impl fmt::Debug for PairResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairResponse")
            .field("api_key", &"<secret>")
            .field("identity", &self.identity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ulid_round_trip_is_valid_and_sorted() {
        let a = OpId::from_parts(1_700_000_000_000, 5);
        let b = OpId::from_parts(1_700_000_000_001, 0);
        assert!(a.is_valid() && b.is_valid());
        assert!(a < b);
        assert!(!OpId("not-a-ulid".into()).is_valid());
        // Only the canonical form: lower case and overflow are refused.
        assert!(!OpId(a.0.to_lowercase()).is_valid());
        assert!(!OpId("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".into()).is_valid());
        assert_eq!(a.timestamp_ms(), Some(1_700_000_000_000));
    }

    /// The hand-written encoder op ids were made with before the `ulid`
    /// crate: queued mutations and stored entities carry its ids.
    fn legacy_from_parts(ms: u64, random: u128) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let value: u128 = (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1 << 80) - 1));
        (0..26)
            .map(|i| ALPHABET[((value >> (125 - 5 * i)) & 0x1F) as usize] as char)
            .collect()
    }

    #[test]
    fn ids_from_the_earlier_encoder_still_parse_and_match() {
        // An id written by a terminal before the switch, from its queue.
        let stored = OpId("01ARYZ6S41TSV4RRFFQ69G5FAV".into());
        assert!(stored.is_valid());
        assert_eq!(stored.timestamp_ms(), Some(1_469_918_176_385));
        let mut state = 7u64;
        for _ in 0..1000 {
            let ms = crate::env::splitmix64(&mut state);
            let r = (u128::from(crate::env::splitmix64(&mut state)) << 64)
                | u128::from(crate::env::splitmix64(&mut state));
            let id = OpId::from_parts(ms, r);
            assert_eq!(id.0, legacy_from_parts(ms, r), "same text as before");
            assert!(OpId(legacy_from_parts(ms, r)).is_valid());
        }
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}}));
        merge_patch(&mut t, &obj(json!({"a": "z", "c": {"f": null}})));
        assert_eq!(Value::Object(t), json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn diff_patch_inverts_merge() {
        let from = obj(json!({"a": 1, "b": 2, "c": 3}));
        let to = obj(json!({"a": 1, "b": 5, "d": 4}));
        let mut x = from.clone();
        merge_patch(&mut x, &diff_patch(&from, &to));
        assert_eq!(x, to);
    }

    #[test]
    fn checksum_ignores_key_order() {
        let p1 = obj(json!({"x": 1, "y": 2}));
        let mut p2 = Fields::new();
        p2.insert("y".into(), json!(2));
        p2.insert("x".into(), json!(1));
        assert_eq!(
            payload_checksum("rooms", "1", MutationKind::Patch, Some(&p1)),
            payload_checksum("rooms", "1", MutationKind::Patch, Some(&p2))
        );
        assert_ne!(
            payload_checksum("rooms", "1", MutationKind::Patch, Some(&p1)),
            payload_checksum("rooms", "2", MutationKind::Patch, Some(&p1))
        );
    }

    #[test]
    fn ack_wire_format_is_tagged() {
        let ack = MutationAck {
            op_id: OpId::from_parts(1, 1),
            result: AckResult::Applied {
                version: 3,
                cursor: Cursor(9),
            },
        };
        let v = serde_json::to_value(&ack).unwrap();
        assert_eq!(v["status"], "applied");
        assert_eq!(v["version"], 3);
        assert_eq!(v["cursor"], 9);
        let back: MutationAck = serde_json::from_value(v).unwrap();
        assert_eq!(back, ack);
    }
}
