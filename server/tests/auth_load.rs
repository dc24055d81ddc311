//! Authentication before load (issue 19, item 4), over loopback against a
//! server on SQLite whose store counts its calls (and can be slowed down or
//! held, to stand for a database across a network):
//!
//! * a malformed key is refused without any storage call;
//! * a key storage refused is refused again from the cache of unknown keys,
//!   and a key issued after it was refused works once the entry expired;
//! * failed authentications are limited per client address (429
//!   `SYNC_RATE_LIMITED` + `Retry-After`, no storage call), a key known to
//!   be valid is not held up by them, and a revoked key stops at once;
//! * `/health` answers while every storage worker is busy (`/ready` does
//!   not);
//! * a flood of junk keys leaves valid pushes within 2x of their latency
//!   without it (medians, measured in the same run).

mod http_common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use http_common::{client, code_of, create_room, room, Server};
use reqwest::header;
use tidesync::{AckResult, Cursor, EntityKey, PushResponse};
use tidesync_server::auth::{self, Credential, CredentialStore};
use tidesync_server::http::HttpConfig;
use tidesync_server::testing::{push_request, temporary_sqlite};
use tidesync_server::{
    AuditRow, Backend, Change, EntitiesAt, Partition, ServerStore, SqliteStore, SqliteSync,
    StorageBackend, StorageError, StoreTx, SyncService, TerminalContext,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the counting store counts and how it behaves.
#[derive(Debug, Default)]
struct Probe {
    /// `credential` lookups.
    lookups: AtomicU64,
    /// Every other storage call.
    other: AtomicU64,
    /// Each lookup takes this long (microseconds): a database across a
    /// network.
    lookup_delay_us: AtomicU64,
    /// While true, lookups wait (to saturate the storage workers).
    held: Mutex<bool>,
    released: Condvar,
}

impl Probe {
    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    fn calls(&self) -> u64 {
        self.lookups() + self.other.load(Ordering::SeqCst)
    }

    fn hold(&self, on: bool) {
        *self.held.lock().unwrap() = on;
        self.released.notify_all();
    }
}

/// SQLite, with every call counted.
#[derive(Debug)]
struct Counting {
    inner: SqliteStore,
    probe: Arc<Probe>,
}

impl Counting {
    fn other(&self) {
        self.probe.other.fetch_add(1, Ordering::SeqCst);
    }
}

impl ServerStore for Counting {
    fn transaction_dyn(
        &self,
        partition: &Partition,
        work: &mut dyn FnMut(&mut dyn StoreTx) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.other();
        self.inner.transaction_dyn(partition, work)
    }
    fn changes(
        &self,
        p: &Partition,
        since: Cursor,
        limit: usize,
    ) -> Result<Vec<Change>, StorageError> {
        self.other();
        self.inner.changes(p, since, limit)
    }
    fn snapshot(
        &self,
        p: &Partition,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntitiesAt, StorageError> {
        self.other();
        self.inner.snapshot(p, after, limit)
    }
    fn live_entities(&self, p: &Partition, collection: &str) -> Result<EntitiesAt, StorageError> {
        self.other();
        self.inner.live_entities(p, collection)
    }
    fn head(&self, p: &Partition) -> Result<Cursor, StorageError> {
        self.other();
        self.inner.head(p)
    }
    fn audit(&self, p: &Partition) -> Result<Vec<AuditRow>, StorageError> {
        self.other();
        self.inner.audit(p)
    }
}

impl CredentialStore for Counting {
    fn put_credential(&self, c: &Credential) -> Result<(), StorageError> {
        self.other();
        self.inner.put_credential(c)
    }
    fn credential(&self, key_hash: &str) -> Result<Option<Credential>, StorageError> {
        self.probe.lookups.fetch_add(1, Ordering::SeqCst);
        let mut held = self.probe.held.lock().unwrap();
        while *held {
            held = self.probe.released.wait(held).unwrap();
        }
        drop(held);
        let delay = self.probe.lookup_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        self.inner.credential(key_hash)
    }
    fn revoke_credential(&self, key_id: &str, at_ms: u64) -> Result<bool, StorageError> {
        self.other();
        self.inner.revoke_credential(key_id, at_ms)
    }
    fn revoke_terminal(&self, ctx: &TerminalContext, at_ms: u64) -> Result<u64, StorageError> {
        self.other();
        self.inner.revoke_terminal(ctx, at_ms)
    }
}

impl StorageBackend for Counting {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
    fn fail_commits(&self, on: bool) {
        self.inner.fail_commits(on);
    }
}

async fn start(config: HttpConfig) -> (Server, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let store = Counting {
        inner: temporary_sqlite(SqliteSync::Normal),
        probe: Arc::clone(&probe),
    };
    let s = Server::start(SyncService::new(Backend::new(store)), config, "127.0.0.1:0").await;
    (s, probe)
}

/// No per-terminal rate limit (the tests here are about authentication).
fn config() -> HttpConfig {
    HttpConfig {
        rate_per_sec: 0.0,
        ..HttpConfig::default()
    }
}

/// A key of the issued shape that no server issued.
fn junk_key(seed: &mut u64) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut next = || {
        // xorshift64
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let id = next();
    let secret: String = (0..43)
        .map(|_| char::from(B64[(next() % 64) as usize]))
        .collect();
    let key = format!("ts_{id:016x}_{secret}");
    assert!(auth::well_formed(&key));
    key
}

async fn changes(s: &Server, key: Option<&str>) -> reqwest::Response {
    let req = client().get(s.url("/v1/changes"));
    match key {
        Some(k) => req.header(header::AUTHORIZATION, format!("Bearer {k}")),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_are_refused_without_a_storage_call() {
    let (s, probe) = start(HttpConfig {
        auth_failure_burst: 1000.0,
        ..config()
    })
    .await;
    let good = s.key("b1", "t1");
    let before = probe.calls();
    let mut upper = good.clone();
    upper.replace_range(3..4, "F");
    let cases: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("not-a-key".into()),
        Some("ts_0000000000000000_nope".into()),
        Some(good[..good.len() - 1].into()),
        Some(format!("{good}A")),
        Some(upper),
        Some(good.replacen("ts_", "tx_", 1)),
        Some(format!("{}+{}", &good[..40], &good[41..])),
        Some("ts_".to_owned() + &"a".repeat(4000)),
    ];
    let c = client();
    for key in &cases {
        for path in [
            "/v1/mutations",
            "/v1/changes",
            "/v1/snapshot",
            "/v1/reconcile",
        ] {
            let req = if path.ends_with("changes") || path.ends_with("snapshot") {
                c.get(s.url(path))
            } else {
                c.post(s.url(path)).json(&push_request(vec![]))
            };
            let req = match key {
                Some(k) => req.header(header::AUTHORIZATION, format!("Bearer {k}")),
                None => req,
            };
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{key:?} on {path}");
            assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(code_of(resp).await, "SYNC_UNAUTHORIZED");
        }
    }
    // Another scheme is no key at all.
    let resp = client()
        .get(s.url("/v1/changes"))
        .header(header::AUTHORIZATION, format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(probe.calls(), before, "no storage call for a malformed key");
    assert_eq!(
        s.app.stats.auth_lookups.load(Ordering::SeqCst),
        0,
        "and no lookup counted"
    );
    // The well-formed key is looked up (once per request).
    assert_eq!(changes(&s, Some(&good)).await.status(), 200);
    assert_eq!(probe.lookups(), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_cached_briefly_and_a_key_issued_later_works() {
    let (s, probe) = start(HttpConfig {
        unknown_key_ttl: Duration::from_millis(400),
        ..config()
    })
    .await;
    // A key made but not stored yet: storage refuses it.
    let ctx = TerminalContext::new("acme", "b1", "t1");
    let (key, credential) = auth::new_key(ctx, tidesync_server::now_ms(), None).unwrap();
    assert_eq!(changes(&s, Some(&key)).await.status(), 401);
    assert_eq!(probe.lookups(), 1);
    // Asked again: refused from the cache, no lookup.
    for _ in 0..5 {
        let resp = changes(&s, Some(&key)).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(code_of(resp).await, "SYNC_UNAUTHORIZED");
    }
    assert_eq!(probe.lookups(), 1);
    assert_eq!(s.app.stats.auth_unknown_hits.load(Ordering::SeqCst), 5);
    // The administrator issues it now: it works once the entry expired
    // (PROTOCOL.md: up to --unknown-key-ttl after it was refused).
    let started = Instant::now();
    tokio::task::block_in_place(|| s.app.service.store().put_credential(&credential)).unwrap();
    loop {
        let status = changes(&s, Some(&key)).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the issued key never worked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe.lookups(), 2, "looked up again once the entry expired");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address_with_429() {
    let (s, probe) = start(HttpConfig {
        auth_failure_rate: 0.5,
        auth_failure_burst: 3.0,
        ..config()
    })
    .await;
    let known = s.key("b1", "t1");
    let fresh = s.key("b1", "t2");
    let revoked = s.key("b1", "t3");
    // Valid keys take nothing from the address's allowance.
    for _ in 0..10 {
        assert_eq!(changes(&s, Some(&known)).await.status(), 200);
    }
    assert_eq!(changes(&s, Some(&revoked)).await.status(), 200);
    let mut seed = 7;
    for _ in 0..3 {
        let resp = changes(&s, Some(&junk_key(&mut seed))).await;
        assert_eq!(resp.status(), 401);
    }
    let lookups = probe.lookups();
    // The allowance is spent: 429 with the protocol's error body and
    // Retry-After, for junk, malformed and missing keys alike, and no
    // lookup.
    for key in [Some(junk_key(&mut seed)), Some("junk".into()), None] {
        let resp = changes(&s, key.as_deref()).await;
        assert_eq!(resp.status(), 429, "{key:?}");
        assert!((1..=2).contains(&retry_after(&resp)), "{key:?}");
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "SYNC_RATE_LIMITED");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("too many failed authentications"),
            "{body}"
        );
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
    assert_eq!(probe.lookups(), lookups, "no lookup while limited");
    // A key known to be valid still works from the same address, and is
    // still looked up every time ...
    assert_eq!(changes(&s, Some(&known)).await.status(), 200);
    assert_eq!(probe.lookups(), lookups + 1);
    // ... so a revoked one stops at once, even while the address is limited.
    let key_id = revoked.split('_').nth(1).unwrap().to_owned();
    assert!(tokio::task::block_in_place(|| s
        .app
        .service
        .store()
        .revoke_credential(&key_id, tidesync_server::now_ms()))
    .unwrap());
    let resp = changes(&s, Some(&revoked)).await;
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "the key has been revoked");
    // A valid key never seen before waits for the allowance like any other
    // (PROTOCOL.md), then works.
    assert_eq!(changes(&s, Some(&fresh)).await.status(), 429);
    // Another address has its own allowance.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let resp = other
        .get(s.url("/v1/changes"))
        .bearer_auth(junk_key(&mut seed))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "127.0.0.2 has failed nothing yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(changes(&s, Some(&fresh)).await.status(), 200);
    // The allowance refilled by one and the fresh key gave its token back.
    assert_eq!(changes(&s, Some(&junk_key(&mut seed))).await.status(), 401);
    let metrics = s
        .app
        .stats
        .render(&s.app.service.metrics(), s.app.service.store().kind());
    assert!(
        metrics.contains("tidesync_auth_rate_limited_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidesync_rate_limited_total 4"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_every_storage_worker_is_busy() {
    let (s, probe) = start(HttpConfig {
        storage_workers: 2,
        ..config()
    })
    .await;
    probe.hold(true);
    // Two lookups hold both workers; a third request waits for one.
    let mut seed = 11;
    let stuck: Vec<_> = (0..3)
        .map(|_| {
            let req = client()
                .get(s.url("/v1/changes"))
                .bearer_auth(junk_key(&mut seed));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    let started = Instant::now();
    while s.app.stats.storage_busy.load(Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "workers never busy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..5 {
        let asked = Instant::now();
        let resp = tokio::time::timeout(
            Duration::from_secs(1),
            client().get(s.url("/health")).send(),
        )
        .await
        .expect("/health answers within 1 s")
        .unwrap();
        assert!(asked.elapsed() < Duration::from_secs(1));
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "ok", "backend": "sqlite"})
        );
    }
    // Readiness needs storage: not ready while it cannot get to it.
    let resp = client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    probe.hold(false);
    for t in stuck {
        assert_eq!(t.await.unwrap(), 401);
    }
    let resp = client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    s.shutdown().await;
}

// ---- the flood

/// One junk request on a raw keep-alive connection: its status.
async fn junk_request(stream: &mut TcpStream, key: Option<&str>, buf: &mut Vec<u8>) -> Option<u16> {
    let body = br#"{"protocol":1,"mutations":[]}"#;
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!(
        "POST /v1/mutations HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    buf.clear();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let len: usize = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a flood sent, by answer.
#[derive(Debug, Default)]
struct Sent {
    unauthorized: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

/// `tasks` connections, each sending a junk request every `period` (or as
/// fast as it is answered, if slower), until `stop`: 8 in 10 carry a
/// random key of the issued shape (the worst case: each is new to the
/// server), 1 a malformed key, 1 none.
fn flood(
    addr: SocketAddr,
    tasks: usize,
    period: Duration,
    stop: Arc<AtomicBool>,
    sent: Arc<Sent>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|_| {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            tokio::spawn(async move {
                // A new sequence for every task of every flood: each key is
                // new to the server.
                static TASKS: AtomicU64 = AtomicU64::new(1);
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64
                    .wrapping_mul(TASKS.fetch_add(1, Ordering::Relaxed))
                    | 1;
                let mut buf = Vec::new();
                let mut stream = None;
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    i += 1;
                    let key = match i % 10 {
                        0 => None,
                        1 => Some(format!("ts_junk_{i}")),
                        _ => Some(junk_key(&mut seed)),
                    };
                    if stream.is_none() {
                        stream = TcpStream::connect(addr).await.ok();
                    }
                    let Some(s) = stream.as_mut() else { continue };
                    match junk_request(s, key.as_deref(), &mut buf).await {
                        Some(401) => sent.unauthorized.fetch_add(1, Ordering::Relaxed),
                        Some(429) => sent.limited.fetch_add(1, Ordering::Relaxed),
                        Some(_) => sent.other.fetch_add(1, Ordering::Relaxed),
                        None => {
                            stream = None;
                            0
                        }
                    };
                }
            })
        })
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The flood's shape; `TIDESYNC_FLOOD_TASKS`, `TIDESYNC_FLOOD_PERIOD_US`
/// override it (to explore; the defaults are what the test asserts with).
fn flood_shape() -> (usize, Duration) {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        var("TIDESYNC_FLOOD_TASKS", 64) as usize,
        Duration::from_micros(var("TIDESYNC_FLOOD_PERIOD_US", 2000)),
    )
}

/// Push latencies without and with a flood of junk keys, in alternating
/// rounds (so that load from elsewhere on the machine falls on both
/// alike): (medians without, with), what the flood sent, and the lookups
/// storage did during the floods.
async fn measure(config: HttpConfig) -> (Duration, Duration, Arc<Sent>, u64, u64) {
    let (s, probe) = start(config).await;
    // Every lookup takes 3 ms, as a database across a network would: the
    // storage workers are what a flood of lookups would use up.
    probe.lookup_delay_us.store(3000, Ordering::SeqCst);
    let key = s.key("b1", "t1");
    let c = client();
    let mut n = 0u64;
    let mut push = || {
        n += 1;
        let body = push_request(vec![create_room("b1", "t1", n, &format!("r{n}"), room(n))]);
        let req = c.post(s.url("/v1/mutations")).bearer_auth(&key).json(&body);
        async move {
            let started = Instant::now();
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let r: PushResponse = resp.json().await.unwrap();
            assert!(matches!(r.acks[0].result, AckResult::Applied { .. }));
            started.elapsed()
        }
    };
    for _ in 0..10 {
        push().await; // warm up (and the key is known to be valid)
    }
    let (tasks, period) = flood_shape();
    let sent = Arc::new(Sent::default());
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    let mut flood_lookups = 0;
    let mut flood_pushes = 0;
    const ROUNDS: usize = 6;
    const PUSHES: usize = 25;
    for round in 0..ROUNDS {
        for flooding in [round % 2 == 1, round % 2 == 0] {
            if !flooding {
                for _ in 0..PUSHES {
                    quiet.push(push().await);
                }
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let lookups = probe.lookups();
            let handles = flood(s.addr, tasks, period, Arc::clone(&stop), Arc::clone(&sent));
            tokio::time::sleep(Duration::from_millis(300)).await;
            for _ in 0..PUSHES {
                flooded.push(push().await);
            }
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.await.unwrap();
            }
            flood_lookups += probe.lookups() - lookups;
            flood_pushes += PUSHES as u64;
        }
    }
    if std::env::var_os("TIDESYNC_FLOOD_DEBUG").is_some() {
        let m = s
            .app
            .stats
            .render(&s.app.service.metrics(), s.app.service.store().kind());
        eprintln!(
            "{}",
            m.lines()
                .filter(|l| l.starts_with("tidesync_auth") || l.contains("route=\"mutations\",s"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    s.shutdown().await;
    (
        median(&mut quiet),
        median(&mut flooded),
        sent,
        flood_lookups,
        flood_pushes,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_keys_leaves_valid_pushes_within_2x_of_their_latency() {
    let (quiet, flooded, sent, lookups, pushes) = measure(config()).await;
    let ratio = flooded.as_secs_f64() / quiet.as_secs_f64();
    let (u, l, o) = (
        sent.unauthorized.load(Ordering::SeqCst),
        sent.limited.load(Ordering::SeqCst),
        sent.other.load(Ordering::SeqCst),
    );
    eprintln!(
        "push median {quiet:?} without the flood, {flooded:?} with it (ratio {ratio:.2}); \
         the flood sent {} requests ({u} 401, {l} 429, {o} other); {lookups} lookups \
         during the floods, {pushes} of them the pushes'",
        u + l + o
    );
    assert_eq!(o, 0, "junk is answered 401 or 429");
    assert!(u + l >= 2000, "the flood was a flood: {} requests", u + l);
    // The address's allowance is 20 failures in a burst and 1 more per
    // second: the junk keys' lookups are those, whatever the size of the
    // flood (a few seconds of it).
    let junk_lookups = lookups - pushes;
    assert!(junk_lookups <= 6 * 25, "{junk_lookups} junk keys looked up");
    assert!(
        ratio <= 2.0,
        "pushes took {flooded:?} (median) under the flood, {quiet:?} without: {ratio:.2}x"
    );
}

/// The same flood with the per-address limit off (what the server did
/// before): the junk keys' lookups fill the storage workers and the pushes
/// queue behind them. Not a default test (it shows the problem, and its
/// ratio depends on the machine); run it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn without_the_address_limit_the_flood_starves_pushes() {
    let (quiet, flooded, sent, lookups, _) = measure(HttpConfig {
        auth_failure_rate: 0.0,
        ..config()
    })
    .await;
    let ratio = flooded.as_secs_f64() / quiet.as_secs_f64();
    eprintln!(
        "unprotected: push median {quiet:?} without the flood, {flooded:?} with it \
         (ratio {ratio:.2}); {} junk requests, {lookups} lookups",
        sent.unauthorized.load(Ordering::SeqCst) + sent.limited.load(Ordering::SeqCst)
    );
    assert!(ratio > 2.0, "{ratio:.2}");
}
