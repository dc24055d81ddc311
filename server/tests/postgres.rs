//! The service test suite on PostgreSQL, plus the cursor test with two
//! server instances. Needs `TIDESYNC_TEST_PG_URL` and the `pg-tests`
//! feature (scripts/test-server.sh provides both); without the URL every
//! test here fails.

mod auth_flood;
mod common;
mod http_common;
mod http_conformance;
mod live_common;
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
    whoami_answers_the_keys_identity_behind_the_gate,
    a_pairing_code_redeems_once_for_a_key_that_works,
    concurrent_redeems_of_one_code_give_exactly_one_key,
    a_flood_of_bad_pairing_codes_is_rate_limited_like_bad_keys,
);

/// A flood of junk keys (auth_load.rs) with the server on PostgreSQL: each
/// lookup is a real round trip (plus the 3 ms the counting store adds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_keys_costs_few_lookups_and_pushes_go_through() {
    let store = http_common::blocking(|| {
        tidesync_server::testing::temporary_postgres(&common::test_pg_url())
    });
    auth_flood::measure(store, auth_flood::config())
        .await
        .check("PostgreSQL");
}

/// The live channel across server nodes: two servers (each its own pool
/// and LISTEN connection) on one PostgreSQL schema; a write through node A
/// pokes a subscriber on node B at once, with A's cursor, and a write
/// through B pokes a subscriber on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_pokes_a_subscriber_on_another() {
    use std::time::{Duration, Instant};
    use tidesync::client::live::ChannelEvent;
    use tidesync_server::{Backend, PgStore, SyncService};

    let url = common::test_pg_url();
    let schema = format!("ts_live_{}", std::process::id());
    let (a, b) = http_common::blocking(|| {
        let a = PgStore::temporary(&url, &schema).unwrap();
        let b = PgStore::open_in_schema(&url, Some(&schema)).unwrap();
        (a, b)
    });
    let node_a = http_common::Server::start(
        SyncService::new(Backend::new(a)),
        http_common::relaxed(),
        "127.0.0.1:0",
    )
    .await;
    let node_b = http_common::Server::start(
        SyncService::new(Backend::new(b)),
        http_common::relaxed(),
        "127.0.0.1:0",
    )
    .await;
    let (writer, reader) = (node_a.key("b1", "t1"), node_a.key("b1", "t2"));
    let mut on_b = live_common::subscribe(&node_b, &reader, "b1", "t2").await;
    assert_eq!(live_common::ready(&mut on_b).await, 0);
    let mut on_a = live_common::subscribe(&node_a, &writer, "b1", "t1").await;
    live_common::ready(&mut on_a).await;
    // The LISTEN connections start with the stores: give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=5u64 {
        let started = Instant::now();
        let cursor =
            live_common::push_room(&node_a, &writer, "b1", "t1", n, &format!("a{n}")).await;
        assert_eq!(
            on_b.next_poke(Duration::from_secs(1)).await,
            Some(ChannelEvent::Poke { cursor }),
            "node B heard node A's write"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            on_a.next_poke(Duration::from_secs(1)).await,
            Some(ChannelEvent::Poke { cursor })
        );
    }
    let cursor = live_common::push_room(&node_b, &reader, "b1", "t2", 9, "b9").await;
    assert_eq!(
        on_a.next_poke(Duration::from_secs(1)).await,
        Some(ChannelEvent::Poke { cursor }),
        "node A heard node B's write"
    );
    node_a.shutdown().await;
    node_b.shutdown().await;
}
