//! The leader's background sync: after local writes, when a retry is due,
//! when the network comes back, and every `pull_interval_ms`.

use super::commands::WebEngine;
use super::env::BrowserEnv;
use super::transport::FetchTransport;
use crate::status::Phase;
use crate::Environment;
use futures::channel::mpsc;
use futures::future::Either;
use futures::StreamExt;
use std::rc::Rc;

/// Runs until `alive` says no or the wake channel closes.
pub(crate) async fn run(
    engine: Rc<WebEngine>,
    transport: FetchTransport,
    mut wake: mpsc::UnboundedReceiver<()>,
    pull_interval_ms: u32,
    alive: impl Fn() -> bool,
) {
    let env = BrowserEnv;
    let mut next_pull = 0u64;
    let mut woken = true;
    while alive() {
        let now = env.now_ms();
        // Offline: a cheap health probe decides when to try again.
        if engine.status().await.phase == Phase::Offline && (woken || now >= next_pull) {
            if transport.probe().await {
                engine.set_online(true).await;
            } else {
                next_pull = now + u64::from(pull_interval_ms);
                woken = false;
            }
        }
        let due = engine.next_wakeup().await;
        if woken || now >= next_pull {
            let _ = engine.sync_now().await;
            next_pull = env.now_ms() + u64::from(pull_interval_ms);
        } else if due.is_some_and(|t| t <= now) {
            let _ = engine.push().await;
        }
        let now = env.now_ms();
        let mut until = next_pull;
        if let Some(t) = engine.next_wakeup().await {
            until = until.min(t);
        }
        let wait = until
            .saturating_sub(now)
            .clamp(20, u64::from(pull_interval_ms)) as u32;
        let timer = gloo_timers::future::TimeoutFuture::new(wait);
        woken = match futures::future::select(wake.next(), timer).await {
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
