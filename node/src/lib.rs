//! tidesync's native Node addon (napi-rs): work in progress.
