-- tidesync server schema, version 1 (PostgreSQL).
-- Every text column compares byte-wise (COLLATE "C"), which is the
-- order the protocol's snapshot paging relies on.

-- One row per partition (tenant + branch): the head of its change log.
-- Cursors are 1, 2, 3, ... without gaps; writers serialise on the database
-- partition row lock (SELECT ... FOR UPDATE), so the cursor order is the commit order.
CREATE TABLE partitions (
    tenant TEXT COLLATE "C" NOT NULL,
    branch TEXT COLLATE "C" NOT NULL,
    head   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, branch)
);

-- Current state of every entity (tombstones included). `state` is the JSON
-- of the protocol's EntityState.
CREATE TABLE entities (
    tenant     TEXT COLLATE "C" NOT NULL,
    branch     TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    deleted    BIGINT NOT NULL,
    cursor     BIGINT NOT NULL,
    state      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, branch, collection, id)
);

-- The change log: the full entity state after each change.
CREATE TABLE changes (
    tenant TEXT COLLATE "C" NOT NULL,
    branch TEXT COLLATE "C" NOT NULL,
    cursor BIGINT NOT NULL,
    state  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, branch, cursor)
);

-- The idempotency ledger: one row per applied mutation, keyed by
-- (tenant, terminal, op_id). Kept for as long as the data (see PROTOCOL.md,
-- "Ledger retention").
CREATE TABLE ledger (
    tenant        TEXT COLLATE "C" NOT NULL,
    terminal      TEXT COLLATE "C" NOT NULL,
    op_id         TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT COLLATE "C" NOT NULL,
    collection    TEXT COLLATE "C" NOT NULL,
    entity_id     TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    cursor        BIGINT NOT NULL,
    PRIMARY KEY (tenant, terminal, op_id)
);

-- One row per applied write, in the order written. `entry` is the JSON of
-- the server's AuditEntry.
CREATE TABLE audit (
    seq    BIGSERIAL PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    branch TEXT COLLATE "C" NOT NULL,
    entry  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_by_partition ON audit (tenant, branch, seq);

-- Terminal credentials: API keys, stored only as SHA-256 hashes.
CREATE TABLE credentials (
    key_hash      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    key_id        TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant        TEXT COLLATE "C" NOT NULL,
    branch        TEXT COLLATE "C" NOT NULL,
    terminal      TEXT COLLATE "C" NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX credentials_by_terminal ON credentials (tenant, branch, terminal);
