//! Reconcile: digests, plans, limits, scoping.

use crate::common::*;
use serde_json::json;
use tidesync::digest::bucket_of;
use tidesync::{Cursor, ErrorCode, ManifestEntry, MutationKind::*, ReconcileRequest};
use tidesync_server::reconcile::bucket_digests;

/// Creates `n` rooms `r0..` in branch b1 and returns the service and caller.
fn seeded(n: u64) -> (Service, tidesync_server::TerminalContext) {
    let s = service();
    let c = ctx("b1", "t1");
    for i in 0..n {
        push1(
            &s,
            &c,
            mutation(
                &c,
                op_id(i + 1),
                Create,
                "rooms",
                &format!("r{i}"),
                Some(json!({"i": i})),
                0,
            ),
        );
    }
    (s, c)
}

fn step1(buckets: u32, client: &[(String, u64)]) -> ReconcileRequest {
    ReconcileRequest {
        collection: "rooms".into(),
        buckets,
        digests: bucket_digests(client.iter().map(|(id, v)| (id.as_str(), *v)), buckets),
        manifest_buckets: vec![],
        manifest: vec![],
    }
}

fn in_sync_client(n: u64) -> Vec<(String, u64)> {
    (0..n).map(|i| (format!("r{i}"), 1)).collect()
}

#[test]
fn in_sync_means_nothing_to_do() {
    let (s, c) = seeded(40);
    let client = in_sync_client(40);
    let resp = s.reconcile(&c, step1(16, &client)).unwrap();
    assert!(resp.mismatched.is_empty());
    assert_eq!(resp.plan, None);
    assert_eq!(resp.at, Cursor(40));
    // Step 2 for every bucket: an empty plan.
    let all: Vec<u32> = (0..16).collect();
    let manifest = client
        .iter()
        .map(|(id, v)| ManifestEntry {
            id: id.clone(),
            version: *v,
        })
        .collect();
    let req = ReconcileRequest {
        manifest_buckets: all,
        manifest,
        ..step1(16, &client)
    };
    let plan = s.reconcile(&c, req).unwrap().plan.unwrap();
    assert!(plan.missing.is_empty() && plan.stale.is_empty() && plan.extra.is_empty());
    assert_eq!(s.metrics().reconcile_runs, 2);
}

#[test]
fn finds_planted_missing_stale_and_extra() {
    let (s, c) = seeded(40);
    // Server-side changes the client did not see: r5 updated, r7 deleted.
    push1(
        &s,
        &c,
        mutation(
            &c,
            op_id(100),
            Patch,
            "rooms",
            "r5",
            Some(json!({"i": 55})),
            1,
        ),
    );
    push1(
        &s,
        &c,
        mutation(&c, op_id(101), Delete, "rooms", "r7", None, 1),
    );
    // Client: lacks r3, holds r5 at v1 (stale), still has r7 and a phantom "zz".
    let mut client: Vec<(String, u64)> = in_sync_client(40)
        .into_iter()
        .filter(|(id, _)| id != "r3")
        .collect();
    client.push(("zz".into(), 4));
    // And r9 at a version the server never produced (ahead: e.g. a restored server).
    client.iter_mut().find(|(id, _)| id == "r9").unwrap().1 = 3;
    let buckets = 16;
    let resp = s.reconcile(&c, step1(buckets, &client)).unwrap();
    let mut expected: Vec<u32> = ["r3", "r5", "r7", "r9", "zz"]
        .iter()
        .map(|id| bucket_of(id, buckets))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(resp.mismatched, expected);

    // Step 2: the manifest of the mismatched buckets only.
    let manifest: Vec<ManifestEntry> = client
        .iter()
        .filter(|(id, _)| resp.mismatched.contains(&bucket_of(id, buckets)))
        .map(|(id, v)| ManifestEntry {
            id: id.clone(),
            version: *v,
        })
        .collect();
    let req = ReconcileRequest {
        collection: "rooms".into(),
        buckets,
        digests: vec![],
        manifest_buckets: resp.mismatched.clone(),
        manifest,
    };
    let plan = s.reconcile(&c, req).unwrap().plan.unwrap();
    let ids = |v: &[tidesync::EntityState]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plan.missing), ["r3"]);
    assert_eq!(plan.missing[0].fields, fields(json!({"i": 3})));
    assert_eq!(ids(&plan.stale), ["r5", "r9"]);
    assert_eq!(plan.stale[0].version, 2);
    assert_eq!(plan.stale[1].version, 1);
    assert_eq!(plan.extra, ["r7", "zz"]);
}

