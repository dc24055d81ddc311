//! When a client syncs, written once for every host: after local writes (a
//! wake), when a retry falls due, when the network comes back, and every
//! `pull_interval_ms`. While offline, a cheap probe decides when to try
//! again. The host supplies only a timer and the probe ([`SchedulerHost`]):
//! the browser with `setTimeout` and `fetch('/health')`, the Node addon with
//! its runtime's timer.

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

/// Runs the sync loop of `engine` until `alive()` is false or every sender
/// of `wake` is dropped. Each message on `wake` asks for a round now (a
/// local write); a burst of them is one round.
pub async fn run<S, T, E, H>(
    engine: &Engine<S, T, E>,
    host: &H,
    mut wake: UnboundedReceiver<()>,
    pull_interval_ms: u64,
    alive: impl Fn() -> bool,
) where
    S: Store,
    T: Transport,
    E: Environment,
    H: SchedulerHost,
{
    let interval = pull_interval_ms.max(MIN_WAIT_MS);
    let mut next_pull = 0u64;
    let mut woken = true;
    while alive() {
        let now = engine.env().now_ms();
        if engine.status().await.phase == Phase::Offline && (woken || now >= next_pull) {
            if host.probe().await {
                engine.set_online(true).await;
            } else {
                next_pull = now + interval;
                woken = false;
            }
        }
        let due = engine.next_wakeup().await;
        if woken || now >= next_pull {
            let _ = engine.sync_now().await;
            next_pull = engine.env().now_ms() + interval;
        } else if due.is_some_and(|t| t <= now) {
            let _ = engine.push().await;
        }
        if !alive() {
            break;
        }
        let now = engine.env().now_ms();
        let mut until = next_pull;
        if let Some(t) = engine.next_wakeup().await {
            until = until.min(t);
        }
        let wait = until.saturating_sub(now).clamp(MIN_WAIT_MS, interval);
        woken = match futures::future::select(wake.next(), host.sleep(wait)).await {
            Either::Left((Some(()), _)) => {
                // Coalesce a burst of writes into one round.
                while wake.try_recv().is_ok() {}
                true
            }
            Either::Left((None, _)) => break,
            Either::Right(_) => false,
        };
    }
}
