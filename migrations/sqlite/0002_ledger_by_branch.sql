-- The idempotency ledger keyed by (tenant, branch, terminal, op_id): two
-- branches of one tenant never share a ledger row, even when one terminal
-- name was issued on both (issue 17). Each row also records when its
-- mutation was applied (`applied_at_ms`), for the replay window.
--
-- Existing rows take their branch and time from the audit row their
-- mutation wrote (every applied mutation wrote exactly one).
CREATE INDEX audit_by_op_tmp ON audit (tenant, json_extract(entry, '$.op_id'));

CREATE TABLE ledger_v2 (
    tenant        TEXT NOT NULL,
    branch        TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    op_id         TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    collection    TEXT NOT NULL,
    entity_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    cursor        INTEGER NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, branch, terminal, op_id)
) WITHOUT ROWID;

INSERT INTO ledger_v2
SELECT l.tenant, COALESCE(a.branch, ''), l.terminal, l.op_id, l.fingerprint,
       l.collection, l.entity_id, l.version, l.cursor,
       COALESCE(json_extract(a.entry, '$.applied_at_ms'), 0)
FROM ledger l
LEFT JOIN audit a
  ON a.tenant = l.tenant
 AND json_extract(a.entry, '$.op_id') = l.op_id
 AND json_extract(a.entry, '$.terminal') = l.terminal;

DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
DROP INDEX audit_by_op_tmp;
CREATE INDEX ledger_by_age ON ledger (applied_at_ms);
