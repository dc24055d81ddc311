//! When a client syncs, written once for every host: after local writes (a
//! wake), when a retry falls due, when the network comes back, and every
//! `pull_interval_ms`. While offline, a cheap probe decides when to try
//! again. The host supplies only a timer and the probe ([`SchedulerHost`]):
//! the browser with `setTimeout` and `fetch('/health')`, the Node addon with
//! its runtime's timer.
//!
//! With a live channel ([`super::live`], [`run_live`]) a poke of the server
//! pulls at once; while the channel is up the periodic pull is only a safety
//! net ([`LIVE_POLL_FACTOR`] times the interval), and when it goes down the
//! interval applies again. The decisions are [`Plan`]'s, kept apart from the
//! I/O so that they can be tested on their own.

use super::live::{self, PokeChannel, PokeSink, Signal};
use crate::engine::Engine;
use crate::env::Environment;
use crate::status::Phase;
use crate::store::Store;
use crate::transport::Transport;
use futures::channel::mpsc::UnboundedReceiver;
use futures::future::Either;
use futures::StreamExt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future of a host: `Send` on native targets, not on wasm.
#[cfg(not(target_family = "wasm"))]
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future of a host: `Send` on native targets, not on wasm.
#[cfg(target_family = "wasm")]
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What the scheduler needs from its host.
pub trait SchedulerHost {
    /// Completes after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> HostFuture<'_, ()>;
    /// Whether the server answers at all (`GET /health`), used while offline.
    fn probe(&self) -> HostFuture<'_, bool>;
}

/// The shortest wait between two rounds (ms), so a burst of wake-ups and
/// due retries cannot spin.
pub const MIN_WAIT_MS: u64 = 20;

/// The periodic pull of both bindings when the app gives none
/// (`pullIntervalMs`), in ms, and the shortest one they accept.
pub const DEFAULT_PULL_INTERVAL_MS: u32 = 30_000;
/// See [`DEFAULT_PULL_INTERVAL_MS`].
pub const MIN_PULL_INTERVAL_MS: u32 = 100;

/// The pull interval an app asked for (`None`: the default), as both
/// bindings apply it.
pub fn pull_interval_ms(asked: Option<u32>) -> u32 {
    asked
        .unwrap_or(DEFAULT_PULL_INTERVAL_MS)
        .max(MIN_PULL_INTERVAL_MS)
}

/// While the live channel is up, the periodic pull runs this many times
/// less often (a safety net for a missed poke).
pub const LIVE_POLL_FACTOR: u64 = 10;

/// What the scheduler does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Push, pull, push (a local write, the interval, the start).
    SyncNow,
    /// Pull only (a poke: the server's log moved).
    Pull,
    /// Push what is due (a retry fell due).
    Push,
    /// Nothing now.
    Wait,
}

/// The scheduler's decisions, free of I/O: when to sync, pull and wait.
#[derive(Debug, Clone)]
pub struct Plan {
    interval: u64,
    next_pull: u64,
    woken: bool,
    poked: bool,
    live: bool,
    /// When the last full sync ended: the periodic pull counts from it.
    last_sync: u64,
}

impl Plan {
    /// A plan that syncs at once, then every `interval` ms.
    pub fn new(interval: u64) -> Self {
        Plan {
            interval: interval.max(MIN_WAIT_MS),
            next_pull: 0,
            woken: true,
            poked: false,
            live: false,
            last_sync: 0,
        }
    }

    /// A local write (or the network came back): sync now.
    pub fn wake(&mut self) {
        self.woken = true;
    }

    /// Whether the live channel is up.
    pub fn live(&self) -> bool {
        self.live
    }

    /// The time between periodic pulls now.
    pub fn poll_interval(&self) -> u64 {
        if self.live {
            self.interval.saturating_mul(LIVE_POLL_FACTOR)
        } else {
            self.interval
        }
    }

    /// A signal of the channel, at `now`, with the engine's pull cursor
    /// (`None` before the first snapshot). A poke or an open channel whose
    /// cursor is ahead of `local` asks for a pull now; a closed channel
    /// brings the periodic pull back to the interval.
    pub fn signal(&mut self, signal: Signal, local: Option<u64>, now: u64) {
        let behind = |cursor: u64| local.is_none_or(|l| cursor > l);
        match signal {
            Signal::Up { cursor } => {
                self.live = true;
                // Pokes may have been missed while it was down.
                self.poked |= behind(cursor);
                // Counted from the last full sync, not from now: a stream
                // that reconnects (it ends every --events-max-age) must not
                // push the safety poll out for ever.
                self.next_pull = self.next_pull.max(self.last_sync + self.poll_interval());
            }
            Signal::Poke { cursor } => self.poked |= behind(cursor),
            Signal::Down => {
                self.live = false;
                self.next_pull = self.next_pull.min(now + self.interval);
            }
        }
    }

