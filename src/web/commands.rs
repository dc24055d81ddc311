//! The commands a page can send to the engine, as they travel between tabs
//! (JSON on the BroadcastChannel), and the one function that runs them.

use super::env::BrowserEnv;
use super::store::{IdbStore, OpenError};
use super::transport::FetchTransport;
use crate::engine::{Engine, EngineError, Resolution};
use crate::error_code::ErrorCode;
use crate::protocol::{EntityKey, Fields};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The engine as the browser runs it.
pub(crate) type WebEngine = Engine<IdbStore, FetchTransport, BrowserEnv>;

/// An error on its way to JS: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadArgument, message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::new(e.code(), e.message())
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// One engine call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Command {
    Create {
        collection: String,
        id: Option<String>,
        fields: Fields,
    },
    Patch {
        collection: String,
        id: String,
        patch: Fields,
    },
    Delete {
        collection: String,
        id: String,
    },
    Append {
        collection: String,
        id: Option<String>,
        fields: Fields,
    },
    Get {
        collection: String,
        id: String,
    },
    Query {
        collection: String,
    },
    Status,
    Metrics,
    SyncNow,
    Reconcile {
        collections: Option<Vec<String>>,
    },
    Outbox,
    DeadLetters,
    Retry {
        seq: u64,
    },
    Discard {
        seq: u64,
    },
    Conflicts,
    Resolve {
        collection: String,
        id: String,
        resolution: Resolution,
    },
}

impl Command {
    /// Changes local state: the sync loop should look at the outbox.
    pub fn wakes_sync(&self) -> bool {
        matches!(
            self,
            Command::Create { .. }
                | Command::Patch { .. }
                | Command::Delete { .. }
                | Command::Append { .. }
                | Command::Retry { .. }
                | Command::Resolve { .. }
        )
    }
}

fn to_value<T: Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// Runs one command on the engine of this tab.
pub(crate) async fn execute(engine: &WebEngine, command: Command) -> Result<Value, ApiError> {
    match command {
        Command::Create {
            collection,
            id,
            fields,
        } => to_value(engine.create(&collection, id.as_deref(), fields).await?),
        Command::Patch {
            collection,
            id,
            patch,
        } => to_value(engine.patch(&collection, &id, patch).await?),
        Command::Delete { collection, id } => to_value(engine.delete(&collection, &id).await?),
        Command::Append {
            collection,
            id,
            fields,
        } => to_value(engine.append(&collection, id.as_deref(), fields).await?),
        Command::Get { collection, id } => to_value(engine.get(&collection, &id).await?),
        Command::Query { collection } => to_value(engine.query(&collection).await?),
        Command::Status => to_value(engine.status().await),
        Command::Metrics => to_value(engine.metrics().await),
        Command::SyncNow => to_value(engine.sync_now().await?),
        Command::Reconcile { collections } => to_value(engine.reconcile(collections).await?),
        Command::Outbox => to_value(engine.outbox().await),
        Command::DeadLetters => to_value(engine.dead_letters().await),
        Command::Retry { seq } => to_value(engine.retry(seq).await?),
        Command::Discard { seq } => to_value(engine.discard(seq).await?),
        Command::Conflicts => to_value(engine.conflicts().await),
        Command::Resolve {
            collection,
            id,
            resolution,
        } => to_value(
            engine
                .resolve(&EntityKey::new(collection, id), resolution)
                .await?,
        ),
    }
}
