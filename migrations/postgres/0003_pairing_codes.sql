-- One-time pairing codes (`tsp_…`, tidesync-server issue-pairing-code),
-- stored only as SHA-256 hashes. A code is redeemed once (POST /v1/pair)
-- for a new API key of its terminal, in the same transaction that sets
-- `redeemed_at_ms`; a used or expired code is worth nothing.
CREATE TABLE pairing_codes (
    code_hash      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    code_id        TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant         TEXT COLLATE "C" NOT NULL,
    branch         TEXT COLLATE "C" NOT NULL,
    terminal       TEXT COLLATE "C" NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    redeemed_at_ms BIGINT
);
CREATE INDEX pairing_codes_by_terminal ON pairing_codes (tenant, branch, terminal);
