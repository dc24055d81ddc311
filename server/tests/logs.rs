//! The JSON request logs carry terminalId, branchId, eventId, syncAttempt
//! and errorCode, and never payload contents or credentials.

mod http_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http_common::*;
use serde_json::{json, Value};
use tidesync::PushResponse;
use tidesync_server::testing::push_request;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_the_ids_and_never_payloads_or_keys() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(buffer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let s = start(relaxed()).await;
    let key = s.key("b1", "t1");
    let secret = "SECRET-GUEST-NAME-4711";
    let good = create_room("b1", "t1", 1, "r1", json!({"guest": secret}));
    let mut bad = create_room("b1", "t1", 2, "r2", json!({"guest": secret}));
    bad.checksum = "0".repeat(64);
    let mut body = push_request(vec![good, bad.clone()]);
    body.attempt = 3;
    let r: PushResponse = client()
        .post(s.url("/v1/mutations"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r.acks.len(), 2);
    client()
        .get(s.url("/v1/changes"))
        .bearer_auth("ts_0000000000000000_nope")
        .send()
        .await
        .unwrap();
    s.shutdown().await;

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(secret), "payload data in the logs:\n{text}");
    let secret_part = key.rsplit('_').next().unwrap();
    assert!(!text.contains(secret_part), "a key in the logs:\n{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let rejected = lines
        .iter()
        .find(|l| l["message"] == "mutation rejected")
        .expect("a line for the rejected mutation");
    assert_eq!(rejected["eventId"], bad.op_id.0);
    assert_eq!(rejected["terminalId"], "t1");
    assert_eq!(rejected["branchId"], "b1");
    assert_eq!(rejected["syncAttempt"], 3);
    assert_eq!(rejected["errorCode"], "EVENT_INVALID");
    let push = lines
        .iter()
        .find(|l| l["message"] == "request" && l["route"] == "mutations")
        .expect("a request line for the push");
    assert_eq!(push["status"], 200);
    assert_eq!(push["terminalId"], "t1");
    assert_eq!(push["syncAttempt"], 3);
    let refused = lines
        .iter()
        .find(|l| l["message"] == "request" && l["route"] == "changes")
        .expect("a request line for the refused pull");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["errorCode"], "SYNC_UNAUTHORIZED");
}