    /// What to do at `now`; `retry_due` says a queued mutation's retry has
    /// fallen due.
    pub fn action(&self, now: u64, retry_due: bool) -> Action {
        if self.woken || now >= self.next_pull {
            Action::SyncNow
        } else if self.poked {
            Action::Pull
        } else if retry_due {
            Action::Push
        } else {
            Action::Wait
        }
    }

    /// `action` was done; it ended at `now`.
    pub fn done(&mut self, action: Action, now: u64) {
        match action {
            Action::SyncNow => {
                self.woken = false;
                self.poked = false;
                self.last_sync = now;
                self.next_pull = now + self.poll_interval();
            }
            Action::Pull => self.poked = false,
            Action::Push | Action::Wait => {}
        }
    }

    /// Offline and the probe failed at `now`: try again after the interval.
    pub fn probe_failed(&mut self, now: u64) {
        self.next_pull = now + self.interval;
        self.woken = false;
    }

    /// How long to wait from `now`, given the engine's next retry.
    pub fn wait(&self, now: u64, next_retry: Option<u64>) -> u64 {
        if self.woken || self.poked {
            return MIN_WAIT_MS;
        }
        let mut until = self.next_pull;
        if let Some(t) = next_retry {
            until = until.min(t);
        }
        until
            .saturating_sub(now)
            .clamp(MIN_WAIT_MS, self.poll_interval())
    }
}

/// Runs the sync loop of `engine` until `alive()` is false or every sender
/// of `wake` is dropped. Each message on `wake` asks for a round now (a
/// local write); a burst of them is one round.
pub async fn run<S, T, E, H>(
    engine: &Engine<S, T, E>,
    host: &H,
    wake: UnboundedReceiver<()>,
    pull_interval_ms: u64,
    alive: impl Fn() -> bool,
) where
    S: Store,
    T: Transport,
    E: Environment,
    H: SchedulerHost,
{
    run_live(
        engine,
        host,
        None::<&NoChannel>,
        wake,
        pull_interval_ms,
        alive,
    )
    .await;
}

/// No live channel: [`run`] polls only.
#[derive(Debug)]
pub struct NoChannel;

impl PokeChannel for NoChannel {
    fn listen<'a>(&'a self, _: &'a PokeSink) -> HostFuture<'a, live::ChannelEnd> {
        Box::pin(std::future::pending())
    }
}

