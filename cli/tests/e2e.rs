//! `tidesync push/pull/status` end to end: the CLI binary against the real
//! server binary (`tidesync-server`) on SQLite over loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The server binary: `TIDESYNC_SERVER_BIN`, or the one cargo built beside
/// this package's binary (built here if it is not there yet).
fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TIDESYNC_SERVER_BIN") {
        return bin.into();
    }
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_tidesync"));
    let dir = cli.parent().expect("the binary is in a directory");
    let bin = dir.join("tidesync-server");
    // Built only when missing. `cargo test --workspace` builds it with the
    // same features (the server's tests need it); a nested build while the
    // outer cargo is still running would rebuild shared artifacts with
    // another feature set under it (a doctest then failed on two serde_json
    // builds). Alone (`-p tidesync-cli`), an older binary may be used:
    // set TIDESYNC_SERVER_BIN or build the server first.
    if !bin.exists() {
        let profile = dir.file_name().unwrap().to_str().unwrap();
        let profile = if profile == "debug" { "dev" } else { profile };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "tidesync-server",
                "--bin",
                "tidesync-server",
                "--profile",
                profile,
            ])
            .env("CARGO_TARGET_DIR", dir.parent().unwrap())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building tidesync-server failed");
    }
    bin
}

struct Server {
    child: Child,
    url: String,
    db: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    // The tests run in parallel threads of one process: a counter keeps
    // their directories apart.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tidesync-cli-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("server.db");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server_binary())
        .arg("--database")
        .arg(&db)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "text",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        url,
        db,
        _dir: tempdir::Dir(dir),
    }
}

