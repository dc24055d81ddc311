//! The host-neutral client layer: the commands a binding sends to the
//! engine (the browser package, the Node addon), the one function that runs
//! them, and the error every binding reports. A binding translates its
//! arguments into a [`Command`] and a [`ClientError`] into its own error
//! type; the sync scheduler is in [`scheduler`].

pub mod live;
pub mod live_query;
pub mod pairing;
pub mod scheduler;

pub use pairing::{settle, settle_with, Asked, Server, Settled};

use crate::engine::{Engine, EngineError, Resolution};
use crate::env::Environment;
use crate::error_code::ErrorCode;
use crate::protocol::{EntityKey, Fields};
use crate::scoring::WriteOptions;
use crate::store::{Store, StoreError};
use crate::transport::Transport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Entities a query returns when it names no `limit`.
pub const DEFAULT_PAGE: usize = 1000;
/// The largest `limit` of one query: no call returns a whole large
/// collection at once.
pub const MAX_PAGE: usize = 10_000;

/// An error on its way to a host: a stable code and a message (never
/// payload data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ClientError {
    /// The stable code.
    pub code: ErrorCode,
    /// Detail for people.
    pub message: String,
}

impl ClientError {
    /// An error with a code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
        }
    }

    /// `BAD_ARGUMENT`: an argument of the call is malformed.
    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadArgument, message)
    }

    /// `INTERNAL`.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

/// What every binding's `open` sets the engine up with, checked here once
/// (the bindings only translate their options into it).
#[derive(Debug, Default)]
pub struct EngineSettings {
    /// This terminal.
    pub terminal_id: String,
    /// Its branch.
    pub branch_id: String,
    /// Conflict policy per collection.
    pub policies: std::collections::BTreeMap<String, crate::policy::ConflictPolicy>,
    /// Attempts before a mutation becomes a dead letter (the core's default when absent).
    pub max_attempts: Option<u32>,
    /// The app's payload schema version (default 1).
    pub schema_version: Option<u32>,
    /// Steps that carry queued mutations forward to `schema_version`.
    pub migrations: Vec<crate::migrate::FieldMigration>,
    /// The server's rules file, checked before a write is queued.
    pub rules: crate::rules::Rules,
    /// Backoff between delivery attempts (the core's defaults where absent).
    pub retry: RetryOptions,
    /// A cap on upload bytes per second (none when absent).
    pub max_upload_bytes_per_sec: Option<u64>,
    /// What a collection does with a write its scorer flags.
    pub review: std::collections::BTreeMap<String, crate::scoring::ReviewPolicy>,
}

/// The `retry` open option: the backoff between delivery attempts, in ms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryOptions {
    /// Backoff before the first retry (upper bound of its jitter).
    pub base_ms: Option<u64>,
    /// Largest backoff.
    pub cap_ms: Option<u64>,
    /// How often to probe a server that cannot be reached.
    pub offline_probe_ms: Option<u64>,
}

impl EngineSettings {
    /// The engine's configuration for a client `client_id`, and the
    /// migrations to open it with. `BAD_ARGUMENT` names the option: a
    /// version or attempt cap of 0, a migration step the engine cannot run
    /// ([`FieldMigration::check_all`](crate::migrate::FieldMigration::check_all)).
    pub fn into_config(
        self,
        client_id: String,
    ) -> Result<
        (
            crate::engine::EngineConfig,
            Vec<crate::migrate::FieldMigration>,
        ),
        ClientError,
    > {
        let version = self.schema_version.unwrap_or(1);
        if version == 0 {
            return Err(ClientError::bad_argument(
                "options.schemaVersion must be at least 1",
            ));
        }
        crate::migrate::FieldMigration::check_all(&self.migrations, version)
            .map_err(|e| ClientError::bad_argument(format!("options.{e}")))?;
        let mut config =
            crate::engine::EngineConfig::new(client_id, self.terminal_id, self.branch_id);
        // An append-only collection in the rules takes no other policy (a
        // file that leaves `access` out says nothing: the server's flags may
        // still make it append-only).
        for (collection, rules) in &self.rules {
            let append_only = rules.access == crate::rules::CollectionAccess::AppendOnly;
            let policy = self.policies.get(collection);
            if append_only
                && policy.is_some_and(|p| *p != crate::policy::ConflictPolicy::AppendOnly)
            {
                return Err(ClientError::bad_argument(format!(
                    "options.policies.{collection}: the rules make {collection} \
                     append-only, so its policy is append-only"
                )));
            }
        }
        let retry = &mut config.retry;
        for (name, given, field) in [
            ("baseMs", self.retry.base_ms, &mut retry.base_ms),
            ("capMs", self.retry.cap_ms, &mut retry.cap_ms),
            (
                "offlineProbeMs",
                self.retry.offline_probe_ms,
                &mut retry.offline_probe_ms,
            ),
        ] {
            match given {
                Some(0) => {
                    return Err(ClientError::bad_argument(format!(
                        "options.retry.{name} must be at least 1"
                    )))
                }
                Some(ms) => *field = ms,
                None => {}
            }
        }
        if retry.cap_ms < retry.base_ms {
            return Err(ClientError::bad_argument(format!(
                "options.retry.capMs ({}) is below baseMs ({})",
                retry.cap_ms, retry.base_ms
            )));
        }
        if self.max_upload_bytes_per_sec == Some(0) {
            return Err(ClientError::bad_argument(
                "options.maxUploadBytesPerSec must be at least 1 (leave it out for no cap)",
            ));
        }
        config.throttle.max_bytes_per_sec = self.max_upload_bytes_per_sec;
        config.policies = self.policies;
        config.rules = self.rules;
        config.review = self.review;
        config.schema_version = version;
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err(ClientError::bad_argument(
                    "options.maxAttempts must be at least 1",
                ));
            }
            config.retry.max_attempts = n;
        }
        Ok((config, self.migrations))
    }
}

