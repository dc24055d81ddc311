//! Server benchmark: ingest (mutations/s, batches of 100, several terminals
//! pushing at once) and pull (changes/s, pages of 1000) over HTTP on
//! loopback, against SQLite and, when `TIDESYNC_BENCH_PG_URL` is set,
//! PostgreSQL. The server runs in this process (same machine, same cores).
//!
//! Run with `bash bench/server/run.sh` (builds with the `server` profile and
//! starts a PostgreSQL for the PostgreSQL rows). Knobs (environment):
//! `BENCH_TERMINALS` (4), `BENCH_BATCHES` per terminal (50), `BENCH_BATCH`
//! (100).

use std::time::Instant;

use serde_json::json;
use tidesync::{ChangesPage, Mutation, MutationKind, OpId, PushResponse};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::{
    mutation, push_request, temporary_postgres, temporary_sqlite, LoopbackServer,
};
use tidesync_server::{Backend, SqliteSync, SyncService, TerminalContext};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    ingest_per_s: f64,
    pull_per_s: f64,
    mutations: usize,
}

/// Mutation `i` of terminal number `t`: the creation of a room.
fn create_room(terminal: &TerminalContext, t: usize, i: usize) -> Mutation {
    let mut m = mutation(
        terminal,
        OpId::from_parts(1_700_000_000_000 + i as u64, (t as u128) << 40 | i as u128),
        MutationKind::Create,
        "rooms",
        &format!("{}-{i}", terminal.terminal),
        Some(json!({"number": i, "status": "dirty", "floor": i % 10, "note": "bench"})),
        0,
    );
    m.hlc.node = t as u32;
    m
}

async fn run(backend: Backend, terminals: usize, batches: usize, batch: usize) -> Figures {
    let config = HttpConfig {
        rate_per_sec: 0.0,
        storage_workers: 8,
        ..HttpConfig::default()
    };
    let server = LoopbackServer::start(SyncService::new(backend), config, "127.0.0.1:0").await;
    let base = server.base.clone();
    let keys: Vec<String> = (0..terminals)
        .map(|t| server.key("b1", &format!("term{t}")))
        .collect();
    let client = reqwest::Client::new();

    // Bodies built up front: the clock measures the server, not the client's JSON.
    let bodies: Vec<Vec<Vec<u8>>> = (0..terminals)
        .map(|t| {
            let terminal = TerminalContext::new("acme", "b1", format!("term{t}"));
            (0..batches)
                .map(|b| {
                    let ms = (0..batch)
                        .map(|i| create_room(&terminal, t, b * batch + i))
                        .collect();
                    serde_json::to_vec(&push_request(ms)).unwrap()
                })
                .collect()
        })
        .collect();

    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .zip(&keys)
        .map(|(bodies, key)| {
            let (client, key, url) = (client.clone(), key.clone(), format!("{base}/v1/mutations"));
            tokio::spawn(async move {
                for body in bodies {
                    let resp = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status();
                    let text = resp.text().await.unwrap();
                    assert_eq!(status, 200, "{text}");
                    let r: PushResponse = serde_json::from_str(&text).unwrap();
                    assert!(r
                        .acks
                        .iter()
                        .all(|a| matches!(a.result, tidesync::AckResult::Applied { .. })));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let ingest = started.elapsed();
    let mutations = terminals * batches * batch;
    assert_eq!(server.app.service.metrics().applied as usize, mutations);

    let started = Instant::now();
    let mut since = 0u64;
    let mut pulled = 0;
    loop {
        let page: ChangesPage = client
            .get(format!("{base}/v1/changes?since={since}&limit=1000"))
            .bearer_auth(&keys[0])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pulled += page.changes.len();
        since = page.next.0;
        if !page.has_more {
            break;
        }
    }
    let pull = started.elapsed();
    assert_eq!(pulled, mutations);
    server.shutdown().await;
    Figures {
        ingest_per_s: mutations as f64 / ingest.as_secs_f64(),
        pull_per_s: pulled as f64 / pull.as_secs_f64(),
        mutations,
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_writer(std::io::stderr)
        .init();
    let terminals = env_or("BENCH_TERMINALS", 4);
    let batches = env_or("BENCH_BATCHES", 50);
    let batch = env_or("BENCH_BATCH", 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<(String, Figures)> = Vec::new();
    for (name, sync) in [
        ("SQLite (synchronous=full)", SqliteSync::Full),
        ("SQLite (synchronous=normal)", SqliteSync::Normal),
    ] {
        let store = temporary_sqlite(sync);
        let f = rt.block_on(run(Backend::new(store), terminals, batches, batch));
        eprintln!(
            "{name}: {:.0} mutations/s, {:.0} changes/s",
            f.ingest_per_s, f.pull_per_s
        );
        rows.push((name.to_owned(), f));
    }
    if let Ok(url) = std::env::var("TIDESYNC_BENCH_PG_URL") {
        let store = temporary_postgres(&url);
        rows.push((
            "PostgreSQL".to_owned(),
            rt.block_on(run(Backend::new(store), terminals, batches, batch)),
        ));
    } else {
        eprintln!(
            "TIDESYNC_BENCH_PG_URL not set: PostgreSQL skipped (bench/server/run.sh sets it)"
        );
    }
    println!(
        "\n{terminals} terminals x {batches} batches x {batch} mutations, HTTP on loopback, \
         server in process, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| backend | mutations | ingest (mutations/s) | pull (changes/s) |");
    println!("|---|---|---|---|");
    for (name, f) in rows {
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            f.mutations, f.ingest_per_s, f.pull_per_s
        );
    }
}
