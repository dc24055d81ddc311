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