#[test]
fn other_collections_and_branches_do_not_count() {
    let (s, c) = seeded(5);
    push1(
        &s,
        &c,
        mutation(&c, op_id(50), Create, "guests", "r0x", Some(json!({})), 0),
    );
    let other = ctx("b2", "t2");
    push1(
        &s,
        &other,
        mutation(
            &other,
            op_id(51),
            Create,
            "rooms",
            "r99",
            Some(json!({})),
            0,
        ),
    );
    let resp = s.reconcile(&c, step1(8, &in_sync_client(5))).unwrap();
    assert!(resp.mismatched.is_empty());
    // b2 sees only its own room.
    let resp = s.reconcile(&other, step1(8, &[("r99".into(), 1)])).unwrap();
    assert!(resp.mismatched.is_empty());
    assert_eq!(resp.at, Cursor(1));
}

#[test]
fn manifest_too_large_is_413() {
    let config = tidesync_server::ServiceConfig {
        max_manifest: 3,
        ..Default::default()
    };
    let s = service_with(config);
    let c = ctx("b1", "t1");
    let manifest: Vec<ManifestEntry> = (0..4)
        .map(|i| ManifestEntry {
            id: format!("r{i}"),
            version: 1,
        })
        .collect();
    let req = ReconcileRequest {
        collection: "rooms".into(),
        buckets: 1,
        digests: vec![],
        manifest_buckets: vec![0],
        manifest: manifest.clone(),
    };
    let err = s.reconcile(&c, req.clone()).unwrap_err();
    assert_eq!(err.code, ErrorCode::ManifestTooLarge);
    assert_eq!(err.http_status(), 413);
    let ok = ReconcileRequest {
        manifest: manifest[..3].to_vec(),
        ..req
    };
    assert_eq!(s.reconcile(&c, ok).unwrap().plan.unwrap().extra.len(), 3);
}

#[test]
fn malformed_requests_are_event_invalid_naming_the_field() {
    let (s, c) = seeded(3);
    let base = step1(4, &in_sync_client(3));
    let bad: Vec<(ReconcileRequest, &str)> = vec![
        (
            ReconcileRequest {
                buckets: 0,
                ..base.clone()
            },
            "buckets",
        ),
        (
            ReconcileRequest {
                buckets: 4097,
                digests: vec![],
                ..base.clone()
            },
            "buckets",
        ),
        (
            ReconcileRequest {
                collection: "Not Valid".into(),
                ..base.clone()
            },
            "collection",
        ),
        (
            ReconcileRequest {
                digests: vec![tidesync::BucketDigest {
                    bucket: 4,
                    count: 1,
                    digest: 9,
                }],
                ..base.clone()
            },
            "digests",
        ),
        (
            ReconcileRequest {
                digests: [base.digests.clone(), base.digests.clone()].concat(),
                ..base.clone()
            },
            "digests",
        ),
        (
            ReconcileRequest {
                manifest_buckets: vec![4],
                ..base.clone()
            },
            "manifest_buckets",
        ),
        (
            ReconcileRequest {
                manifest_buckets: vec![(bucket_of("r0", 4) + 1) % 4],
                manifest: vec![ManifestEntry {
                    id: "r0".into(),
                    version: 1,
                }],
                ..base.clone()
            },
            "manifest",
        ),
        (
            ReconcileRequest {
                manifest_buckets: vec![bucket_of("r0", 4)],
                manifest: vec![
                    ManifestEntry {
                        id: "r0".into(),
                        version: 1
                    };
                    2
                ],
                ..base.clone()
            },
            "manifest",
        ),
    ];
    for (req, field) in bad {
        let err = s.reconcile(&c, req.clone()).unwrap_err();
        assert_eq!(err.code, ErrorCode::EventInvalid, "{req:?}");
        assert!(
            err.message.starts_with(&format!("{field}:")),
            "{field}: {}",
            err.message
        );
    }
    // The edges of the bucket range are fine.
    assert!(s
        .reconcile(&c, step1(1, &in_sync_client(3)))
        .unwrap()
        .mismatched
        .is_empty());
    assert!(s
        .reconcile(&c, step1(4096, &in_sync_client(3)))
        .unwrap()
        .mismatched
        .is_empty());
}
