//! Reference sync server for tidesync.
