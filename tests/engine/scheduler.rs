//! The host-neutral sync scheduler (`tidesync::client::scheduler`) on a
//! simulated clock: a wake syncs at once, a quiet client pulls every
//! interval, an offline client probes before it tries again.

use crate::common::*;
use futures::channel::mpsc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tidesync::client::scheduler::{self, HostFuture, SchedulerHost};

/// Sleeping advances the shared simulated clock; the probe answers what
/// the test says and is counted.
struct SimHost {
    env: SimEnv,
    reachable: Arc<AtomicBool>,
    probes: AtomicU64,
    slept_ms: AtomicU64,
}

impl SchedulerHost for SimHost {
    fn sleep(&self, ms: u64) -> HostFuture<'_, ()> {
        self.env.advance(ms);
        self.slept_ms.fetch_add(ms, Ordering::SeqCst);
        Box::pin(futures::future::ready(()))
    }
    fn probe(&self) -> HostFuture<'_, bool> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        let up = self.reachable.load(Ordering::SeqCst);
        Box::pin(futures::future::ready(up))
    }
}

fn host(w: &World) -> SimHost {
    SimHost {
        env: w.env.clone(),
        reachable: Arc::new(AtomicBool::new(true)),
        probes: AtomicU64::new(0),
        slept_ms: AtomicU64::new(0),
    }
}

/// Runs the scheduler until `rounds` sleeps have passed.
fn run_for<S: Store>(engine: &Engine<S, Net, SimEnv>, host: &SimHost, rounds: u64, interval: u64) {
    let (tx, rx) = mpsc::unbounded();
    tx.unbounded_send(()).unwrap();
    let sleeps = AtomicU64::new(0);
    let alive = || sleeps.fetch_add(1, Ordering::SeqCst) < rounds * 2;
    block_on(scheduler::run(engine, host, rx, interval, alive));
    drop(tx);
}

#[test]
fn a_wake_syncs_at_once_and_a_quiet_client_pulls_every_interval() {
    let w = World::new();
    let engine = w.open(MemoryStore::new(), w.net("t1"), "t1");
    block_on(engine.create("tasks", Some("task-1"), f(json!({"status": "open"})))).unwrap();
    let h = host(&w);
    run_for(&engine, &h, 10, 30_000);
    assert!(
        block_on(engine.outbox()).is_empty(),
        "the queued write was pushed"
    );
    assert_eq!(w.applied_ops().len(), 1, "exactly once");
    // A change made on the server reaches the quiet client by the next pull.
    w.admin(room(2), f(json!({"status": "out-of-order"})));
    run_for(&engine, &h, 3, 30_000);
    assert_eq!(
        block_on(engine.get("rooms", "room-2"))
            .unwrap()
            .unwrap()
            .fields["status"],
        "out-of-order"
    );
    let slept = h.slept_ms.load(Ordering::SeqCst);
    assert!(
        slept >= 30_000,
        "it waited for the interval between pulls ({slept} ms)"
    );
    assert_eq!(h.probes.load(Ordering::SeqCst), 0, "no probe while online");
}

#[test]
fn an_offline_client_probes_and_flushes_when_the_server_answers() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    net.set_offline(true);
    block_on(engine.create("tasks", Some("task-1"), f(json!({"status": "open"})))).unwrap();
    let h = host(&w);
    h.reachable.store(false, Ordering::SeqCst);
    run_for(&engine, &h, 5, 1_000);
    assert_eq!(block_on(engine.status()).phase, Phase::Offline);
    assert_eq!(block_on(engine.outbox()).len(), 1, "kept while offline");
    assert!(h.probes.load(Ordering::SeqCst) >= 1, "it probed");
    net.set_offline(false);
    h.reachable.store(true, Ordering::SeqCst);
    run_for(&engine, &h, 5, 1_000);
    assert!(block_on(engine.outbox()).is_empty());
    assert_eq!(w.applied_ops().len(), 1);
    assert_eq!(block_on(engine.status()).phase, Phase::Idle);
}

// ---- the live channel: the scheduler with a scripted channel, in real time

use std::time::{Duration, Instant};
use tidesync::client::live::{ChannelEnd, PokeChannel, PokeSink};

/// Sleeps in real time (and moves the simulated clock the engine reads).
struct RealHost {
    env: SimEnv,
}

