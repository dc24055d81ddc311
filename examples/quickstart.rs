//! Offline writes, then a sync against the reference server logic running in
//! process. `cargo run --example quickstart`
use futures::executor::block_on;
use serde_json::json;
use std::sync::Arc;
use tidesync::env::SystemEnv;
use tidesync::*;
use tidesync_server::{InProcessTransport, MemoryServerStore, SyncService, TerminalContext};

fn fields(v: serde_json::Value) -> Fields {
    v.as_object().cloned().unwrap()
}

fn main() -> Result<(), EngineError> {
    let server = Arc::new(SyncService::new(MemoryServerStore::new()));
    // Real apps use the browser's fetch transport or the native HTTP one.
    let transport = InProcessTransport::new(
        server.clone(),
        TerminalContext::new("hotel", "lobby", "desk-1"),
    );
    block_on(async {
        // --- the README example starts here
        let config = EngineConfig::new("desk-1-install", "desk-1", "lobby")
            .with_policy("rooms", ConflictPolicy::MergeThreeWay)
            .with_policy("sales", ConflictPolicy::AppendOnly);
        let engine = Engine::open(MemoryStore::new(), transport, SystemEnv, config).await?;
        engine
            .create("rooms", Some("101"), fields(json!({"status": "dirty"})))
            .await?;
        engine
            .patch("rooms", "101", fields(json!({"status": "clean"})))
            .await?;
        engine
            .append("sales", None, fields(json!({"total": 1250})))
            .await?;
        println!("queued: {:?}", engine.status().await.pending); // 3, durable in the store
        let report = engine.sync_now().await?; // push, pull, exactly once on the server
        println!("acknowledged {} mutations", report.acknowledged);
        // --- and ends here
        assert_eq!(report.acknowledged, 3);
        assert_eq!(
            engine.get("rooms", "101").await?.unwrap().fields["status"],
            "clean"
        );
        assert_eq!(server.metrics().applied, 3);
        Ok(())
    })
}
