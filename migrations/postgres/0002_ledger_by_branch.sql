-- The idempotency ledger keyed by (tenant, branch, terminal, op_id): two
-- branches of one tenant never share a ledger row, even when one terminal
-- name was issued on both (issue 17). Each row also records when its
-- mutation was applied (`applied_at_ms`), for the replay window.
--
-- Existing rows take their branch and time from the audit row their
-- mutation wrote (every applied mutation wrote exactly one).
CREATE TABLE ledger_v2 (
    tenant        TEXT COLLATE "C" NOT NULL,
    branch        TEXT COLLATE "C" NOT NULL,
    terminal      TEXT COLLATE "C" NOT NULL,
    op_id         TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT COLLATE "C" NOT NULL,
    collection    TEXT COLLATE "C" NOT NULL,
    entity_id     TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    cursor        BIGINT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, branch, terminal, op_id)
);

INSERT INTO ledger_v2
SELECT l.tenant, COALESCE(a.branch, ''), l.terminal, l.op_id, l.fingerprint,
       l.collection, l.entity_id, l.version, l.cursor,
       COALESCE((a.entry::jsonb ->> 'applied_at_ms')::bigint, 0)
FROM ledger l
LEFT JOIN audit a
  ON a.tenant = l.tenant
 AND a.entry::jsonb ->> 'op_id' = l.op_id
 AND a.entry::jsonb ->> 'terminal' = l.terminal;

DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
ALTER INDEX ledger_v2_pkey RENAME TO ledger_pkey;
CREATE INDEX ledger_by_age ON ledger (applied_at_ms);
