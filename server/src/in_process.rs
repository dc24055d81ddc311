//! A [`Transport`] that hands requests to a [`SyncService`] in the same
//! process: for examples, benchmarks and tests of the core against the real
//! server logic without HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use tidesync::{
    ChangesPage, ChangesRequest, PushRequest, PushResponse, ReconcileRequest, ReconcileResponse,
    SnapshotPage, SnapshotRequest, Transport, TransportError,
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
}
