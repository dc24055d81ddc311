//! The deterministic simulation over real HTTP on loopback: the reference
//! server (axum) on embedded SQLite and, when `TIDESYNC_TEST_PG_URL` is set
//! (scripts/test-server.sh sets it), on PostgreSQL. Fewer seeds than the
//! in-memory run (`TIDESYNC_HTTP_SIM_SEEDS`, default 40 per backend), the same
//! faults and the same invariants; each seed runs in its own tenant.

mod sim;

use sim::{server_config, set_runtime, Link, Sim, SimServer, SIM_START_MS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tidesync_server::auth::{self, CredentialStore};
use tidesync_server::http::{self, AppState, HttpConfig};
use tidesync_server::{Backend, SqliteSync, SyncService};

impl SimServer for AppState {
    type Store = Backend;
    fn service(&self) -> &SyncService<Backend> {
        &self.service
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_over_http(backend: Backend, label: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = Arc::new(AtomicU64::new(SIM_START_MS));
    let clock = now.clone();
    let service = SyncService::with_config(backend, server_config())
        .with_clock(move || clock.load(Ordering::SeqCst));
    let app = AppState::new(
        service,
        HttpConfig {
            // The simulation injects its own 429s; real-time limits would
            // make a seed depend on the machine's speed.
            rate_per_sec: 0.0,
            ..HttpConfig::default()
        },
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(http::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    set_runtime(Some(rt.handle().clone()));

    let seeds = env_u64("TIDESYNC_HTTP_SIM_SEEDS", 40);
    let steps = env_u64("TIDESYNC_SIM_STEPS", 100);
    let run = format!("{}-{}", std::process::id(), now_ms_wall());
    let mut checks = 0;
    let mut applied = 0;
    for seed in 1..=seeds {
        now.store(SIM_START_MS, Ordering::SeqCst);
        let keys = app.clone();
        let issue = Arc::new(move |ctx: &tidesync_server::TerminalContext| {
            let (key, credential) = auth::new_key(ctx.clone(), SIM_START_MS, None).unwrap();
            keys.service.store().put_credential(&credential).unwrap();
            key
        });
        let mut sim = Sim::with_server(
            seed,
            app.clone(),
            format!("sim-{run}-{seed}"),
            Link::Http {
                base: base.clone(),
                issue,
            },
            now.clone(),
        );
        match sim.run(steps) {
            Ok(stats) => {
                checks += stats.checks;
                applied += stats.applied;
            }
            Err(report) => panic!("over HTTP on {label}: {report}"),
        }
    }
    set_runtime(None);
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    println!(
        "simulation over HTTP on {label}: {seeds} seeds x {steps} steps, {checks} invariant checks, {applied} mutations applied, {} received over HTTP",
        app.stats.mutations_received.load(Ordering::SeqCst)
    );
    assert!(applied > seeds, "the simulation must make progress");
    let received = app.stats.mutations_received.load(Ordering::SeqCst);
    assert!(
        received >= applied,
        "the mutations travelled over HTTP ({received} received for {applied} applied)"
    );
}

fn now_ms_wall() -> u128 {
    u128::from(tidesync::env::unix_now_ms())
}

#[test]
fn simulation_over_http_on_sqlite() {
    let path = std::env::temp_dir().join(format!(
        "tidesync_sim_http_{}_{}.db",
        std::process::id(),
        now_ms_wall()
    ));
    let backend = Backend::open(path.to_str().unwrap(), SqliteSync::Normal).unwrap();
    run_over_http(backend, "SQLite");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn simulation_over_http_on_postgres() {
    let Ok(url) = std::env::var("TIDESYNC_TEST_PG_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this against PostgreSQL: scripts/test-server.sh sets TIDESYNC_TEST_PG_URL"
        );
        eprintln!("TIDESYNC_TEST_PG_URL not set: the PostgreSQL run is in scripts/test-server.sh");
        return;
    };
    run_over_http(
        Backend::open(&url, SqliteSync::Normal).unwrap(),
        "PostgreSQL",
    );
}
