//! Scenario tests of the engine against the real server logic (in memory),
//! through a transport whose failures each test scripts; one file per topic,
//! the shared set-up in `common`.

mod common;

mod backoff;
mod clock;
mod commits;
mod conflicts;
mod decide;
mod delivery;
mod failures;
mod migrations;
mod observability;
mod person;
mod pull;
mod review;
mod rules;
mod scheduler;
mod tabs;
