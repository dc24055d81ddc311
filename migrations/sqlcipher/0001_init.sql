-- tidesync-sqlcipher schema 1: one table per record kind of the Store trait.
-- Every value is the record's JSON text; SQLCipher encrypts whole pages (of
-- the database file and of its -wal), so nothing here is sealed by hand.
CREATE TABLE meta (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  value TEXT NOT NULL
);
CREATE TABLE entities (
  collection TEXT NOT NULL,
  id         TEXT NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE outbox (
  seq   INTEGER PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE conflicts (
  collection TEXT NOT NULL,
  id         TEXT NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE audit (
  seq   INTEGER PRIMARY KEY,
  value TEXT NOT NULL
);
