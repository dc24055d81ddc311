//! `tidesync-server`: the reference sync server. `--help` lists every
//! option; each can also be set by the environment variable shown.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tidesync::{EntityKey, Fields, Hlc};
use tidesync_server::auth::{self, CredentialStore};
use tidesync_server::http::{self, AppState, HttpConfig};
use tidesync_server::{
    Backend, Partition, ServerPolicy, ServiceConfig, SqliteSync, SyncService, TerminalContext,
};

/// The tidesync reference sync server (PROTOCOL.md documents the HTTP API).
#[derive(Debug, Parser)]
#[command(name = "tidesync-server", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Option<Command>,
    /// (`serve` options, when no subcommand is given.)
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Args)]
struct DbArgs {
    /// Where data lives: a SQLite file path (created and migrated on start;
    /// `sqlite:` prefix optional), a `postgres://user:pass@host:port/db` URL,
    /// or `memory:` (not persistent).
    #[arg(
        long,
        env = "TIDESYNC_DATABASE",
        default_value = "./data/tidesync.db",
        global = true
    )]
    database: String,
    /// SQLite durability: `full` makes every acknowledged mutation survive a
    /// power loss; `normal` is faster and may lose the last commits on power
    /// loss (never on a process crash).
    #[arg(long, env = "TIDESYNC_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSync::Full, global = true)]
    sqlite_synchronous: SqliteSync,
}