impl Server {
    fn issue_key(&self, branch: &str, terminal: &str) -> String {
        let out = Command::new(server_binary())
            .arg("--database")
            .arg(&self.db)
            .args([
                "issue-key",
                "--tenant",
                "t1",
                "--branch",
                branch,
                "--terminal",
                terminal,
                "--quiet",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs the CLI as `terminal` of branch `b1` with `key`.
    fn cli(&self, key: &str, terminal: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tidesync"))
            .args(args)
            .env("TIDESYNC_SERVER", &self.url)
            .env("TIDESYNC_KEY", key)
            .env("TIDESYNC_BRANCH", "b1")
            .env("TIDESYNC_TERMINAL", terminal)
            .env_remove("TIDESYNC_CLIENT_ID")
            .output()
            .unwrap()
    }
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn push_twice_applies_once_and_pull_and_status_read_it() {
    let server = start_server();
    let key = server.issue_key("b1", "till-1");

    let create = server.cli(
        &key,
        "till-1",
        &[
            "push",
            "create",
            "rooms",
            "101",
            r#"{"status":"dirty","rate":129.5}"#,
        ],
    );
    assert_eq!(create.status.code(), Some(0), "{}", stderr(&create));
    let ack = stdout_json(&create);
    assert_eq!(ack["status"], "applied");
    assert_eq!(ack["version"], 1);
    let op_id = ack["op_id"].as_str().unwrap().to_owned();
    assert_eq!(op_id.len(), 26);

    // The same push again, as a retry with its op id: applied once.
    let args = [
        "push",
        "create",
        "rooms",
        "101",
        r#"{"status":"dirty","rate":129.5}"#,
        "--op-id",
        &op_id,
    ];
    let retry = server.cli(&key, "till-1", &args);
    assert_eq!(retry.status.code(), Some(0), "{}", stderr(&retry));
    let again = stdout_json(&retry);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(
        (&again["version"], &again["cursor"]),
        (&ack["version"], &ack["cursor"])
    );

    // The same op id with another payload is refused, never applied.
    let other = server.cli(
        &key,
        "till-1",
        &[
            "push",
            "create",
            "rooms",
            "101",
            r#"{"status":"clean"}"#,
            "--op-id",
            &op_id,
        ],
    );
    assert_eq!(other.status.code(), Some(4));
    assert_eq!(stdout_json(&other)["code"], "EVENT_DUPLICATE");
    assert!(
        stderr(&other).starts_with("error: EVENT_DUPLICATE: "),
        "{}",
        stderr(&other)
    );

    // A patch against a stale base is a conflict carrying the server state.
    let stale = server.cli(
        &key,
        "till-1",
        &[
            "push",
            "patch",
            "rooms",
            "101",
            r#"{"status":"clean"}"#,
            "--base-version",
            "0",
        ],
    );
    assert_eq!(stale.status.code(), Some(3), "{}", stderr(&stale));
    assert_eq!(stdout_json(&stale)["server"]["version"], 1);
    let patch = server.cli(
        &key,
        "till-1",
        &[
            "push",
            "patch",
            "rooms",
            "101",
            r#"{"status":"clean"}"#,
            "--base-version",
            "1",
        ],
    );
    assert_eq!(stdout_json(&patch)["status"], "applied");

    // Another terminal reads it: two changes (the create once, the patch),
    // the duplicate left no trace.
    let key2 = server.issue_key("b1", "tablet-2");
    let pull = server.cli(&key2, "tablet-2", &["pull", "--since", "0"]);
    assert_eq!(pull.status.code(), Some(0), "{}", stderr(&pull));
    let page = stdout_json(&pull);
    let changes = page["changes"].as_array().unwrap();
    let versions: Vec<&Value> = changes.iter().map(|c| &c["version"]).collect();
    assert_eq!(versions, [1, 2], "{page}");
    assert_eq!(changes[0]["last_op"], op_id.as_str());
    assert_eq!(
        changes[1]["fields"],
        serde_json::json!({"status": "clean", "rate": 129.5})
    );
    assert_eq!(page["next"], 2);
    let status = server.cli(&key2, "tablet-2", &["status"]);
    assert_eq!(stdout_json(&status)["head"], 2);
}

#[test]
fn errors_print_the_stable_code() {
    let server = start_server();
    let key = server.issue_key("b1", "till-1");
    let junk = "ts_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = server.cli(junk, "till-1", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: SYNC_UNAUTHORIZED: "),
        "{}",
        stderr(&out)
    );

    // A key of another terminal: refused at first contact.
    let out = server.cli(&key, "till-9", &["pull"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: SYNC_FORBIDDEN: x-tidesync-terminal: "),
        "{}",
        stderr(&out)
    );

    let out = server.cli(&key, "till-1", &["pull", "--since", "99"]);
    assert!(
        stderr(&out).starts_with("error: CURSOR_UNKNOWN: since: "),
        "{}",
        stderr(&out)
    );

    // Bad arguments are refused before anything is sent.
    let out = server.cli(
        &key,
        "till-1",
        &["push", "patch", "rooms", "101", r#"{"a":1}"#],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: BAD_ARGUMENT: base-version: "),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&key, "till-1", &["push", "create", "Rooms", "1", "{}"]);
    assert!(
        stderr(&out).starts_with("error: BAD_ARGUMENT: collection: "),
        "{}",
        stderr(&out)
    );

    // A server that is not there: the host is online and the connection
    // is refused, so it is an error with its code, not "offline".
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_tidesync"))
        .args([
            "status",
            "--server",
            &format!("http://127.0.0.1:{dead}"),
            "--key",
            &key,
            "--branch",
            "b1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: SYNC_UNREACHABLE: "),
        "{}",
        stderr(&out)
    );

    // `--print` gives the request body with its checksum, for curl.
    let out = server.cli(
        &key,
        "till-1",
        &[
            "push",
            "delete",
            "rooms",
            "101",
            "--base-version",
            "3",
            "--print",
        ],
    );
    let body = stdout_json(&out);
    assert_eq!(body["protocol"], 1);
    assert_eq!(body["mutations"][0]["kind"], "delete");
    assert_eq!(body["mutations"][0]["checksum"].as_str().unwrap().len(), 64);
}
