-- A person key is checked against the log once, after a grace period: a key
-- whose stream has no event by then was made for a join or a registration
-- that never reached the log (a crash between the key and the append), and
-- is deleted. `checked` marks keys found in use, so each is looked at once.
ALTER TABLE person_keys ADD COLUMN IF NOT EXISTS checked boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS person_keys_unchecked ON person_keys (created_at) WHERE NOT checked;
