//! `tidesync`: a terminal of the sync protocol on the command line, for a
//! second terminal, a script or an operator. It writes (`push`) and reads
//! (`pull`, `status`) without hand-built JSON: op ids (ULIDs), HLCs and
//! checksums come from the core, the requests go over the native HTTP
//! transport (`tidesync-http-client`). Output is one JSON line on stdout;
//! an error is `error: CODE: message` on stderr, `CODE` the stable code.
//!
//! Exit status: 0 done (`applied`, `duplicate`), 1 the request failed (the
//! server refused it or could not be reached), 2 bad arguments
//! (`BAD_ARGUMENT`), 3 `conflict`, 4 `rejected`.

mod mutation;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tidesync::env::SystemEnv;
use tidesync::{
    AckResult, ChangesRequest, ErrorCode, MutationKind, PushRequest, SnapshotRequest, Transport,
    TransportError, PROTOCOL_VERSION,
};
use tidesync_http_client::HttpTransport;

use crate::mutation::{BadArgument, Change, Writer};

/// A command-line terminal of a tidesync sync server (PROTOCOL.md).
#[derive(Debug, Parser)]
#[command(name = "tidesync", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Connection {
    /// The server's base URL.
    #[arg(
        long,
        env = "TIDESYNC_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// The terminal's API key (`tidesync-server issue-key`).
    #[arg(long, env = "TIDESYNC_KEY", global = true, hide_env_values = true)]
    key: Option<String>,
    /// The branch the key was issued for.
    #[arg(long, env = "TIDESYNC_BRANCH", global = true)]
    branch: Option<String>,
    /// The terminal the key was issued for.
    #[arg(long, env = "TIDESYNC_TERMINAL", global = true)]
    terminal: Option<String>,
    /// The installation id written into mutations (default: `cli-<terminal>`).
    #[arg(long, env = "TIDESYNC_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push one mutation; prints its ack (`applied`, `duplicate`, `conflict`
    /// or `rejected`). Run it again with the printed `op_id` (`--op-id`) to
    /// retry: a retry is answered `duplicate`, never applied twice.
    Push(PushArgs),
    /// One page of the branch's change feed after a cursor, as the server
    /// sends it (`{"changes": […], "next": N, "has_more": bool}`).
    Pull {
        /// Changes strictly after this cursor.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many (the server clamps it to 1..=1000).
        #[arg(long, default_value_t = 500)]
        limit: u32,
    },
    /// Checks the key against the server and prints the branch's log head.
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Create,
    Patch,
    Delete,
    Append,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// What the mutation does.
    #[arg(value_enum)]
    kind: Kind,
    /// Target collection (`[a-z][a-z0-9_-]{0,63}`).
    collection: String,
    /// Target entity id.
    id: String,
    /// The fields (create, append) or the JSON merge patch (patch), a JSON
    /// object; none for delete.
    payload: Option<String>,
    /// The entity's server version the change is made against (default 0
    /// for create and append; required for patch and delete).
    #[arg(long)]
    base_version: Option<u64>,
    /// Reuse this op id (retry an earlier push); default: a new ULID.
    #[arg(long)]
    op_id: Option<String>,
    /// The payload's schema version.
    #[arg(long, default_value_t = 1)]
    schema_version: u32,
    /// Print the request body instead of sending it (for curl).
    #[arg(long)]
    print: bool,
}

/// Why a command failed: its stable code, a message and the exit status.
struct Failure {
    code: ErrorCode,
    message: String,
    status: u8,
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        let message = match &e {
            TransportError::Refused { message, .. }
            | TransportError::Unauthorized { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Failure {
            code: e.code(),
            message,
            status: 1,
        }
    }
}

impl From<BadArgument> for Failure {
    fn from(e: BadArgument) -> Self {
        Failure {
            code: ErrorCode::BadArgument,
            message: e.0,
            status: 2,
        }
    }
}

fn required(value: &Option<String>, flag: &str, env: &str) -> Result<String, Failure> {
    value
        .clone()
        .ok_or_else(|| Failure::from(BadArgument(format!("{flag}: required (or set {env})"))))
}

fn transport(conn: &Connection) -> Result<HttpTransport, Failure> {
    let key = required(&conn.key, "--key", "TIDESYNC_KEY")?;
    let branch = required(&conn.branch, "--branch", "TIDESYNC_BRANCH")?;
    let t = HttpTransport::with_timeout(
        conn.server.clone(),
        key,
        branch,
        std::time::Duration::from_secs(conn.timeout.max(1)),
    );
    Ok(match &conn.terminal {
        Some(terminal) => t.with_terminal(terminal.clone()),
        None => t,
    })
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Push(args) => push(&cli.conn, args).await,
        Command::Pull { since, limit } => {
            let page = transport(&cli.conn)?
                .changes(ChangesRequest {
                    since: tidesync::Cursor(since),
                    limit,
                })
                .await?;
            println!(
                "{}",
                serde_json::to_string(&page).expect("a page serialises")
            );
            Ok(0)
        }
        Command::Status => {
            let t = transport(&cli.conn)?;
            let page = t
                .snapshot(SnapshotRequest {
                    after: None,
                    limit: 1,
                })
                .await?;
            let status = json!({
                "server": t.base_url(),
                "branch": cli.conn.branch,
                "terminal": cli.conn.terminal,
                "key": "accepted",
                "head": page.at,
            });
            println!("{status}");
            Ok(0)
        }
    }
}

async fn push(conn: &Connection, args: PushArgs) -> Result<u8, Failure> {
    let terminal = required(&conn.terminal, "--terminal", "TIDESYNC_TERMINAL")?;
    let writer = Writer {
        client_id: conn
            .client_id
            .clone()
            .unwrap_or_else(|| format!("cli-{terminal}")),
        branch_id: required(&conn.branch, "--branch", "TIDESYNC_BRANCH")?,
        terminal_id: terminal,
    };
    let kind = match args.kind {
        Kind::Create => MutationKind::Create,
        Kind::Patch => MutationKind::Patch,
        Kind::Delete => MutationKind::Delete,
        Kind::Append => MutationKind::Append,
    };
    let change = Change {
        collection: args.collection,
        entity_id: args.id,
        kind,
        payload: args.payload,
        base_version: args.base_version,
        op_id: args.op_id,
        schema_version: args.schema_version,
    };
    let m = mutation::build(&writer, &change, &SystemEnv)?;
    let request = PushRequest {
        protocol: PROTOCOL_VERSION,
        attempt: 0,
        mutations: vec![m],
    };
    if args.print {
        println!(
            "{}",
            serde_json::to_string(&request).expect("a request serialises")
        );
        return Ok(0);
    }
    let response = transport(conn)?.push(request).await?;
    let Some(ack) = response.acks.into_iter().next() else {
        return Err(Failure {
            code: ErrorCode::SyncServerError,
            message: "the server answered no ack".into(),
            status: 1,
        });
    };
    println!(
        "{}",
        serde_json::to_string(&ack).expect("an ack serialises")
    );
    Ok(match &ack.result {
        AckResult::Applied { .. } | AckResult::Duplicate { .. } => 0,
        AckResult::Conflict { .. } => {
            eprintln!(
                "error: {}: base_version is not the server's version (see \"server\")",
                ErrorCode::Conflict
            );
            3
        }
        AckResult::Rejected { code, message } => {
            eprintln!("error: {code}: {message}");
            4
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    match runtime.block_on(run(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(f) => {
            eprintln!("error: {}: {}", f.code, f.message);
            ExitCode::from(f.status)
        }
    }
}