impl From<EngineError> for ClientError {
    fn from(e: EngineError) -> Self {
        ClientError::new(e.code(), e.message())
    }
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        ClientError::new(e.code(), e.to_string())
    }
}

/// One engine call, as data: it can cross a tab channel or an IPC pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Command {
    Create {
        collection: String,
        id: Option<String>,
        fields: Fields,
        #[serde(default)]
        options: WriteOptions,
    },
    Patch {
        collection: String,
        id: String,
        patch: Fields,
        #[serde(default)]
        options: WriteOptions,
    },
    Delete {
        collection: String,
        id: String,
        #[serde(default)]
        options: WriteOptions,
    },
    Append {
        collection: String,
        id: Option<String>,
        fields: Fields,
        #[serde(default)]
        options: WriteOptions,
    },
    Get {
        collection: String,
        id: String,
    },
    /// A page of a collection (see [`DEFAULT_PAGE`], [`MAX_PAGE`]).
    Query {
        collection: String,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The same page with where the next starts (`{entities, next}`): what
    /// a live query reads ([`live_query`]).
    Page {
        collection: String,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
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
    /// Edit-and-retry: a new op id with `payload` (none for a delete).
    RetryEdited {
        seq: u64,
        payload: Option<Fields>,
    },
    RetryAll,
    DiscardAll,
    /// Mutations held for review.
    Held,
    /// Sends a held mutation.
    Release {
        seq: u64,
    },
    /// Local audit entries after `after`, at most `limit`.
    Audit {
        #[serde(default)]
        after: u64,
        #[serde(default)]
        limit: Option<usize>,
    },
    Conflicts,
    Resolve {
        collection: String,
        id: String,
        resolution: Resolution,
    },
}

impl Command {
    /// Changes local state: the scheduler should look at the outbox.
    pub fn wakes_sync(&self) -> bool {
        matches!(
            self,
            Command::Create { .. }
                | Command::Patch { .. }
                | Command::Delete { .. }
                | Command::Append { .. }
                | Command::Retry { .. }
                | Command::RetryEdited { .. }
                | Command::RetryAll
                | Command::Release { .. }
                | Command::Resolve { .. }
        )
    }
}

fn to_value<T: Serialize>(v: T) -> Result<Value, ClientError> {
    serde_json::to_value(v).map_err(ClientError::internal)
}

/// Runs one command on an engine; the answer is JSON.
pub async fn execute<S: Store, T: Transport, E: Environment>(
    engine: &Engine<S, T, E>,
    command: Command,
) -> Result<Value, ClientError> {
    match command {
        Command::Create {
            collection,
            id,
            fields,
            options,
        } => to_value(
            engine
                .create_with(&collection, id.as_deref(), fields, &options)
                .await?,
        ),
        Command::Patch {
            collection,
            id,
            patch,
            options,
        } => to_value(engine.patch_with(&collection, &id, patch, &options).await?),
        Command::Delete {
            collection,
            id,
            options,
        } => to_value(engine.delete_with(&collection, &id, &options).await?),
        Command::Append {
            collection,
            id,
            fields,
            options,
        } => to_value(
            engine
                .append_with(&collection, id.as_deref(), fields, &options)
                .await?,
        ),
        Command::Get { collection, id } => to_value(engine.get(&collection, &id).await?),
        Command::Query {
            collection,
            after,
            limit,
        } => {
            let page = engine
                .query_page(&collection, after.as_deref(), page_limit(limit)?)
                .await?;
            to_value(page.entities)
        }
        Command::Page {
            collection,
            after,
            limit,
        } => {
            let limit = page_limit(limit)?;
            to_value(
                engine
                    .query_page(&collection, after.as_deref(), limit)
                    .await?,
            )
        }
        Command::Status => to_value(engine.status().await),
        Command::Metrics => to_value(engine.metrics().await),
        Command::SyncNow => to_value(engine.sync_now().await?),
        Command::Reconcile { collections } => to_value(engine.reconcile(collections).await?),
        Command::Outbox => to_value(engine.outbox().await),
        Command::DeadLetters => to_value(engine.dead_letters().await),
        Command::Retry { seq } => to_value(engine.retry(seq).await?),
        Command::Discard { seq } => to_value(engine.discard(seq).await?),
        Command::RetryEdited { seq, payload } => to_value(engine.retry_edited(seq, payload).await?),
        Command::RetryAll => to_value(engine.retry_all().await?),
        Command::DiscardAll => to_value(engine.discard_all().await?),
        Command::Held => to_value(engine.held().await),
        Command::Release { seq } => to_value(engine.release(seq).await?),
        Command::Audit { after, limit } => {
            let limit = limit.unwrap_or(DEFAULT_PAGE);
            if limit == 0 || limit > MAX_PAGE {
                return Err(ClientError::bad_argument(format!(
                    "limit: between 1 and {MAX_PAGE}, not {limit}"
                )));
            }
            to_value(engine.audit(after, limit).await?)
        }
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

/// A page query's `limit`: [`DEFAULT_PAGE`] when absent, else 1 to
/// [`MAX_PAGE`] (`BAD_ARGUMENT`).
pub fn page_limit(limit: Option<usize>) -> Result<usize, ClientError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ClientError::bad_argument(format!(
            "limit: between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ConflictPolicy;
    use crate::rules::parse_rules;

    fn settings(policy: Option<ConflictPolicy>, rules: &str) -> EngineSettings {
        EngineSettings {
            policies: policy
                .map(|p| ("sales".to_string(), p))
                .into_iter()
                .collect(),
            rules: parse_rules(rules).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn retry_and_bandwidth_options_reach_the_engine_and_bad_ones_are_named() {
        let given = EngineSettings {
            retry: RetryOptions {
                base_ms: Some(50),
                cap_ms: Some(2_000),
                offline_probe_ms: Some(1_000),
            },
            max_upload_bytes_per_sec: Some(64_000),
            ..Default::default()
        };
        let (config, _) = given.into_config("c".into()).unwrap();
        let r = &config.retry;
        assert_eq!(
            (r.base_ms, r.cap_ms, r.offline_probe_ms),
            (50, 2_000, 1_000)
        );
        assert_eq!(config.throttle.max_bytes_per_sec, Some(64_000));
        let (defaults, _) = EngineSettings::default().into_config("c".into()).unwrap();
        assert_eq!(defaults.retry, crate::retry::RetryPolicy::default());
        assert_eq!(defaults.throttle.max_bytes_per_sec, None);

        let bad = |retry: RetryOptions, cap: Option<u64>| {
            let s = EngineSettings {
                retry,
                max_upload_bytes_per_sec: cap,
                ..Default::default()
            };
            let e = s.into_config("c".into()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadArgument);
            e.message
        };
        let zero = RetryOptions {
            base_ms: Some(0),
            ..Default::default()
        };
        assert_eq!(bad(zero, None), "options.retry.baseMs must be at least 1");
        let below = RetryOptions {
            cap_ms: Some(100),
            ..Default::default()
        };
        assert!(bad(below, None).starts_with("options.retry.capMs (100) is below baseMs (500)"));
        assert!(bad(RetryOptions::default(), Some(0)).starts_with("options.maxUploadBytesPerSec"));
    }

    #[test]
    fn the_rules_reach_the_engine_and_policies_must_agree_with_their_access() {
        let append_only = r#"{"sales": {"access": "append_only"}}"#;
        let (config, _) = settings(None, append_only).into_config("c".into()).unwrap();
        assert_eq!(config.rules, parse_rules(append_only).unwrap());
        let ok = settings(Some(ConflictPolicy::AppendOnly), append_only);
        assert!(ok.into_config("c".into()).is_ok());

        let err = settings(Some(ConflictPolicy::LastWriteWins), append_only)
            .into_config("c".into())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArgument);
        assert!(
            err.message.starts_with("options.policies.sales:"),
            "{}",
            err.message
        );
        // A file that leaves the access out may stand beside the server's
        // --append-only flag: the app's append-only policy is kept.
        let (config, _) = settings(Some(ConflictPolicy::AppendOnly), r#"{"sales": {}}"#)
            .into_config("c".into())
            .unwrap();
        assert_eq!(config.policies["sales"], ConflictPolicy::AppendOnly);
        // Without rules for it, a collection's policy is the app's to choose.
        assert!(settings(Some(ConflictPolicy::AppendOnly), "{}")
            .into_config("c".into())
            .is_ok());
    }
}
