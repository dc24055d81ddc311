//! The service test suite on PostgreSQL, plus the cursor test with two
//! server instances. Needs `TIDESYNC_TEST_PG_URL` and the `pg-tests`
//! feature (scripts/test-server.sh provides both); without the URL every
//! test here fails.

mod auth_flood;
mod common;
mod http_common;
mod http_conformance;
mod suite;

const BACKEND: common::Kind = common::Kind::Postgres;

mod pg_only {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    use serde_json::json;
    use tidesync::{AckResult, ChangesRequest, Cursor, MutationKind};
    use tidesync_server::storage::migrate;
    use tidesync_server::{Backend, PgStore, SyncService, TerminalContext};

    use crate::common::*;

    /// Two server instances (each with its own connection pool) on one
    /// database, writers on both, readers on both paging the change feed
    /// while the writes land: every reader must see every change exactly
    /// once, in cursor order, with no gap. A sequence-numbered log fails
    /// this (a late commit falls behind a cursor already passed).
    #[test]
    fn the_cursor_never_skips_a_late_commit_across_two_instances() {
        let url = test_pg_url();
        let schema = format!("ts_cursor_{}", std::process::id());
        let a = Arc::new(SyncService::new(Backend::new(
            PgStore::temporary(&url, &schema).unwrap(),
        )));
        let b = Arc::new(SyncService::new(Backend::new(
            PgStore::open_in_schema(&url, Some(&schema)).unwrap(),
        )));
        const WRITERS: u64 = 6;
        const PER_WRITER: u64 = 60;
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .enumerate()
            .map(|(r, s)| {
                let s = Arc::clone(s);
                let done = Arc::clone(&done);
                thread::spawn(move || {
                    let c = TerminalContext::new("acme", "b1", format!("reader{r}"));
                    let mut seen: Vec<(Cursor, String)> = Vec::new();
                    let mut since = Cursor(0);
                    loop {
                        let finished = done.load(Ordering::SeqCst);
                        let page = s
                            .changes(
                                &c,
                                ChangesRequest {
                                    since,
                                    limit: 3 + r as u32,
                                },
                            )
                            .unwrap();
                        let mut cursor = since;
                        for ch in &page.changes {
                            cursor = Cursor(cursor.0 + 1);
                            seen.push((cursor, ch.id.clone()));
                        }
                        assert_eq!(page.next, cursor, "the page's cursors have no gap");
                        since = page.next;
                        if finished && !page.has_more {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = Arc::clone(if w % 2 == 0 { &a } else { &b });
                thread::spawn(move || {
                    let c = TerminalContext::new("acme", "b1", format!("w{w}"));
                    for i in 0..PER_WRITER {
                        let m = mutation(
                            &c,
                            op_id(w * 10_000 + i + 1),
                            MutationKind::Create,
                            "rooms",
                            &format!("w{w}-{i}"),
                            Some(json!({"i": i})),
                            0,
                        );
                        assert!(matches!(push1(&s, &c, m), AckResult::Applied { .. }));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let total = WRITERS * PER_WRITER;
        for r in readers {
            let seen = r.join().unwrap();
            assert_eq!(seen.len() as u64, total, "every change, once");
            let ids: BTreeSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
            assert_eq!(ids.len() as u64, total, "no change twice");
        }
        // Both instances agree on the log.
        let c = TerminalContext::new("acme", "b1", "check");
        assert_eq!(all_changes(&a, &c).len() as u64, total);
        assert_eq!(all_changes(&b, &c).len() as u64, total);
        assert_eq!(a.head(&c).unwrap(), Cursor(total));
        assert_eq!(b.head(&c).unwrap(), Cursor(total));
    }

    #[test]
    fn a_database_newer_than_the_code_is_refused() {
        let url = test_pg_url();
        let schema = format!("ts_newer_{}", std::process::id());
        let store = PgStore::temporary(&url, &schema).unwrap();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "INSERT INTO \"{schema}\".schema_migrations (version, name, checksum, applied_at_ms) \
             VALUES (999, '0999_future.sql', 'x', 0)"
        ))
        .unwrap();
        let err = PgStore::open_in_schema(&url, Some(&schema)).unwrap_err();
        assert!(err.to_string().contains("newer than this server"), "{err}");
        drop(store);
    }

    /// A database written by schema 0001 (ledger keyed by tenant, terminal,
    /// op id) migrates to 0002 (the branch in the key), and a retry of an
    /// op applied before the upgrade is still a duplicate.
    #[test]
    fn a_0001_database_with_ledger_rows_migrates_and_old_ops_stay_duplicates() {
        let url = test_pg_url();
        let schema = format!("ts_ledger_v1_{}", std::process::id());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\";
             SET search_path TO \"{schema}\""
        ))
        .unwrap();
        let old = database_at_0001_with_ledger_rows(
            &mut |sql| c.batch_execute(sql).unwrap(),
            &migrate::POSTGRES[0],
            "BIGINT",
        );
        let store = PgStore::open_in_schema(&url, Some(&schema)).unwrap();
        let versions: Vec<i64> = c
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let all: Vec<i64> = migrate::POSTGRES.iter().map(|m| m.version).collect();
        assert_eq!(versions, all);
        let s = SyncService::new(Backend::new(store));
        old_ops_are_still_duplicates_after_the_migration(&s, &old);
        drop(s);
        c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .unwrap();
    }
}

/// The engine end to end over HTTP with the server on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_offline_writes_flush_exactly_once_over_http() {
    let store = http_common::blocking(|| {
        tidesync_server::testing::temporary_postgres(&common::test_pg_url())
    });
    http_common::offline_writes_flush_exactly_once(tidesync_server::SyncService::new(
        tidesync_server::Backend::new(store),
    ))
    .await;
}

macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {$(
        /// Protocol conformance over HTTP on PostgreSQL (http_conformance/).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let store = http_common::blocking(|| {
                tidesync_server::testing::temporary_postgres(&common::test_pg_url())
            });
            http_conformance::$name(tidesync_server::Backend::new(store)).await;
        }
    )*};
}

on_postgres!(
    trailing_bytes_after_the_body_are_400_and_nothing_is_applied,
    decoding_errors_start_with_body_or_the_field_path,
    refusals_outside_the_handlers_have_the_json_error_body,
    bodies_over_the_limit_are_413_before_the_body_is_read,
    the_same_terminal_and_op_id_on_two_branches_are_both_applied,
    no_query_parameter_yields_a_5xx,
    id_limits_are_bytes_and_client_and_server_agree,
    edge_cases_have_the_documented_outcomes,
);

/// A flood of junk keys (auth_load.rs) with the server on PostgreSQL: each
/// lookup is a real round trip (plus the 3 ms the counting store adds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_keys_leaves_valid_pushes_within_2x_of_their_latency() {
    let store = http_common::blocking(|| {
        tidesync_server::testing::temporary_postgres(&common::test_pg_url())
    });
    auth_flood::measure(store, auth_flood::config())
        .await
        .check("PostgreSQL");
}
