//! The service test suite on PostgreSQL, plus the cursor test with two
//! server instances. Needs `TIDESYNC_TEST_PG_URL` and the `pg-tests`
//! feature (scripts/test-server.sh provides both); without the URL every
//! test here fails.

mod common;
mod suite;

const BACKEND: common::Kind = common::Kind::Postgres;