// Parsed once at start: the size of the serve variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sync API (the default).
    Serve(ServeArgs),
    /// Create or migrate the database, then exit.
    Migrate,
    /// Issue an API key for one terminal; prints it once (only its hash is kept).
    IssueKey {
        /// Tenant the key is bound to.
        #[arg(long)]
        tenant: String,
        /// Branch the key is bound to.
        #[arg(long)]
        branch: String,
        /// Terminal the key is bound to.
        #[arg(long)]
        terminal: String,
        /// Validity, e.g. `90d`, `12h`, `30m` (default: until revoked).
        #[arg(long)]
        expires_in: Option<String>,
        /// Print only the key (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// Issue a one-time pairing code for one terminal; prints it once (only its hash is kept).
    ///
    /// `POST /v1/pair` redeems it, once, for a new API key of the terminal
    /// (a key without expiry): put the code, not a key, in a pairing link.
    IssuePairingCode {
        /// Tenant of the key the code is redeemed for.
        #[arg(long)]
        tenant: String,
        /// Branch of that key.
        #[arg(long)]
        branch: String,
        /// Terminal of that key.
        #[arg(long)]
        terminal: String,
        /// How long the code can be redeemed, e.g. `24h`, `30m`.
        #[arg(long, default_value = "24h")]
        expires_in: String,
        /// Print only the code (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// Revoke a key by its id (the hex part after `ts_`), or every key of a terminal.
    RevokeKey {
        /// The key id to revoke.
        #[arg(long, conflicts_with_all = ["tenant", "branch", "terminal"])]
        key_id: Option<String>,
        /// With --branch and --terminal: revoke all keys of that terminal.
        #[arg(long, requires_all = ["branch", "terminal"])]
        tenant: Option<String>,
        /// See --tenant.
        #[arg(long)]
        branch: Option<String>,
        /// See --tenant.
        #[arg(long)]
        terminal: Option<String>,
    },
    /// Print the OpenAPI 3.0 document of the HTTP API (docs/openapi.json).
    #[cfg(feature = "openapi")]
    Openapi,
    /// Print a branch's audit trail, oldest first, one JSON object per line:
    /// op id, terminal, entity key, version, cursor, HLC,
    /// `originated_offline`, `applied_at_ms` and the terminal's `anomaly`
    /// score when it sent one (never field values).
    Audit {
        /// Tenant of the branch.
        #[arg(long)]
        tenant: String,
        /// The branch.
        #[arg(long)]
        branch: String,
    },
    /// Load the demo data set (a hotel branch's rooms and a read-only catalog).
    SeedDemo {
        /// Tenant to load into.
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// Branch to load into.
        #[arg(long, default_value = "hotel-1")]
        branch: String,
    },
    /// Load `count` synthetic rooms (`<collection>/r0000001`, …), for
    /// benchmarks (bench/node): 10,000 per transaction.
    SeedSynthetic {
        /// Tenant to load into.
        #[arg(long)]
        tenant: String,
        /// Branch to load into.
        #[arg(long)]
        branch: String,
        /// Collection to fill.
        #[arg(long, default_value = "rooms")]
        collection: String,
        /// How many entities.
        #[arg(long)]
        count: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TIDESYNC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest request body in bytes (after decompression); larger is 413
    /// PAYLOAD_TOO_LARGE.
    #[arg(long, env = "TIDESYNC_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Most mutations in one push (more: 413 PAYLOAD_TOO_LARGE).
    #[arg(long, env = "TIDESYNC_MAX_BATCH", default_value_t = 500)]
    max_batch: usize,
    /// Largest changes page; larger limits are clamped.
    #[arg(long, env = "TIDESYNC_MAX_CHANGES_PAGE", default_value_t = 1000)]
    max_changes_page: u32,
    /// Largest snapshot page; larger limits are clamped.
    #[arg(long, env = "TIDESYNC_MAX_SNAPSHOT_PAGE", default_value_t = 1000)]
    max_snapshot_page: u32,
    /// Page size when a request gives no limit.
    #[arg(long, env = "TIDESYNC_DEFAULT_PAGE", default_value_t = 500)]
    default_page: u32,
    /// Most manifest entries in one reconcile (more: 413 MANIFEST_TOO_LARGE).
    #[arg(long, env = "TIDESYNC_MAX_MANIFEST", default_value_t = 10_000)]
    max_manifest: usize,
    /// Newest payload schema version accepted (from 1): raise it when an
    /// app release moves to a new schema (`open({ schemaVersion })`); a
    /// newer mutation is refused with SCHEMA_UNSUPPORTED.
    #[arg(long, env = "TIDESYNC_MAX_SCHEMA_VERSION", default_value_t = 1)]
    max_schema_version: u32,
    /// The replay window in days: ledger rows of ops applied and made
    /// before it are pruned (at start, then hourly), and an op made before
    /// it with no row is refused with OP_EXPIRED. 0: keep every row.
    #[arg(long, env = "TIDESYNC_REPLAY_WINDOW_DAYS", default_value_t = 30)]
    replay_window_days: u32,
    /// Requests per second per terminal, on average (token bucket refill);
    /// 0 disables rate limiting.
    #[arg(long, env = "TIDESYNC_RATE_LIMIT", default_value_t = 50.0)]
    rate_limit: f64,
    /// Burst size per terminal (token bucket capacity).
    #[arg(long, env = "TIDESYNC_RATE_BURST", default_value_t = 100.0)]
    rate_burst: f64,
    /// Storage calls running at once (blocking workers; also bounds the
    /// database connections).
    #[arg(long, env = "TIDESYNC_STORAGE_WORKERS", default_value_t = 16)]
    storage_workers: usize,
    /// Most connections open at once (keep it under the file descriptor
    /// limit); more are answered 503 and closed. 0: no cap.
    #[arg(long, env = "TIDESYNC_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a connection may stay silent (after it was accepted or its
    /// last response) before it is closed. 0: never.
    #[arg(long, env = "TIDESYNC_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds a request's headers may take once its first byte arrived;
    /// slower, the connection is closed. 0: no limit.
    #[arg(long, env = "TIDESYNC_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body may take to arrive; slower is 408. 0: no limit.
    #[arg(long, env = "TIDESYNC_BODY_TIMEOUT", default_value_t = 30)]
    body_timeout: u64,
    /// Failed authentications per second per client address, on average
    /// (token bucket refill); over it, /v1 requests from that address whose
    /// key is not known to be valid are 429 SYNC_RATE_LIMITED, without a
    /// database lookup. 0 disables.
    #[arg(long, env = "TIDESYNC_AUTH_FAILURE_RATE", default_value_t = 1.0)]
    auth_failure_rate: f64,
    /// Failed authentications in a burst per client address (bucket size).
    #[arg(long, env = "TIDESYNC_AUTH_FAILURE_BURST", default_value_t = 20.0)]
    auth_failure_burst: f64,
    /// Seconds a key the database refused is refused again without a
    /// lookup; a key issued after it was refused works once they passed.
    /// 0: no cache of unknown keys.
    #[arg(long, env = "TIDESYNC_UNKNOWN_KEY_TTL", default_value_t = 10)]
    unknown_key_ttl: u64,
    /// An origin (`scheme://host[:port]`) whose pages may call the API
    /// cross-origin (CORS); repeat for several, or comma separate them in
    /// the environment variable. None (the default): same-origin pages only.
    #[arg(
        long = "cors-origin",
        env = "TIDESYNC_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Live channel (GET /v1/events): streams open at once, at most; more
    /// are 503. Keep it well under --max-connections. 0: no cap.
    #[arg(long, env = "TIDESYNC_EVENTS_MAX_SUBSCRIBERS", default_value_t = 1024)]
    events_max_subscribers: usize,
    /// Live channel streams of one terminal at once, at most; more are 429.
    /// 0: no cap.
    #[arg(long, env = "TIDESYNC_EVENTS_PER_TERMINAL", default_value_t = 4)]
    events_per_terminal: usize,
    /// Seconds between the heartbeats of a live stream (kept under half
    /// of --idle-timeout).
    #[arg(long, env = "TIDESYNC_EVENTS_HEARTBEAT", default_value_t = 15)]
    events_heartbeat: u64,
    /// Seconds after which a live stream ends (the client reconnects; a
    /// revoked key loses its stream within this). 0: never.
    #[arg(long, env = "TIDESYNC_EVENTS_MAX_AGE", default_value_t = 300)]
    events_max_age: u64,
    /// Collections that are append-only for terminals (comma separated).
    #[arg(long, env = "TIDESYNC_APPEND_ONLY", value_delimiter = ',')]
    append_only: Vec<String>,
    /// Collections that terminals cannot write (cloud-owned; comma separated).
    #[arg(long, env = "TIDESYNC_READ_ONLY", value_delimiter = ',')]
    read_only: Vec<String>,
    /// A JSON file of per-collection payload rules (see PROTOCOL.md,
    /// "Payload rules"); e.g. server/rules/hotel.json.
    #[arg(long, env = "TIDESYNC_RULES")]
    rules: Option<std::path::PathBuf>,
    /// Log format: one JSON object per line, or text for a terminal.
    #[arg(long, env = "TIDESYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info` or
    /// `tidesync_server=debug`.
    #[arg(long, env = "TIDESYNC_LOG", default_value = "info")]
    log: String,
}

fn init_logs(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn open(db: &DbArgs) -> Result<Backend, String> {
    Backend::open(&db.database, db.sqlite_synchronous)
        .map_err(|e| format!("cannot open the database: {e}"))
}

fn serve(db: &DbArgs, args: ServeArgs) -> Result<(), String> {
    init_logs(&args);
    let backend = open(db)?;
    let mut config = ServiceConfig {
        max_batch: args.max_batch,
        max_changes_page: args.max_changes_page,
        max_snapshot_page: args.max_snapshot_page,
        max_manifest: args.max_manifest,
        ..ServiceConfig::default()
    };
    if args.max_schema_version == 0 {
        return Err("--max-schema-version must be at least 1".into());
    }
    config.limits.schema_versions = (1, args.max_schema_version);
    config.replay_window_ms =
        (args.replay_window_days > 0).then(|| u64::from(args.replay_window_days) * 86_400_000);
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the rules file {}: {e}", path.display()))?;
        config.rules = tidesync_server::rules::parse_rules(&text)
            .map_err(|e| format!("rules file {}: {e}", path.display()))?;
    }
    for (flag, names, policy) in [
        ("--append-only", &args.append_only, ServerPolicy::AppendOnly),
        ("--read-only", &args.read_only, ServerPolicy::ReadOnly),
    ] {
        for c in names {
            let from_file = config
                .rules
                .get(c)
                .map(|r| ServerPolicy::of_access(r.access));
            if from_file.is_some_and(|p| p != policy && p != ServerPolicy::Versioned) {
                return Err(format!(
                    "{flag} {c}: the rules file gives {c} another access"
                ));
            }
            if config
                .policies
                .insert(c.clone(), policy)
                .is_some_and(|p| p != policy)
            {
                return Err(format!("{flag} {c}: {c} is named by both flags"));
            }
        }
    }
    let cors_origins = args
        .cors_origins
        .iter()
        .map(|o| http::cors::parse_origin(o).map_err(|e| format!("--cors-origin {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = backend.kind();
    let service = SyncService::with_config(backend, config);
    let app = AppState::new(
        service,
        HttpConfig {
            max_body_bytes: args.max_body_bytes,
            rate_per_sec: args.rate_limit,
            burst: args.rate_burst,
            storage_workers: args.storage_workers,
            default_page: args.default_page,
            max_connections: args.max_connections,
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
            header_timeout: std::time::Duration::from_secs(args.header_timeout),
            body_timeout: std::time::Duration::from_secs(args.body_timeout),
            auth_failure_rate: args.auth_failure_rate,
            auth_failure_burst: args.auth_failure_burst,
            unknown_key_ttl: std::time::Duration::from_secs(args.unknown_key_ttl),
            cors_origins,
            events_max_subscribers: args.events_max_subscribers,
            events_per_terminal: args.events_per_terminal,
            events_heartbeat: std::time::Duration::from_secs(args.events_heartbeat),
            events_max_age: std::time::Duration::from_secs(args.events_max_age),
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(args.storage_workers.max(1) + 4)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(listen = %args.listen, backend = kind, "tidesync-server ready");
        if app.service.config().replay_window_ms.is_some() {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                loop {
                    let a = std::sync::Arc::clone(&app);
                    match tokio::task::spawn_blocking(move || a.service.prune_ledger()).await {
                        Ok(Ok(n)) => tracing::info!(rows = n, "ledger pruned to the replay window"),
                        Ok(Err(e)) => tracing::warn!(code = %e.code, "ledger prune failed"),
                        Err(_) => tracing::warn!("ledger prune panicked"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
            });
        }
        http::serve(listener, app, http::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })?;
    tracing::info!("stopped");
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        None => serve(&cli.db, cli.serve),
        Some(Command::Serve(args)) => serve(&cli.db, args),
        #[cfg(feature = "openapi")]
        Some(Command::Openapi) => {
            print!("{}", tidesync_server::openapi::document_text());
            Ok(())
        }
        Some(Command::Migrate) => {
            let backend = open(&cli.db)?;
            println!("database is up to date ({})", backend.kind());
            Ok(())
        }
        Some(Command::IssueKey {
            tenant,
            branch,
            terminal,
            expires_in,
            quiet,
        }) => {
            let backend = open(&cli.db)?;
            let now = tidesync_server::now_ms();
            let expires = expires_in
                .map(|s| auth::parse_duration_ms(&s).map(|d| now + d))
                .transpose()?;
            let ctx = TerminalContext::new(tenant, branch, terminal);
            let (key, credential) =
                auth::new_key(ctx, now, expires).map_err(|e| format!("no randomness: {e}"))?;
            backend
                .put_credential(&credential)
                .map_err(|e| format!("cannot store the credential: {e}"))?;
            if quiet {
                println!("{key}");
            } else {
                println!("key id:  {}", credential.key_id);
                println!("key:     {key}");
                println!("(shown once; the server keeps only its SHA-256)");
            }
            Ok(())
        }
        Some(Command::IssuePairingCode {
            tenant,
            branch,
            terminal,
            expires_in,
            quiet,
        }) => {
            let valid_for = auth::parse_duration_ms(&expires_in)?;
            if valid_for == 0 {
                return Err("--expires-in: must be more than 0".into());
            }
            let backend = open(&cli.db)?;
            let now = tidesync_server::now_ms();
            let ctx = TerminalContext::new(tenant, branch, terminal);
            let (code, stored) = auth::issue_pairing_code(&backend, ctx, now, valid_for)?;
            if quiet {
                println!("{code}");
            } else {
                println!("code id: {}", stored.code_id);
                println!("code:    {code}");
                println!(
                    "(shown once, valid once, until {} ms since the epoch; the server keeps only its SHA-256)",
                    stored.expires_at_ms
                );
            }
            Ok(())
        }
        Some(Command::RevokeKey {
            key_id,
            tenant,
            branch,
            terminal,
        }) => {
            let backend = open(&cli.db)?;
            let now = tidesync_server::now_ms();
            match (key_id, tenant, branch, terminal) {
                (Some(id), ..) => {
                    let id = id.trim_start_matches("ts_");
                    if backend
                        .revoke_credential(id, now)
                        .map_err(|e| e.to_string())?
                    {
                        println!("revoked key {id}");
                        Ok(())
                    } else {
                        Err(format!("no live key with id {id}"))
                    }
                }
                (None, Some(t), Some(b), Some(term)) => {
                    let n = backend
                        .revoke_terminal(&TerminalContext::new(t, b, term), now)
                        .map_err(|e| e.to_string())?;
                    println!("revoked {n} key(s)");
                    Ok(())
                }
                _ => Err("give --key-id, or --tenant, --branch and --terminal".into()),
            }
        }
        Some(Command::Audit { tenant, branch }) => {
            use std::io::Write as _;
            use tidesync_server::ServerStore as _;
            let backend = open(&cli.db)?;
            let rows = backend
                .audit(&Partition::new(tenant, branch))
                .map_err(|e| format!("cannot read the audit trail: {e}"))?;
            let mut out = std::io::stdout().lock();
            for row in rows {
                let line = serde_json::to_string(&row).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Some(Command::SeedDemo { tenant, branch }) => {
            let backend = open(&cli.db)?;
            let service = SyncService::new(backend);
            let p = Partition::new(tenant, branch);
            let n = seed_demo(&service, &p)?;
            println!("loaded {n} demo entities into {p}");
            Ok(())
        }
        Some(Command::SeedSynthetic {
            tenant,
            branch,
            collection,
            count,
        }) => {
            let backend = open(&cli.db)?;
            let service = SyncService::new(backend);
            let p = Partition::new(tenant, branch);
            let kinds = ["single", "double", "twin", "suite"];
            let hlc = Hlc {
                wall_ms: tidesync_server::now_ms(),
                counter: 0,
                node: 0,
            };
            let mut start = 1;
            while start <= count {
                let end = (start + 10_000).min(count + 1);
                let batch = (start..end).map(|i| {
                    (
                        EntityKey::new(collection.clone(), format!("r{i:07}")),
                        obj(json!({
                            "number": i.to_string(),
                            "floor": i % 20,
                            "kind": kinds[(i % 4) as usize],
                            "status": "dirty",
                            "rate_cents": 8900 + 1000 * (i % 4),
                            "notes": "no feather pillows",
                        })),
                    )
                });
                service.seed(&p, hlc, batch).map_err(|e| e.to_string())?;
                start = end;
            }
            println!("loaded {count} entities into {p}/{collection}");
            Ok(())
        }
    }
}

fn obj(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap_or_default()
}

/// A hotel branch: 3 floors of rooms with housekeeping statuses, and a
/// catalog (minibar and services). Loads nothing if rooms already exist.
fn seed_demo(service: &SyncService<Backend>, p: &Partition) -> Result<usize, String> {
    let ctx = TerminalContext::new(&p.tenant, &p.branch, "seed");
    let existing = service
        .snapshot(
            &ctx,
            tidesync::SnapshotRequest {
                after: None,
                limit: 1,
            },
        )
        .map_err(|e| e.to_string())?;
    if !existing.entities.is_empty() {
        return Ok(0);
    }
    let statuses = ["clean", "dirty", "inspected", "out_of_order", "occupied"];
    let kinds = ["single", "double", "twin", "suite"];
    let mut entities = Vec::new();
    for floor in 1..=3u32 {
        for n in 1..=10u32 {
            let room = floor * 100 + n;
            let i = (room as usize) * 7;
            entities.push((
                EntityKey::new("rooms", room.to_string()),
                obj(json!({
                    "number": room.to_string(),
                    "floor": floor,
                    "kind": kinds[i % kinds.len()],
                    "status": statuses[i % statuses.len()],
                    "rate_cents": 8900 + 1000 * (i % 4),
                })),
            ));
        }
    }
    for (id, name, price) in [
        ("water", "Still water 0.5 l", 250),
        ("cola", "Cola 0.33 l", 350),
        ("chips", "Salted chips", 400),
        ("breakfast", "Breakfast buffet", 1800),
        ("late-checkout", "Late checkout (until 14:00)", 2500),
    ] {
        entities.push((
            EntityKey::new("catalog", id),
            obj(json!({"name": name, "price_cents": price, "currency": "EUR"})),
        ));
    }
    let hlc = Hlc {
        wall_ms: tidesync_server::now_ms(),
        counter: 0,
        node: 0,
    };
    service
        .seed(p, hlc, entities)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidesync-server: {e}");
            ExitCode::FAILURE
        }
    }
}
