-- Which store this is. Positions mean something only in the store that issued
-- them: a read model's checkpoint records this id, and a reader refuses a
-- checkpoint of another store (a restored copy, a fresh database after an
-- import, EventStoreDB) instead of skipping or repeating events.
CREATE TABLE IF NOT EXISTS store_identity (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    store_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_identity (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;
