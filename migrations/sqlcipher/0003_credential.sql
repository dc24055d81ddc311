-- tidesync-sqlcipher schema 3: the terminal's API key, kept with the data
-- (Store::load_credential / WriteOp::PutCredential) so that a paired app
-- opens the store without holding the key itself. One row; the file's
-- encryption covers it like every other table.
CREATE TABLE credential (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  value TEXT NOT NULL
);
