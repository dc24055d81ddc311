//! Events and logs.

use crate::common::*;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
/// One global subscriber for this test binary (a scoped one races with the
/// callsite cache of tests running on other threads); each test reads the
/// lines of its own terminal.
fn captured_logs() -> LogBuffer {
    static BUFFER: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(buffer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            buffer
        })
        .clone()
}

#[test]
fn subscribers_see_every_change_to_the_local_view() {
    let w = World::new();
    let net = w.net("t1");
    let engine = w.open(MemoryStore::new(), net.clone(), "t1");
    let mut rooms = engine.subscribe(Filter::Collection {
        collection: "rooms".into(),
    });
    let mut one = engine.subscribe(Filter::Entity { key: room(2) });
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch("rooms", "room-2", f(json!({"status": "clean"})))).unwrap();
    w.admin(room(3), f(json!({"status": "ooo"})));
    block_on(engine.sync_now()).unwrap();
    let mut changed = Vec::new();
    while let Ok(ev) = rooms.try_recv() {
        if let Event::Changed { key, entity } = ev {
            changed.push((key.id, entity.map(|e| e.fields["status"].clone())));
        }
    }
    assert!(changed.contains(&("room-2".into(), Some(json!("clean")))));
    assert!(changed.contains(&("room-3".into(), Some(json!("ooo")))));
    let mut only_two = true;
    while let Ok(ev) = one.try_recv() {
        if let Event::Changed { key, .. } = ev {
            only_two &= key == room(2);
        }
    }
    assert!(only_two);
}

#[test]
fn logs_carry_terminal_branch_event_attempt_and_code_but_no_payload() {
    let buffer = captured_logs();
    let w = World::new();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "open"})),
    );
    let net = w.net("tlog");
    let engine = w.open(MemoryStore::new(), net.clone(), "tlog");
    block_on(engine.sync_now()).unwrap();
    block_on(engine.patch(
        "rooms",
        "room-1",
        f(json!({"guest": "Zoë Guestname", "status": "clean"})),
    ))
    .unwrap();
    for _ in 0..3 {
        net.then(Step::Fail(TransportError::Server {
            status: 503,
            message: "down".into(),
        }));
        block_on(engine.push()).unwrap();
        w.env.advance(5_000);
    }
    block_on(engine.patch(
        "incidents",
        "inc-1",
        f(json!({"state": "Zoë called twice"})),
    ))
    .unwrap();
    w.admin(
        EntityKey::new("incidents", "inc-1"),
        f(json!({"state": "escalated"})),
    );
    block_on(engine.sync_now()).unwrap();
    let dead_op = block_on(engine.dead_letters())[0].mutation.op_id.clone();

    let all = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let logs: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("\"terminal_id\":\"tlog\""))
        .collect();
    let dead_line = logs
        .iter()
        .find(|l| l.contains("dead-letter"))
        .expect("a dead letter is logged");
    for needle in [
        "\"branch_id\":\"b1\"",
        &format!("\"event_id\":\"{dead_op}\""),
        "\"sync_attempt\":3",
        "\"error_code\":\"RETRIES_EXHAUSTED\"",
    ] {
        assert!(
            dead_line.contains(needle),
            "{needle} missing from {dead_line}"
        );
    }
    assert!(
        logs.iter()
            .any(|l| l.contains("\"error_code\":\"CONFLICT\"")),
        "conflicts are logged"
    );
    assert!(
        !all.contains("Zoë") && !all.contains("Guestname"),
        "payload data leaked into logs"
    );
}
