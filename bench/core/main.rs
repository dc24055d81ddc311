//! Native benchmarks of the core engine over the in-memory store and the
//! in-process server logic: what the engine itself costs, without storage
//! or network. `cargo bench --bench core` (add `-- quick` for a short run).
//!
//! - flat growth: local write latency (entity + outbox + audit, one batch)
//!   with 1k and with 200k entities stored, and their ratio (target <= 1.2);
//! - flush: 10k queued mutations pushed and acknowledged;
//! - snapshot apply: 100k entities pulled into an empty store.

use futures::executor::block_on;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tidesync::env::SimEnv;
use tidesync::store::{EntityRecord, LocalEntity, WriteBatch, WriteOp};
use tidesync::*;
use tidesync_server::storage::Partition;
use tidesync_server::{
    InProcessTransport, MemoryServerStore as ServerMemory, SyncService, TerminalContext,
};

fn fields(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn world() -> (
    Arc<SyncService<ServerMemory>>,
    InProcessTransport<ServerMemory>,
) {
    let server = Arc::new(SyncService::new(ServerMemory::new()));
    let t = InProcessTransport::new(server.clone(), TerminalContext::new("hotel", "b1", "t1"));
    (server, t)
}

fn config() -> EngineConfig {
    EngineConfig::new("bench", "t1", "b1").with_policy("rooms", ConflictPolicy::MergeThreeWay)
}

/// A store holding `n` synced rooms.
fn store_with(n: usize) -> MemoryStore {
    let store = MemoryStore::new();
    let ops = (0..n)
        .map(|i| {
            let s = EntityState {
                collection: "rooms".into(),
                id: format!("r{i:07}"),
                version: 1,
                fields: fields(json!({"status": "dirty", "floor": i % 20})),
                deleted: false,
                updated_at: Hlc::default(),
                last_op: None,
            };
            WriteOp::PutEntity(EntityRecord {
                key: s.key(),
                view: Some(LocalEntity {
                    collection: s.collection.clone(),
                    id: s.id.clone(),
                    fields: s.fields.clone(),
                    deleted: false,
                    server_version: 1,
                    updated_at: s.updated_at,
                    pending: 0,
                    conflicted: false,
                }),
                server: Some(s),
                chain_base: None,
            })
        })
        .collect();
    block_on(store.commit(WriteBatch { ops })).unwrap();
    store
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn write_latency(stored: usize, writes: usize) -> (f64, f64) {
    let (_, t) = world();
    let engine = block_on(Engine::open(
        store_with(stored),
        t,
        SimEnv::new(0, 1),
        config(),
    ))
    .unwrap();
    let mut lat = Vec::with_capacity(writes);
    for i in 0..writes {
        let id = format!("r{:07}", (i * 7919) % stored);
        let started = Instant::now();
        block_on(engine.patch("rooms", &id, fields(json!({"status": "clean", "n": i})))).unwrap();
        lat.push(started.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };

    let writes = 5_000 / scale;
    let (p50_small, p99_small) = write_latency(1_000, writes);
    let (p50_big, p99_big) = write_latency(200_000 / scale, writes);
    println!(
        "local write, 1k stored: p50 {p50_small:.1} us, p99 {p99_small:.1} us; {}k stored: p50 {p50_big:.1} us, p99 {p99_big:.1} us; growth ratio p50 {:.2}",
        200 / scale,
        p50_big / p50_small
    );

    let n = 10_000 / scale;
    let (server, t) = world();
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        t,
        SimEnv::new(0, 2),
        config(),
    ))
    .unwrap();
    for i in 0..n {
        block_on(engine.create(
            "rooms",
            Some(&format!("n{i:06}")),
            fields(json!({"status": "dirty"})),
        ))
        .unwrap();
    }
    let started = Instant::now();
    let report = block_on(engine.sync_now()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.acknowledged, n);
    assert_eq!(server.metrics().applied, n as u64);
    println!(
        "flush: {n} mutations pushed and acknowledged in {:.3} s ({:.0}/s)",
        secs,
        n as f64 / secs
    );

    let n = 100_000 / scale;
    let (server, t) = world();
    server
        .seed(
            &Partition::new("hotel", "b1"),
            Hlc::default(),
            (0..n).map(|i| {
                (
                    EntityKey::new("rooms", format!("s{i:07}")),
                    fields(json!({"status": "dirty", "floor": i % 20})),
                )
            }),
        )
        .unwrap();
    let engine = block_on(Engine::open(
        MemoryStore::new(),
        t,
        SimEnv::new(0, 3),
        config(),
    ))
    .unwrap();
    let started = Instant::now();
    let report = block_on(engine.pull()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.pulled, n);
    println!(
        "snapshot apply: {n} entities in {:.3} s ({:.0}/s)",
        secs,
        n as f64 / secs
    );
}
