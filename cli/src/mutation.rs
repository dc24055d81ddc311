//! One mutation envelope built from command-line arguments, through the
//! core: the op id ([`OpId::from_parts`], a ULID), the HLC ([`HlcClock`],
//! node from the client id), the checksum ([`payload_checksum`]) and the
//! envelope checks ([`validate_mutation`]) a server applies.

use tidesync::hlc::node_id;
use tidesync::{
    payload_checksum, validate_mutation, Environment, Fields, Hlc, HlcClock, Limits, Mutation,
    MutationKind, OpId,
};

/// Who writes: the terminal's identity, as its key was issued.
#[derive(Clone, Debug)]
pub struct Writer {
    /// The installation id (`client_id`); the HLC's node is derived from it.
    pub client_id: String,
    /// The terminal the key was issued for.
    pub terminal_id: String,
    /// The branch the key was issued for.
    pub branch_id: String,
}

/// What to write.
#[derive(Clone, Debug)]
pub struct Change {
    /// Target collection.
    pub collection: String,
    /// Target entity id.
    pub entity_id: String,
    /// What the mutation does.
    pub kind: MutationKind,
    /// The payload as JSON text (an object), absent for a delete.
    pub payload: Option<String>,
    /// The server version the change is made against; `None`: 0 for
    /// create and append, required for patch and delete.
    pub base_version: Option<u64>,
    /// The op id to use (a retry of an earlier run); `None`: a new ULID.
    pub op_id: Option<String>,
    /// The payload's schema version.
    pub schema_version: u32,
}

/// A malformed argument: `(argument, what is wrong)`, reported as `BAD_ARGUMENT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadArgument(pub String);

/// The envelope for `change`, valid by the core's own checks (the default
/// [`Limits`], schema versions up to `change.schema_version`).
pub fn build(
    writer: &Writer,
    change: &Change,
    env: &impl Environment,
) -> Result<Mutation, BadArgument> {
    let bad = |m: String| BadArgument(m);
    let payload: Option<Fields> = match (&change.payload, change.kind) {
        (Some(_), MutationKind::Delete) => {
            return Err(bad("payload: must be absent for delete".into()))
        }
        (None, MutationKind::Delete) => None,
        (None, _) => return Err(bad("payload: is required for this kind".into())),
        (Some(text), _) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            Ok(_) => return Err(bad("payload: must be a JSON object".into())),
            Err(e) => return Err(bad(format!("payload: not JSON: {e}"))),
        },
    };
    let base_version = match (change.base_version, change.kind) {
        (Some(v), _) => v,
        (None, MutationKind::Create | MutationKind::Append) => 0,
        (None, _) => {
            return Err(bad(
                "base-version: required for patch and delete (the entity's server version: `tidesync pull` shows it)".into(),
            ))
        }
    };
    let now = env.now_ms();
    let op_id = match &change.op_id {
        Some(id) => OpId(id.clone()),
        None => OpId::from_parts(
            now,
            (u128::from(env.random_u64()) << 64) | u128::from(env.random_u64()),
        ),
    };
    let hlc: Hlc = HlcClock::new(node_id(&writer.client_id), Hlc::default()).tick(now);
    let m = Mutation {
        checksum: payload_checksum(
            &change.collection,
            &change.entity_id,
            change.kind,
            payload.as_ref(),
        ),
        op_id,
        client_id: writer.client_id.clone(),
        terminal_id: writer.terminal_id.clone(),
        branch_id: writer.branch_id.clone(),
        collection: change.collection.clone(),
        entity_id: change.entity_id.clone(),
        kind: change.kind,
        payload,
        base_version,
        hlc,
        schema_version: change.schema_version,
        offline: false,
        anomaly: None,
    };
    let limits = Limits {
        schema_versions: (1, change.schema_version.max(1)),
        ..Limits::default()
    };
    validate_mutation(&m, &limits).map_err(|e| bad(e.message))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidesync::env::SimEnv;

    fn writer() -> Writer {
        Writer {
            client_id: "ops-laptop".into(),
            terminal_id: "till-1".into(),
            branch_id: "downtown".into(),
        }
    }

    fn change(kind: MutationKind, payload: Option<&str>) -> Change {
        Change {
            collection: "rooms".into(),
            entity_id: "101".into(),
            kind,
            payload: payload.map(str::to_owned),
            base_version: None,
            op_id: None,
            schema_version: 1,
        }
    }

    #[test]
    fn builds_a_valid_envelope_with_ulid_hlc_and_checksum() {
        let env = SimEnv::new(1_732_540_000_000, 3);
        let m = build(
            &writer(),
            &change(MutationKind::Create, Some(r#"{"b":1,"a":2.5}"#)),
            &env,
        )
        .unwrap();
        assert!(m.op_id.is_valid());
        assert_eq!(m.op_id.timestamp_ms(), Some(1_732_540_000_000));
        assert_eq!(m.hlc.wall_ms, 1_732_540_000_000);
        assert_eq!(m.hlc.node, node_id("ops-laptop"));
        assert_eq!(m.base_version, 0);
        assert_eq!(
            m.checksum,
            tidesync::hash::sha256_hex(
                br#"{"c":"rooms","e":"101","k":"create","p":{"a":2.5,"b":1}}"#
            )
        );
        // Two runs make two op ids, unless one is given.
        let again = build(
            &writer(),
            &change(MutationKind::Create, Some(r#"{"b":1,"a":2.5}"#)),
            &env,
        )
        .unwrap();
        assert_ne!(again.op_id, m.op_id);
        let mut retry = change(MutationKind::Create, Some(r#"{"b":1,"a":2.5}"#));
        retry.op_id = Some(m.op_id.0.clone());
        assert_eq!(build(&writer(), &retry, &env).unwrap().op_id, m.op_id);
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let env = SimEnv::new(1, 1);
        let err = |c: Change| build(&writer(), &c, &env).unwrap_err().0;
        assert!(err(change(MutationKind::Patch, Some(r#"{"a":1}"#))).starts_with("base-version: "));
        assert!(err(change(MutationKind::Create, Some("[1]")))
            .starts_with("payload: must be a JSON object"));
        assert!(err(change(MutationKind::Create, Some("{"))).starts_with("payload: not JSON"));
        assert!(err(change(MutationKind::Create, None)).starts_with("payload: "));
        assert!(err(change(MutationKind::Delete, Some("{}"))).starts_with("payload: "));
        let mut c = change(MutationKind::Create, Some("{}"));
        c.op_id = Some("not-a-ulid".into());
        assert!(err(c).starts_with("op_id: "));
        let mut c = change(MutationKind::Create, Some("{}"));
        c.collection = "Rooms".into();
        assert!(err(c).starts_with("collection: "));
    }
}
