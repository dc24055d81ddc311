//! The core engine end to end over real HTTP on SQLite: a terminal works
//! offline, the server comes up, the outbox flushes, and every mutation is
//! applied on the server exactly once, even when push answers are lost on
//! the way back.

mod http_common;

use tidesync_server::SyncService;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_writes_flush_exactly_once_after_reconnect() {
    http_common::offline_writes_flush_exactly_once(SyncService::new(http_common::sqlite_backend()))
        .await;
}
