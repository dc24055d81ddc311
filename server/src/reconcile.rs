//! Reconcile: bucketed digests (step 1) and the repair plan (step 2), as
//! pure functions over the live entities of one collection.
//!
//! Ids are hashed into `buckets` buckets with [`bucket_of`]; a bucket's
//! digest is its live-entity count and the wrapping sum of
//! [`entity_digest`]`(id, version)` over them. Client and server compute the
//! same thing; a bucket the client omits counts as empty (count 0, digest 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tidesync::digest::bucket_of;
use tidesync::{BucketDigest, EntityState, ManifestEntry, ReconcilePlan, ReconcileRequest};

use crate::error::ServiceError;

/// The largest number of buckets a reconcile request may use.
pub const MAX_BUCKETS: u32 = 4096;

pub use tidesync::digest::bucket_digests;

/// Checks the shape of a request: bucket count, manifest size, buckets in
/// range, no duplicates, every manifest id in a listed bucket.
pub(crate) fn check_request(
    req: &ReconcileRequest,
    max_manifest: usize,
) -> Result<(), ServiceError> {
    if !(1..=MAX_BUCKETS).contains(&req.buckets) {
        return Err(ServiceError::invalid(
            "buckets",
            format_args!("must be 1 to {MAX_BUCKETS}, got {}", req.buckets),
        ));
    }
    if req.manifest.len() > max_manifest {
        return Err(ServiceError::new(
            tidesync::ErrorCode::ManifestTooLarge,
            format!(
                "manifest: {} entries exceed the limit of {max_manifest}; \
                 send fewer buckets per request",
                req.manifest.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for d in &req.digests {
        if d.bucket >= req.buckets {
            return Err(ServiceError::invalid(
                "digests",
                format_args!("bucket {} is out of range 0..{}", d.bucket, req.buckets),
            ));
        }
        if !seen.insert(d.bucket) {
            return Err(ServiceError::invalid(
                "digests",
                format_args!("bucket {} appears twice", d.bucket),
            ));
        }
    }
    if let Some(b) = req.manifest_buckets.iter().find(|b| **b >= req.buckets) {
        return Err(ServiceError::invalid(
            "manifest_buckets",
            format_args!("bucket {b} is out of range 0..{}", req.buckets),
        ));
    }
    let covered: BTreeSet<u32> = req.manifest_buckets.iter().copied().collect();
    let mut ids = BTreeSet::new();
    for e in &req.manifest {
        let b = bucket_of(&e.id, req.buckets);
        if !covered.contains(&b) {
            return Err(ServiceError::invalid(
                "manifest",
                format_args!(
                    "id {} is in bucket {b}, which manifest_buckets does not list",
                    e.id
                ),
            ));
        }
        if !ids.insert(e.id.as_str()) {
            return Err(ServiceError::invalid(
                "manifest",
                format_args!("id {} appears twice", e.id),
            ));
        }
    }
    Ok(())
}

/// The buckets whose `(count, digest)` differ between the server's live
/// entities and the client's digests, ascending.
pub(crate) fn mismatched(live: &[EntityState], buckets: u32, client: &[BucketDigest]) -> Vec<u32> {
    let server = bucket_digests(live.iter().map(|s| (s.id.as_str(), s.version)), buckets);
    let mut all: BTreeMap<u32, [(u64, u64); 2]> = BTreeMap::new();
    for d in &server {
        all.entry(d.bucket).or_default()[0] = (d.count, d.digest);
    }
    for d in client {
        all.entry(d.bucket).or_default()[1] = (d.count, d.digest);
    }
    all.into_iter()
        .filter(|(_, [s, c])| s != c)
        .map(|(b, _)| b)
        .collect()
}

/// What the client must change, for the buckets of `manifest_buckets`:
/// server-live ids absent from the manifest (`missing`), ids held at another
/// version (`stale`), and manifest ids not live on the server (`extra`).
/// Each list is ordered by id.
pub(crate) fn plan(
    live: &[EntityState],
    buckets: u32,
    manifest_buckets: &[u32],
    manifest: &[ManifestEntry],
) -> ReconcilePlan {
    let covered: BTreeSet<u32> = manifest_buckets.iter().copied().collect();
    let client: HashMap<&str, u64> = manifest
        .iter()
        .map(|e| (e.id.as_str(), e.version))
        .collect();
    let mut server: Vec<&EntityState> = live
        .iter()
        .filter(|s| covered.contains(&bucket_of(&s.id, buckets)))
        .collect();
    server.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = ReconcilePlan::default();
    for s in &server {
        match client.get(s.id.as_str()) {
            None => out.missing.push((*s).clone()),
            Some(v) if *v != s.version => out.stale.push((*s).clone()),
            Some(_) => {}
        }
    }
    let live_ids: BTreeSet<&str> = server.iter().map(|s| s.id.as_str()).collect();
    out.extra = manifest
        .iter()
        .filter(|e| !live_ids.contains(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect();
    out.extra.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidesync::{Fields, Hlc};

    fn s(id: &str, version: u64) -> EntityState {
        EntityState {
            collection: "rooms".into(),
            id: id.into(),
            version,
            fields: Fields::new(),
            deleted: false,
            updated_at: Hlc::default(),
            last_op: None,
        }
    }

    #[test]
    fn digests_do_not_depend_on_order() {
        let a = bucket_digests([("x", 1), ("y", 2), ("z", 3)], 4);
        let b = bucket_digests([("z", 3), ("x", 1), ("y", 2)], 4);
        assert_eq!(a, b);
        assert_eq!(a.iter().map(|d| d.count).sum::<u64>(), 3);
    }

    #[test]
    fn omitted_bucket_is_empty_and_extra_client_bucket_mismatches() {
        let live = [s("x", 1)];
        let b = bucket_of("x", 8);
        assert_eq!(mismatched(&live, 8, &[]), vec![b]);
        let client = bucket_digests([("x", 1)], 8);
        assert!(mismatched(&live, 8, &client).is_empty());
        let client = bucket_digests([("x", 1), ("q", 1)], 8);
        let qb = bucket_of("q", 8);
        assert_eq!(mismatched(&live, 8, &client), vec![qb]);
        // A client reporting an empty bucket explicitly matches an empty server bucket.
        let other = (b + 1) % 8;
        let zero = BucketDigest {
            bucket: other,
            count: 0,
            digest: 0,
        };
        let mut client = bucket_digests([("x", 1)], 8);
        client.push(zero);
        assert!(mismatched(&live, 8, &client).is_empty());
    }

    #[test]
    fn plan_in_one_bucket() {
        let live = [s("a", 1), s("b", 2), s("c", 1)];
        let manifest = [
            ManifestEntry {
                id: "b".into(),
                version: 1,
            },
            ManifestEntry {
                id: "c".into(),
                version: 1,
            },
            ManifestEntry {
                id: "z".into(),
                version: 4,
            },
        ];
        let p = plan(&live, 1, &[0], &manifest);
        assert_eq!(p.missing, vec![s("a", 1)]);
        assert_eq!(p.stale, vec![s("b", 2)]);
        assert_eq!(p.extra, vec!["z".to_string()]);
    }
}