impl SchedulerHost for RealHost {
    fn sleep(&self, ms: u64) -> HostFuture<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.env.advance(ms);
        })
    }
    fn probe(&self) -> HostFuture<'_, bool> {
        Box::pin(futures::future::ready(true))
    }
}

/// A channel whose stream is what the test sends on `bytes`; while `up` is
/// false every connection is refused (503).
struct Scripted {
    up: AtomicBool,
    connects: AtomicU64,
    bytes: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>>,
}

impl PokeChannel for Scripted {
    fn listen<'a>(&'a self, sink: &'a PokeSink) -> HostFuture<'a, ChannelEnd> {
        Box::pin(async move {
            self.connects.fetch_add(1, Ordering::SeqCst);
            if !self.up.load(Ordering::SeqCst) {
                return ChannelEnd::Refused {
                    status: 503,
                    retry_after_ms: None,
                };
            }
            let mut rx = self.bytes.lock().await;
            while let Some(b) = rx.recv().await {
                if !sink.feed(&b) {
                    break;
                }
            }
            ChannelEnd::Closed
        })
    }
}

fn scripted(up: bool) -> (Scripted, tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let c = Scripted {
        up: AtomicBool::new(up),
        connects: AtomicU64::new(0),
        bytes: tokio::sync::Mutex::new(rx),
    };
    (c, tx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Waits (real time, at most `max`) until room 2 has `status` locally.
async fn seen<S: Store>(engine: &Engine<S, Net, SimEnv>, status: &str, max: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = engine.get("rooms", "room-2").await.unwrap();
        if got.is_some_and(|e| e.fields["status"] == status) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < max,
            "the change was not pulled within {max:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_poke_pulls_at_once_long_before_the_poll_interval() {
    let w = World::new();
    let engine = w.open(MemoryStore::new(), w.net("t1"), "t1");
    let host = RealHost { env: w.env.clone() };
    let (channel, bytes) = scripted(true);
    let (wake, rx) = mpsc::unbounded();
    let done = AtomicBool::new(false);
    runtime().block_on(async {
        let sched = scheduler::run_live(&engine, &host, Some(&channel), rx, 60_000, || {
            !done.load(Ordering::SeqCst)
        });
        let test = async {
            bytes
                .send(b"event: ready\ndata: {\"cursor\":0,\"heartbeat_ms\":15000}\n\n".to_vec())
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (n, status) in ["clean", "dirty", "inspected"].into_iter().enumerate() {
                w.admin(room(2), f(json!({ "status": status })));
                // Any cursor ahead of the client's asks for a pull.
                let cursor = 1_000 + n as u64;
                bytes
                    .send(format!("event: poke\ndata: {{\"cursor\":{cursor}}}\n\n").into_bytes())
                    .unwrap();
                // The poll interval is 60 s: only the poke can bring it.
                let took = seen(&engine, status, Duration::from_secs(1)).await;
                assert!(took < Duration::from_secs(1), "{took:?}");
            }
            done.store(true, Ordering::SeqCst);
            drop(wake);
        };
        futures::future::join(sched, test).await;
    });
    assert_eq!(channel.connects.load(Ordering::SeqCst), 1, "one connection");
}

#[test]
fn with_the_channel_down_it_polls_at_the_interval_and_reconnects_with_backoff() {
    let w = World::new();
    let engine = w.open(MemoryStore::new(), w.net("t1"), "t1");
    let host = RealHost { env: w.env.clone() };
    let (channel, _bytes) = scripted(false);
    let (wake, rx) = mpsc::unbounded();
    let done = AtomicBool::new(false);
    runtime().block_on(async {
        let sched = scheduler::run_live(&engine, &host, Some(&channel), rx, 300, || {
            !done.load(Ordering::SeqCst)
        });
        let test = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            w.admin(room(2), f(json!({"status": "clean"})));
            seen(&engine, "clean", Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(2_400)).await;
            done.store(true, Ordering::SeqCst);
            drop(wake);
        };
        futures::future::join(sched, test).await;
    });
    // Over about 2.5 s the waits were at least 0.5, 1 and 2 s: no tight loop.
    let connects = channel.connects.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&connects),
        "{connects} connection attempts in 2.5 s"
    );
}
