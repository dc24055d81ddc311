//! Server benchmark: ingest (mutations/s, batches of 100, several terminals
//! pushing at once) and pull (changes/s, pages of 1000) over HTTP on
//! loopback, against SQLite and, when `TIDESYNC_BENCH_PG_URL` is set,
//! PostgreSQL. The server runs in this process (same machine, same cores).
//!
//! On PostgreSQL it also measures the database's own ceiling for the same
//! load, the **raw batched insert**: the same number of connections as
//! terminals, each inserting the same number of rows in batches of the same
//! size (one `INSERT … SELECT FROM unnest(…)` and one commit per batch) into
//! one table keyed like `entities`, rows of the size of the server's entity
//! state. No HTTP, no decisions, one table instead of four: what the server
//! reaches is given as a ratio to it.
//!
//! Run with `bash bench/server/run.sh` (builds with the `server` profile and
//! starts a PostgreSQL for the PostgreSQL rows). Knobs (environment):
//! `BENCH_TERMINALS` (4), `BENCH_BATCHES` per terminal (50), `BENCH_BATCH`
//! (100), `BENCH_RUNS` (3: each figure is the median of that many runs, each
//! on a fresh database), `BENCH_BACKENDS` (`sqlite,postgres`).

use std::time::{Duration, Instant};

use serde_json::json;
use tidesync::{ChangesPage, Mutation, MutationKind, OpId, PushResponse};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::{
    mutation, push_request, temporary_postgres, temporary_sqlite, LoopbackServer,
};
use tidesync_server::{Backend, SqliteSync, SyncService, TerminalContext};

/// The median of `xs` (not empty).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The raw batched insert (see the module docs): `connections` threads,
/// each with its own connection, inserting `batches` batches of `batch`
/// rows, one transaction per batch. Rows per second.
fn raw_insert(url: &str, connections: usize, batches: usize, batch: usize) -> f64 {
    let schema = tidesync_server::testing::unique_name("ts_bench_raw");
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".raw (
                 tenant TEXT COLLATE \"C\" NOT NULL, branch TEXT COLLATE \"C\" NOT NULL,
                 collection TEXT COLLATE \"C\" NOT NULL, id TEXT COLLATE \"C\" NOT NULL,
                 state TEXT COLLATE \"C\" NOT NULL,
                 PRIMARY KEY (tenant, branch, collection, id))"
        ))
        .unwrap();
    // The rows: the state JSON of the entities the server run creates.
    let rows: Vec<Vec<(Vec<String>, Vec<String>)>> = (0..connections)
        .map(|t| {
            let terminal = TerminalContext::new("acme", "b1", format!("term{t}"));
            (0..batches)
                .map(|b| {
                    (0..batch)
                        .map(|i| {
                            let m = create_room(&terminal, t, b * batch + i);
                            let state = serde_json::json!({
                                "collection": m.collection, "id": m.entity_id, "version": 1,
                                "fields": m.payload, "deleted": false, "updated_at": m.hlc,
                                "last_op": m.op_id,
                            });
                            (m.entity_id, state.to_string())
                        })
                        .unzip()
                })
                .collect()
        })
        .collect();
    let clients: Vec<postgres::Client> = (0..connections)
        .map(|_| {
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            c.batch_execute(&format!("SET search_path TO \"{schema}\""))
                .unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = clients
        .into_iter()
        .zip(rows)
        .map(|(mut c, batches)| {
            std::thread::spawn(move || {
                let insert = c
                    .prepare(
                        "INSERT INTO raw (tenant, branch, collection, id, state)
                         SELECT 'acme', 'b1', 'rooms', i, s FROM unnest($1::text[], $2::text[]) AS t(i, s)",
                    )
                    .unwrap();
                for (ids, states) in batches {
                    let mut tx = c.transaction().unwrap();
                    tx.execute(&insert, &[&ids, &states]).unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
    (connections * batches * batch) as f64 / elapsed.as_secs_f64()
}

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

/// Runs `once` `runs` times and gives the median of each figure.
fn median_of(runs: usize, mut once: impl FnMut() -> Figures) -> Figures {
    let all: Vec<Figures> = (0..runs).map(|_| once()).collect();
    Figures {
        mutations: all[0].mutations,
        ingest_per_s: median(all.iter().map(|f| f.ingest_per_s).collect()),
        pull_per_s: median(all.iter().map(|f| f.pull_per_s).collect()),
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
    let runs = env_or("BENCH_RUNS", 3).max(1);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<(String, Figures)> = Vec::new();
    let mut raw_rows: Vec<(String, f64)> = Vec::new();
    if backends.contains("sqlite") {
        for (name, sync) in [
            ("SQLite (synchronous=full)", SqliteSync::Full),
            ("SQLite (synchronous=normal)", SqliteSync::Normal),
        ] {
            let f = median_of(runs, || {
                let store = temporary_sqlite(sync);
                let f = rt.block_on(run(Backend::new(store), terminals, batches, batch));
                eprintln!(
                    "{name}: {:.0} mutations/s, {:.0} changes/s",
                    f.ingest_per_s, f.pull_per_s
                );
                f
            });
            rows.push((name.to_owned(), f));
        }
    }
    match std::env::var("TIDESYNC_BENCH_PG_URL") {
        Ok(url) if backends.contains("postgres") => {
            let f = median_of(runs, || {
                let store = temporary_postgres(&url);
                let f = rt.block_on(run(Backend::new(store), terminals, batches, batch));
                eprintln!(
                    "PostgreSQL: {:.0} mutations/s, {:.0} changes/s",
                    f.ingest_per_s, f.pull_per_s
                );
                std::thread::sleep(Duration::from_millis(200));
                f
            });
            rows.push(("PostgreSQL".to_owned(), f));
            for (name, connections, per) in [
                (format!("{terminals} connections"), terminals, batches),
                ("1 connection".to_owned(), 1, terminals * batches),
            ] {
                let rates: Vec<f64> = (0..runs)
                    .map(|_| {
                        let r = raw_insert(&url, connections, per, batch);
                        eprintln!("PostgreSQL raw batched insert, {name}: {r:.0} rows/s");
                        r
                    })
                    .collect();
                raw_rows.push((name, median(rates)));
            }
        }
        Ok(_) => {}
        Err(_) => eprintln!(
            "TIDESYNC_BENCH_PG_URL not set: PostgreSQL skipped (bench/server/run.sh sets it)"
        ),
    }
    println!(
        "\n{terminals} terminals x {batches} batches x {batch} mutations, HTTP on loopback, \
         server in process, {} cores, median of {runs} runs\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| backend | mutations | ingest (mutations/s) | pull (changes/s) |");
    println!("|---|---|---|---|");
    for (name, f) in &rows {
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            f.mutations, f.ingest_per_s, f.pull_per_s
        );
    }
    if !raw_rows.is_empty() {
        let pg = rows
            .iter()
            .find(|(n, _)| n == "PostgreSQL")
            .map(|(_, f)| f.ingest_per_s);
        println!(
            "\nPostgreSQL raw batched insert (one table, batches of {batch}, one commit each):\n"
        );
        println!("| raw insert | rows/s | server ingest / raw |");
        println!("|---|---|---|");
        for (name, rate) in raw_rows {
            let ratio = pg.map_or(String::new(), |p| format!("{:.2}", p / rate));
            println!("| {name} | {rate:.0} | {ratio} |");
        }
    }
}
