//! The bucketed reconcile digests, shared by client and server (the hash
//! primitives are in [`crate::hash`]).

pub use crate::hash::{fnv1a64, sha256_hex};

/// The reconcile bucket of an entity id, out of `buckets`.
pub fn bucket_of(id: &str, buckets: u32) -> u32 {
    (fnv1a64(id.as_bytes()) % u64::from(buckets.max(1))) as u32
}

/// The contribution of one live entity to its bucket's digest. Digests are the
/// wrapping sum of these, so they can be updated incrementally and do not
/// depend on the order entities are visited in.
pub fn entity_digest(id: &str, version: u64) -> u64 {
    let mut buf = Vec::with_capacity(id.len() + 9);
    buf.extend_from_slice(id.as_bytes());
    buf.push(0);
    buf.extend_from_slice(&version.to_le_bytes());
    fnv1a64(&buf)
}

/// The digests of the non-empty buckets of a set of live entities
/// `(id, version)`, ordered by bucket. Client and server both use it.
pub fn bucket_digests<'a>(
    entities: impl IntoIterator<Item = (&'a str, u64)>,
    buckets: u32,
) -> Vec<crate::protocol::BucketDigest> {
    let mut map: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for (id, version) in entities {
        let slot = map.entry(bucket_of(id, buckets)).or_default();
        slot.0 += 1;
        slot.1 = slot.1.wrapping_add(entity_digest(id, version));
    }
    map.into_iter()
        .map(|(bucket, (count, digest))| crate::protocol::BucketDigest {
            bucket,
            count,
            digest,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
