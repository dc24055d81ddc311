//! The browser's host for the core's sync scheduler
//! ([`crate::client::scheduler`]): `setTimeout` and `fetch('/health')`.

use super::transport::FetchTransport;
use crate::client::scheduler::{HostFuture, SchedulerHost};

/// Timer and probe of the browser.
#[derive(Debug, Clone)]
pub(crate) struct BrowserHost {
    pub transport: FetchTransport,
}

impl SchedulerHost for BrowserHost {
    fn sleep(&self, ms: u64) -> HostFuture<'_, ()> {
        let ms = u32::try_from(ms).unwrap_or(u32::MAX);
        Box::pin(gloo_timers::future::TimeoutFuture::new(ms))
    }

    fn probe(&self) -> HostFuture<'_, bool> {
        Box::pin(self.transport.probe())
    }
}
