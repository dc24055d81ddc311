-- tidesync server schema, version 1 (SQLite).
-- Every text column compares byte-wise (BINARY collation), which is the
-- order the protocol's snapshot paging relies on.

-- One row per partition (tenant + branch): the head of its change log.
-- Cursors are 1, 2, 3, ... without gaps; writers serialise on the database
-- write lock (BEGIN IMMEDIATE), so the cursor order is the commit order.
CREATE TABLE partitions (
    tenant TEXT NOT NULL,
    branch TEXT NOT NULL,
    head   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, branch)
) WITHOUT ROWID;

-- Current state of every entity (tombstones included). `state` is the JSON
-- of the protocol's EntityState.
CREATE TABLE entities (
    tenant     TEXT NOT NULL,
    branch     TEXT NOT NULL,
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    cursor     INTEGER NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (tenant, branch, collection, id)
) WITHOUT ROWID;

-- The change log: the full entity state after each change.
CREATE TABLE changes (
    tenant TEXT NOT NULL,
    branch TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    state  TEXT NOT NULL,
    PRIMARY KEY (tenant, branch, cursor)
) WITHOUT ROWID;

-- The idempotency ledger: one row per applied mutation, keyed by
-- (tenant, terminal, op_id). Kept for as long as the data (see PROTOCOL.md,
-- "Ledger retention").
CREATE TABLE ledger (
    tenant        TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    op_id         TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    collection    TEXT NOT NULL,
    entity_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    cursor        INTEGER NOT NULL,
    PRIMARY KEY (tenant, terminal, op_id)
) WITHOUT ROWID;

-- One row per applied write, in the order written. `entry` is the JSON of
-- the server's AuditEntry.
CREATE TABLE audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    branch TEXT NOT NULL,
    entry  TEXT NOT NULL
);
CREATE INDEX audit_by_partition ON audit (tenant, branch, seq);

-- Terminal credentials: API keys, stored only as SHA-256 hashes.
CREATE TABLE credentials (
    key_hash      TEXT NOT NULL PRIMARY KEY,
    key_id        TEXT NOT NULL UNIQUE,
    tenant        TEXT NOT NULL,
    branch        TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE INDEX credentials_by_terminal ON credentials (tenant, branch, terminal);
