-- tidesync-sqlcipher schema 2: the collections that hold entities, with
-- their counts, kept by triggers. `Store::collections` reads this small
-- table instead of walking the whole entities index (1M rows at a first
-- sync). Existing stores are counted once here.
CREATE TABLE collections (
  name     TEXT PRIMARY KEY,
  entities INTEGER NOT NULL CHECK (entities > 0)
) WITHOUT ROWID;
INSERT INTO collections (name, entities)
  SELECT collection, count(*) FROM entities GROUP BY collection;
-- Puts are upserts: a new key fires the insert trigger, a replaced one does not.
CREATE TRIGGER entities_added AFTER INSERT ON entities BEGIN
  INSERT INTO collections (name, entities) VALUES (new.collection, 1)
    ON CONFLICT (name) DO UPDATE SET entities = entities + 1;
END;
CREATE TRIGGER entities_removed AFTER DELETE ON entities BEGIN
  DELETE FROM collections WHERE name = old.collection AND entities = 1;
  UPDATE collections SET entities = entities - 1 WHERE name = old.collection;
END;