/// As [`run`], with the live channel `channel` when there is one: its
/// pokes pull at once ([`Plan::signal`]); it is kept open, and reopened
/// with backoff, by [`live::supervise`].
pub async fn run_live<S, T, E, H, C>(
    engine: &Engine<S, T, E>,
    host: &H,
    channel: Option<&C>,
    wake: UnboundedReceiver<()>,
    pull_interval_ms: u64,
    alive: impl Fn() -> bool,
) where
    S: Store,
    T: Transport,
    E: Environment,
    H: SchedulerHost,
    C: PokeChannel,
{
    let (signal_tx, signals) = futures::channel::mpsc::unbounded();
    let (kick_tx, kick) = futures::channel::mpsc::unbounded();
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let rounds = rounds(
        engine,
        host,
        wake,
        signals,
        kick_tx,
        pull_interval_ms,
        || alive() && !stopped.load(std::sync::atomic::Ordering::SeqCst),
    );
    match channel {
        None => rounds.await,
        Some(c) => {
            let sup = live::supervise(c, host, engine.env(), signal_tx, kick, || {
                alive() && !stopped.load(std::sync::atomic::Ordering::SeqCst)
            });
            let rounds = std::pin::pin!(rounds);
            let sup = std::pin::pin!(sup);
            match futures::future::select(rounds, sup).await {
                Either::Left(((), _)) => {}
                Either::Right(((), rounds)) => rounds.await,
            }
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

async fn rounds<S, T, E, H>(
    engine: &Engine<S, T, E>,
    host: &H,
    mut wake: UnboundedReceiver<()>,
    mut signals: UnboundedReceiver<Signal>,
    kick: futures::channel::mpsc::UnboundedSender<()>,
    pull_interval_ms: u64,
    alive: impl Fn() -> bool,
) where
    S: Store,
    T: Transport,
    E: Environment,
    H: SchedulerHost,
{
    let mut plan = Plan::new(pull_interval_ms);
    let mut signals_open = true;
    let mut was_offline = false;
    while alive() {
        let now = engine.env().now_ms();
        let first = plan.action(now, false);
        let mut offline = engine.status().await.phase == Phase::Offline;
        if offline && first != Action::Wait {
            if host.probe().await {
                engine.set_online(true).await;
                offline = false;
            } else {
                plan.probe_failed(now);
            }
        }
        if was_offline && !offline {
            // Back online (the probe, or the host's online event): reopen
            // the channel now rather than after its backoff.
            let _ = kick.unbounded_send(());
        }
        was_offline = offline;
        let due = engine.next_wakeup().await;
        let action = plan.action(now, due.is_some_and(|t| t <= now));
        match action {
            Action::SyncNow => {
                let _ = engine.sync_now().await;
            }
            Action::Pull => {
                let _ = engine.pull().await;
            }
            Action::Push => {
                let _ = engine.push().await;
            }
            Action::Wait => {}
        }
        plan.done(action, engine.env().now_ms());
        if !alive() {
            break;
        }
        let now = engine.env().now_ms();
        let wait = plan.wait(now, engine.next_wakeup().await);
        let next_signal = if signals_open {
            Either::Left(signals.next())
        } else {
            Either::Right(std::future::pending())
        };
        match futures::future::select(
            wake.next(),
            futures::future::select(next_signal, host.sleep(wait)),
        )
        .await
        {
            Either::Left((Some(()), _)) => {
                // Coalesce a burst of writes into one round.
                while wake.try_recv().is_ok() {}
                plan.wake();
            }
            Either::Left((None, _)) => break,
            Either::Right((Either::Left((Some(signal), _)), _)) => {
                let local = engine.meta().await.cursor.map(|c| c.0);
                let now = engine.env().now_ms();
                plan.signal(signal, local, now);
                while let Ok(s) = signals.try_recv() {
                    plan.signal(s, local, now);
                }
                if let Signal::Up { .. } = signal {
                    if engine.status().await.phase == Phase::Offline {
                        // The server answered: no need to probe it.
                        engine.set_online(true).await;
                    }
                }
            }
            Either::Right((Either::Left((None, _)), _)) => signals_open = false,
            Either::Right((Either::Right(((), _)), _)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poke_ahead_of_the_cursor_pulls_now_and_one_behind_does_not() {
        let mut p = Plan::new(30_000);
        p.done(p.action(0, false), 0);
        assert_eq!(p.action(1_000, false), Action::Wait);
        p.signal(Signal::Up { cursor: 5 }, Some(5), 1_000);
        assert_eq!(p.action(1_000, false), Action::Wait, "up to date");
        p.signal(Signal::Poke { cursor: 5 }, Some(5), 2_000);
        assert_eq!(p.action(2_000, false), Action::Wait, "our own change");
        p.signal(Signal::Poke { cursor: 6 }, Some(5), 2_000);
        assert_eq!(p.action(2_000, false), Action::Pull);
        assert_eq!(p.wait(2_000, None), MIN_WAIT_MS);
        p.done(Action::Pull, 2_010);
        assert_eq!(p.action(2_010, false), Action::Wait);
        p.signal(Signal::Poke { cursor: 1 }, None, 2_100);
        assert_eq!(p.action(2_100, false), Action::Pull, "no cursor yet");
    }

    #[test]
    fn an_open_channel_stretches_the_poll_and_a_closed_one_restores_it() {
        let mut p = Plan::new(30_000);
        p.done(p.action(0, false), 0);
        assert_eq!(p.wait(0, None), 30_000);
        p.signal(Signal::Up { cursor: 9 }, Some(3), 0);
        assert!(p.live());
        assert_eq!(p.action(0, false), Action::Pull, "missed while down");
        p.done(Action::Pull, 0);
        assert_eq!(p.poll_interval(), 300_000);
        assert_eq!(p.action(30_000, false), Action::Wait, "no poll while live");
        assert_eq!(p.action(300_000, false), Action::SyncNow, "safety poll");
        p.done(Action::SyncNow, 300_000);
        p.signal(Signal::Down, Some(9), 310_000);
        assert!(!p.live());
        assert_eq!(p.wait(310_000, None), 30_000, "the interval again");
        assert_eq!(p.action(340_000, false), Action::SyncNow);
    }

    /// The server ends each stream after `--events-max-age` and the client
    /// reconnects: the safety poll still falls due, 10 intervals after the
    /// last full sync.
    #[test]
    fn a_channel_that_reconnects_does_not_put_the_safety_poll_off() {
        let mut p = Plan::new(30_000);
        p.done(p.action(0, false), 0);
        p.signal(Signal::Up { cursor: 0 }, Some(0), 0);
        let mut t = 0;
        while t < 300_000 {
            assert_eq!(p.action(t, false), Action::Wait, "at {t}");
            t += 100_000;
            p.signal(Signal::Down, Some(0), t);
            p.signal(Signal::Up { cursor: 0 }, Some(0), t + 1_000);
        }
        assert_eq!(p.action(300_000, false), Action::SyncNow);
    }

    #[test]
    fn a_wake_and_a_due_retry_still_win() {
        let mut p = Plan::new(30_000);
        p.done(p.action(0, false), 0);
        p.signal(Signal::Up { cursor: 0 }, Some(0), 0);
        assert_eq!(p.action(10, true), Action::Push);
        assert_eq!(p.wait(10, Some(500)), 490);
        p.wake();
        assert_eq!(p.action(20, false), Action::SyncNow);
    }
}
