//! Id limits: bytes, the same on client and server.

use super::*;

/// Entity ids are limited in bytes of UTF-8 (128), not in characters, and
/// the client's check (`tidesync::validate_mutation` with the default
/// limits, which the engine runs before accepting a write) and the
/// server's verdict agree at the boundary. Collections: 64 bytes.
pub async fn id_limits_are_bytes_and_client_and_server_agree(backend: Backend) {
    let s = start_on(backend, relaxed()).await;
    let key = s.key("b1", "t1");
    let limits = tidesync::Limits::default();
    assert_eq!((limits.max_id_len, limits.max_collection_len), (128, 64));
    let ctx = TerminalContext::new("acme", "b1", "t1");
    let cases: Vec<(String, String, bool)> = vec![
        ("rooms".into(), "a".repeat(128), true),
        ("rooms".into(), "a".repeat(129), false),
        ("rooms".into(), "€".repeat(42), true),  // 126 bytes
        ("rooms".into(), "€".repeat(43), false), // 43 characters, 129 bytes
        ("rooms".into(), format!("{}é", "a".repeat(126)), true), // 128 bytes
        ("rooms".into(), format!("{}é", "a".repeat(127)), false), // 129 bytes
        ("rooms".into(), "🛎".repeat(32), true),  // 128 bytes
        ("rooms".into(), "a\u{85}b".into(), false), // a C1 control character
        (format!("r{}", "a".repeat(63)), "x".into(), true),
        (format!("r{}", "a".repeat(64)), "x".into(), false),
    ];
    for (n, (collection, id, ok)) in cases.into_iter().enumerate() {
        let m = tidesync_server::testing::mutation(
            &ctx,
            tidesync_server::testing::op_id(n as u64 + 1),
            tidesync::MutationKind::Create,
            &collection,
            &id,
            Some(room(n as u64)),
            0,
        );
        let client_says = tidesync::validate_mutation(&m, &limits);
        assert_eq!(client_says.is_ok(), ok, "client on {collection}/{id}");
        let resp: PushResponse = client()
            .post(s.url("/v1/mutations"))
            .bearer_auth(&key)
            .json(&push_request(vec![m]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match (&resp.acks[0].result, ok) {
            (AckResult::Applied { .. }, true) => {}
            (AckResult::Rejected { code, message }, false) => {
                assert_eq!(*code, tidesync::ErrorCode::EventInvalid);
                let field = if id == "x" {
                    "collection: "
                } else {
                    "entity_id: "
                };
                assert!(message.starts_with(field), "{message}");
                assert_eq!(
                    Some(message.as_str()),
                    client_says.as_ref().err().map(|e| e.message.as_str()),
                    "the same words on both sides"
                );
            }
            (other, _) => panic!("{collection}/{id}: server {other:?}, client {client_says:?}"),
        }
    }
    s.shutdown().await;
}
