//! A [`Transport`] that hands requests to a [`SyncService`] in the same
//! process: for examples, benchmarks and tests of the core against the real
//! server logic without HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use tidesync::{
    ChangesPage, ChangesRequest, KeyIdentity, PushRequest, PushResponse, ReconcileRequest,
    ReconcileResponse, SnapshotPage, SnapshotRequest, Transport, TransportError,
};

use crate::context::TerminalContext;
use crate::error::ServiceError;
use crate::service::SyncService;
use crate::storage::ServerStore;

/// The transport error a client would see for a service error over HTTP.
impl From<ServiceError> for TransportError {
    fn from(e: ServiceError) -> Self {
        match e.http_status() {
            401 | 403 => TransportError::Unauthorized {
                code: e.code,
                message: e.message,
            },
            429 => TransportError::RateLimited {
                retry_after_ms: 1000,
            },
            s if s >= 500 => TransportError::Server {
                status: s,
                message: e.message,
            },
            _ => TransportError::Refused {
                code: e.code,
                message: e.message,
            },
        }
    }
}

/// Calls a service in this process as one terminal.
#[derive(Debug)]
pub struct InProcessTransport<S> {
    service: Arc<SyncService<S>>,
    ctx: TerminalContext,
}

impl<S> InProcessTransport<S> {
    /// `ctx` is what the terminal's credential would grant.
    pub fn new(service: Arc<SyncService<S>>, ctx: TerminalContext) -> Self {
        InProcessTransport { service, ctx }
    }
}

#[async_trait]
impl<S: ServerStore + 'static> Transport for InProcessTransport<S> {
    async fn push(&self, request: PushRequest) -> Result<PushResponse, TransportError> {
        Ok(self.service.push(&self.ctx, request)?)
    }
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage, TransportError> {
        Ok(self.service.changes(&self.ctx, request)?)
    }
    async fn snapshot(&self, request: SnapshotRequest) -> Result<SnapshotPage, TransportError> {
        Ok(self.service.snapshot(&self.ctx, request)?)
    }
    async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, TransportError> {
        Ok(self.service.reconcile(&self.ctx, request)?)
    }
    /// The context it was made with. There is no key: `key_id` is empty
    /// and there is no expiry.
    async fn whoami(&self) -> Result<KeyIdentity, TransportError> {
        Ok(KeyIdentity {
            tenant: self.ctx.tenant.clone(),
            branch: self.ctx.branch.clone(),
            terminal: self.ctx.terminal.clone(),
            key_id: String::new(),
            expires_at_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Backend;

    #[test]
    fn whoami_answers_the_context_it_was_made_with() {
        let service = Arc::new(SyncService::new(Backend::memory()));
        let t = InProcessTransport::new(service, TerminalContext::new("acme", "b1", "t1"));
        let id = futures::executor::block_on(t.whoami()).unwrap();
        assert_eq!(
            id,
            KeyIdentity {
                tenant: "acme".into(),
                branch: "b1".into(),
                terminal: "t1".into(),
                key_id: String::new(),
                expires_at_ms: None,
            }
        );
    }
}
